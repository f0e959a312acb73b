"""Wall time of `l2l-fast fid` on two folders of Fashion-MNIST test images (300 PNGs each, 28x28
grey), without and with the feature cache; needs the eval extra:

    python benchmarks/folder_fid_timing.py --work /tmp/fidtime
    # the same as: l2l-fast fid /tmp/fidtime/a /tmp/fidtime/b --cache-dir /tmp/fidtime/cache

Folder a holds classes 0, 2, 4 (t-shirt, pullover, coat), folder b 0, 2, 6 (shirt for coat).
Results: benchmarks/results/eval/folder_fid_cpu.md.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from PIL import Image

from l2l_fast.data import fashion_mnist
from l2l_fast.evaluation import folder_fid


def make_folders(work: Path, count: int) -> tuple[Path, Path]:
    images, labels = fashion_mnist("test")
    folders = []
    for name, classes in (("a", (0, 2, 4)), ("b", (0, 2, 6))):
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        chosen = [i for i in range(len(labels)) if int(labels[i]) in classes][:count]
        for n, i in enumerate(chosen):
            pixels = (images[i, 0] * 255).round().byte().numpy()
            Image.fromarray(pixels, mode="L").save(folder / f"{n:04d}.png")
        folders.append(folder)
    return folders[0], folders[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/fidtime")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    a, b = make_folders(Path(args.work), args.count)
    for label, cache in (("uncached", False), ("cached (first run writes it)", Path(args.work) / "cache"),
                         ("cached", Path(args.work) / "cache")):
        started = time.perf_counter()
        result = folder_fid(a, b, cache_dir=cache, progress=False)
        print(f"{label}: {time.perf_counter() - started:.1f} s, FID {result['FID']:.4f}, KID {result['KID']:.6f}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
