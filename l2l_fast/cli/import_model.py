"""`l2l-fast import --family mae|mage|palette|hf-mae CHECKPOINT [--tokenizer PATH] [--arch NAME]
--out model.safetensors`: an official release file (or a local Hugging Face ViTMAE
folder) into the project's checkpoint format, which every other command reads. An
HF ViTMAE is written as this package's MAE (the same network: models/hf_mae.py)."""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path


def describe(model) -> str:
    from ..models.pixels import pixels_of

    config = ", ".join(f"{k}={v}" for k, v in model.config.items() if not isinstance(v, dict))
    count = sum(p.numel() for p in model.parameters())
    return (f"architecture: {type(model).__name__}({config})\n"
            f"parameters: {count:,} ({count / 1e6:.1f}M)\n"
            f"pixels: {pixels_of(model).describe()} (images in [0, 1] are normalised to this)")


def import_checkpoint(family: str, checkpoint, tokenizer=None, arch=None):
    """The model of a release file, as the project's model class (HF ViTMAE converted)."""
    from ..models.hf_mae import is_hf_mae, to_mae
    from ..models.release import load_release

    model = load_release(family, checkpoint, tokenizer=tokenizer, arch=arch)
    return to_mae(model) if is_hf_mae(model) else model


def _run(args: argparse.Namespace) -> int:
    from ..models import save_model
    from .run_files import ConfigError

    for name, value, kind in (("CHECKPOINT", args.checkpoint, "folder" if args.family == "hf-mae" else "file"),
                              ("--tokenizer", args.tokenizer, "file")):
        if value is not None and not (Path(value).is_dir() if kind == "folder" else Path(value).is_file()):
            raise ConfigError(f"{name}: {value!r} is not a {kind}")
    try:
        model = import_checkpoint(args.family, args.checkpoint, args.tokenizer, args.arch)
    except (ValueError, ImportError, pickle.UnpicklingError) as error:
        raise ConfigError(str(error)) from error
    path = save_model(model, Path(args.out), extra={"imported": {
        "family": args.family, "checkpoint": str(args.checkpoint), "tokenizer": args.tokenizer, "arch": args.arch}})
    print(describe(model))
    print(f"wrote {path}")
    return 0


def add_command(commands, common: argparse.ArgumentParser) -> None:
    from ..models.release import FAMILIES

    command = commands.add_parser("import", parents=[common],
                                  help="an official checkpoint into the project's format")
    command.add_argument("checkpoint", help="release file (an HF model folder for hf-mae)")
    command.add_argument("--family", required=True, choices=FAMILIES)
    command.add_argument("--tokenizer", default=None, help="mage: the VQGAN file when the checkpoint lacks it")
    command.add_argument("--arch", default=None,
                         help="a preset name (l2l_fast.models.presets.ARCHS) or a YAML file of constructor arguments")
    command.add_argument("--out", required=True, help="model checkpoint to write (.safetensors)")
    command.set_defaults(run=_run)
