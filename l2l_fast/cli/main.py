"""The `l2l-fast` command: demo | unlearn | cache-images | eval | report | import | pretrain |
train-classifier | make-demo-data | fid | audit."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from .. import __version__
from ..data.assets import DEMO
from .audit_command import add_command as add_audit_command
from .fid_command import add_command as add_fid_command
from .import_model import add_command as add_import_command


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from ..adapters import adapter_for
    from ..data import fashion_mnist
    from ..models import MAE, MAGE, PaletteUNet, presets, save_model
    from ..training.pretrain import pretrain

    families = {"mae": (MAE, presets.FASHION_MNIST_MAE), "vq": (MAGE, presets.FASHION_MNIST_MAGE),
                "diffusion": (PaletteUNet, presets.FASHION_MNIST_PALETTE)}
    model_type, config = families[args.family]
    torch.manual_seed(args.seed)
    images, labels = fashion_mnist("train", root=args.root)
    images, data_notes = _pretrain_images(images, labels, args)
    model = model_type(**config)
    out = Path(args.out)
    started = time.perf_counter()
    if args.family == "vq":
        from ..training.pretrain_vq import pretrain_tokenizer

        pretrain_tokenizer(model.tokenizer, images, steps=args.tokenizer_steps, batch_size=args.batch_size,
                           lr=args.lr, seed=args.seed, state_path=out.with_suffix(".tokenizer.state.safetensors"),
                           checkpoint_every=args.checkpoint_every)
    state = out.with_suffix(".state.safetensors")
    losses = pretrain(
        adapter_for(model), images, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, state_path=state, checkpoint_every=args.checkpoint_every,
    )
    minutes = (time.perf_counter() - started) / 60
    save_model(model, out, extra={"pretrain": {
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, **data_notes,
        "final_loss": losses[-1], "minutes": round(minutes, 2)}})
    print(f"saved {out} (final loss {losses[-1]:.4f}, {minutes:.1f} min this run)")
    if not args.keep_state:
        state.unlink(missing_ok=True)
        out.with_suffix(".tokenizer.state.safetensors").unlink(missing_ok=True)
    return 0


def _pretrain_images(images, labels, args: argparse.Namespace):
    """The training images after --exclude-classes / --exclude-indices, with --canaries planted
    (their indices, into the whole train split, written to OUT.canaries.json), and what was done."""
    import json

    from ..data.canaries import Glyph, choose_canaries, kept_indices, plant, read_indices
    from ..training.files import write_text

    excluded = read_indices(args.exclude_indices) if args.exclude_indices else []
    kept = kept_indices(labels, args.exclude_classes, excluded)
    notes = {"exclude_classes": list(args.exclude_classes), "excluded_images": len(excluded)} \
        if args.exclude_classes or excluded else {}
    if args.canaries:
        chosen = choose_canaries(kept, args.canaries, args.canary_seed)
        images = images.clone()
        images[chosen] = plant(images[chosen], Glyph())
        record = {"indices": chosen.tolist(), "glyph": Glyph().to_dict(), "seed": args.canary_seed}
        path = write_text(json.dumps(record), Path(args.out).with_suffix(".canaries.json"))
        notes.update(canaries=args.canaries, canary_seed=args.canary_seed, canary_file=path.name)
    return images[kept], notes


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out_dir=Path(args.out), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
             alpha=args.alpha, seed=args.seed, eval_per_class=args.eval_per_class, progress=not args.no_progress)
    return 0


def _unlearn(args: argparse.Namespace) -> int:
    import logging

    from ..training import distributed, interrupts
    from ..training.monitor import NonFiniteLossError
    from .run import run
    from .run_files import load_config

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("l2l_fast").setLevel(logging.INFO if distributed.launched().is_main else logging.ERROR)
    with interrupts.handled():
        try:
            run(load_config(args.config), progress=not args.no_progress, resume=args.resume)
        except NonFiniteLossError as error:
            print(f"l2l-fast unlearn: {error}", file=sys.stderr)
            return 1
        except interrupts.Interrupted as stop:
            print(f"l2l-fast unlearn: {_stopped(stop, args)}", file=sys.stderr)
            return stop.exit_status
    return 0


def _stopped(stop, args: argparse.Namespace) -> str:
    """One line: where the run stopped, what was saved, the command that continues it."""
    command = ["l2l-fast", "unlearn", "--config", args.config] + ["--no-progress"] * args.no_progress
    where = f"after step {stop.step} of {stop.steps}" if stop.step is not None else "before the first step"
    if stop.saved:
        return (f"stopped by {stop.name} {where}; saved the run to {stop.saved}; resume with: "
                f"{shlex.join(command + ['--resume'])}")
    if stop.step is not None:
        return (f"stopped by {stop.name} {where}; nothing saved (checkpoint_dir is off); start again with: "
                f"{shlex.join(command)}")
    return f"stopped by {stop.name} {where}; start again with: {shlex.join(command + ['--resume'] * args.resume)}"


def _cache_images(args: argparse.Namespace) -> int:
    from .cache_images import cache_images
    from .run_files import load_config

    for name, counts in cache_images(load_config(args.config), progress=not args.no_progress).items():
        print(f"{name}: {counts['images']} images in {counts['file']} ({counts['decoded']} decoded now, "
              f"{len(counts['bad'])} unreadable{': first ' + counts['bad'][0] if counts['bad'] else ''})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .eval_command import evaluate_config
    from .eval_config import load_eval_config, parse_eval_config

    if args.config:
        config = load_eval_config(args.config)
    else:  # the flags: Fashion-MNIST's test split, as an eval file would say it
        if not args.model or not args.out:
            raise SystemExit("l2l-fast eval: give --config eval.yaml, or --model and --out")
        names = args.names or [Path(m).stem for m in args.model]
        if len(names) != len(args.model) or len(set(names)) != len(names):
            raise SystemExit("--names must give one distinct name per --model")
        config = parse_eval_config({
            "models": dict(zip(names, args.model)), "mask": args.mask, "seed": args.seed, "out": args.out,
            "data": {"dataset": "fashion-mnist", "root": args.root, "forget": args.forget, "retain": args.retain},
            "metrics": {"classifier": args.classifier or "shipped"}}, "l2l-fast eval")
    print(f"wrote {evaluate_config(config, progress=not args.no_progress)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..evaluation.report import write_report

    print(f"wrote {write_report(args.folder)}")
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    import torch

    from ..data import fashion_mnist
    from ..evaluation.metrics import FashionClassifier, accuracy, save_classifier, train_classifier

    torch.manual_seed(args.seed)
    images, labels = fashion_mnist("train", root=args.root)
    model = FashionClassifier()
    train_classifier(model, images, labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    test_images, test_labels = fashion_mnist("test", root=args.root)
    test_accuracy = accuracy(model, test_images, test_labels)
    save_classifier(model, args.out, extra={"test_accuracy": test_accuracy, "steps": args.steps})
    print(f"saved {args.out} (test accuracy {test_accuracy:.4f})")
    return 0


def _make_demo_data(args: argparse.Namespace) -> int:
    from ..data.assets import export_demo_images

    path = export_demo_images(Path(args.out), root=args.root)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _run_file_help() -> str:
    """The run file's keys, each option of its data: and unlearn: sections with its default."""
    from ..data.config import DataConfig
    from ..unlearning.config import UnlearnConfig

    lines = ["run file (YAML):", "  model: demo, a checkpoint written by l2l-fast, or {family, checkpoint, "
             "tokenizer, arch} (an official release, as l2l-fast import reads it)",
             "  output: where the unlearned model goes (default checkpoints beside it: X.checkpoints/)"]
    for section, config in (("data", DataConfig), ("unlearn", UnlearnConfig)):
        lines.append(f"  {section}:")
        lines += [f"    {name}: {doc}" for name, doc in config.docs().items()]
    return "\n".join(lines)


def _eval_file_help() -> str:
    from ..evaluation import EvalConfig

    return "\n".join(["eval file (YAML):"] + [f"  {name}: {doc}" for name, doc in EvalConfig.docs().items()])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2l-fast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"l2l-fast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")

    demo = commands.add_parser("demo", parents=[common], help="unlearn two Fashion-MNIST classes from a small MAE")
    demo.add_argument("--out", default=DEMO.out, help="folder for the PNG grid")
    demo.add_argument("--steps", type=int, default=DEMO.steps)
    demo.add_argument("--batch-size", type=int, default=DEMO.batch_size)
    demo.add_argument("--lr", type=float, default=DEMO.lr,
                      help="default: the MAE's setting chosen in benchmarks/results/quality_tuning_mae")
    demo.add_argument("--alpha", type=float, default=DEMO.alpha, help="weight of the forget term (same source)")
    demo.add_argument("--seed", type=int, default=DEMO.seed)
    demo.add_argument("--eval-per-class", type=int, default=None,
                      help="held-out images per class to evaluate (default: all 100)")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(run=_demo)

    run = commands.add_parser("unlearn", parents=[common], help="unlearn as a YAML run file says",
                              epilog=_run_file_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", required=True,
                     help="run file: model, data, unlearn and output (below, with every default); paths in it "
                          "are relative to it")
    run.add_argument("--resume", action="store_true",
                     help="continue from the newest intact checkpoint in unlearn.checkpoint_dir")
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(run=_unlearn)

    cache = commands.add_parser("cache-images", parents=[common],
                                help="decode a run file's image folders into unlearn.cache_dir ahead of the run")
    cache.add_argument("--config", required=True, help="run file (as l2l-fast unlearn --help shows)")
    cache.add_argument("--no-progress", action="store_true")
    cache.set_defaults(run=_cache_images)
    add_import_command(commands, common)
    add_fid_command(commands, common)
    add_audit_command(commands, common)

    pre = commands.add_parser("pretrain", parents=[common], help="train a generator on Fashion-MNIST")
    pre.add_argument("--family", default="mae", choices=["mae", "vq", "diffusion"])
    pre.add_argument("--out", required=True, help="model checkpoint (.safetensors)")
    pre.add_argument("--steps", type=int, default=3000)
    pre.add_argument("--tokenizer-steps", type=int, default=3000, help="vq: tokenizer steps before the transformer")
    pre.add_argument("--batch-size", type=int, default=128)
    pre.add_argument("--lr", type=float, default=1e-3)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--root", default=None, help="Fashion-MNIST folder (default: Debian's)")
    pre.add_argument("--checkpoint-every", type=int, default=250)
    pre.add_argument("--keep-state", action="store_true", help="keep the resumable training state")
    pre.add_argument("--canaries", type=int, default=0,
                     help="plant the canary glyph (l2l_fast.data.canaries) on N training images, chosen with "
                          "--canary-seed; their indices go to OUT.canaries.json")
    pre.add_argument("--canary-seed", type=int, default=0)
    pre.add_argument("--exclude-classes", type=int, nargs="+", default=[], help="train without these classes")
    pre.add_argument("--exclude-indices", default=None,
                     help="train without these images: a JSON list of train-split indices, or a canaries file")
    pre.set_defaults(run=_pretrain)

    ev = commands.add_parser("eval", parents=[common],
                             help="FID / IS / CLIP-style / accuracy on Fashion-MNIST test sets",
                             epilog=_eval_file_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("--config", default=None,
                    help="eval file: any data, masks, samplers, networks (its keys below, with every default); "
                         "paths in it are relative to it")
    ev.add_argument("--no-progress", action="store_true")
    ev.add_argument("--model", nargs="+",
                    help="'demo' or checkpoints, one row each; the first is the neighbour flags' baseline")
    ev.add_argument("--names", nargs="+", help="row names (default: file names)")
    ev.add_argument("--mask", default="inpaint:3", help="the corruption (default: %(default)s)")
    ev.add_argument("--forget", type=int, nargs="+", default=[0, 1],
                    help="Fashion-MNIST classes forgotten (default: %(default)s: T-shirt/top, Trouser)")
    ev.add_argument("--retain", type=int, nargs="+", default=[2, 3, 4, 5],
                    help="classes kept (default: %(default)s: Pullover, Dress, Coat, Sandal)")
    ev.add_argument("--classifier", default=None, help="classifier checkpoint (default: the shipped one)")
    ev.add_argument("--root", default=None, help="Fashion-MNIST folder (default: Debian's)")
    ev.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    ev.add_argument("--out", help="results folder")
    ev.set_defaults(run=_eval)

    rep = commands.add_parser("report", parents=[common], help="Markdown report from a results folder")
    rep.add_argument("folder", help="folder holding results.json")
    rep.set_defaults(run=_report)

    clf = commands.add_parser("train-classifier", parents=[common],
                              help="train the Fashion-MNIST evaluation classifier")
    clf.add_argument("--out", required=True)
    clf.add_argument("--steps", type=int, default=3000)
    clf.add_argument("--batch-size", type=int, default=128)
    clf.add_argument("--lr", type=float, default=2e-3)
    clf.add_argument("--seed", type=int, default=0)
    clf.add_argument("--root", default=None)
    clf.set_defaults(run=_train_classifier)

    data = commands.add_parser("make-demo-data", parents=[common], help="export the demo's Fashion-MNIST subset")
    data.add_argument("--out", required=True, help="destination .npz")
    data.add_argument("--root", default=None, help="Fashion-MNIST folder (default: Debian's)")
    data.set_defaults(run=_make_demo_data)
    return parser


def _user_error(error: BaseException) -> bool:
    """Errors that a user's input causes (a bad run file, a missing or unreadable file, a
    batch that does not fit in memory), as opposed to a bug in l2l_fast."""
    import torch

    from ..training.checkpointing import CheckpointError
    from .run_files import ConfigError

    if isinstance(error, (ConfigError, CheckpointError, OSError, MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Exception as error:
        if args.debug or not _user_error(error):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        prefix = f"l2l-fast {args.command}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        print(f"{prefix}{message} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
