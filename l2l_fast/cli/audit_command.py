"""`l2l-fast audit --config audit.yaml`: does a model forget like retraining? (l2l_fast.evaluation.audit)

    model: unlearned.safetensors          # 'demo' or a checkpoint written by l2l-fast
    reference: retrained.safetensors      # optional: the model retrained without the forget set
    dataset: fashion-mnist                # or demo (the shipped subset); root: the IDX folder
    forget: {split: train, indices: canary_mae.canaries.json}   # the members the model must forget
    nonmembers: {split: test, count: 500}                       # images of the same kind never trained on
    canaries: true                        # the forget images carried the canary glyph in training
    out: audit/                           # audit.json and audit.md

The set keys are AuditSet's (split, classes, indices, count), the rest AuditConfig's (mask, seed,
bootstrap, level, threshold, batch_size, out). Paths are read from the file's folder; a mistake is
one line naming the file and the key."""
from __future__ import annotations

import argparse
import dataclasses

from .paths import relative_to_file
from .run_files import ConfigError, naming, read_yaml

FILE_KEYS = ("model", "reference", "dataset", "root", "forget", "nonmembers")
AUDIT_PATHS = ("model", "reference", "root", "out", "forget.indices", "nonmembers.indices")


def _model_path(key: str, value) -> str:
    from pathlib import Path

    if not isinstance(value, str) or not (value == "demo" or Path(value).is_file()):
        raise ValueError(f"{key}: {value!r} is not 'demo' or a checkpoint file")
    return value


def parse_audit_file(raw, source: str = "<config>"):
    """(model, reference or None, dataset, root, forget AuditSet, nonmembers AuditSet, AuditConfig)."""
    from ..evaluation.audit import AuditConfig
    from ..evaluation.audit_sets import DATASETS, AuditSet
    from ..training.options import check_keys

    config_keys = [f.name for f in dataclasses.fields(AuditConfig)]
    with naming(source):
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: must hold a mapping with keys {sorted([*FILE_KEYS, *config_keys])}")
        check_keys("the file", raw, [*FILE_KEYS, *config_keys])
        for key in ("model", "forget", "nonmembers", "out"):
            if raw.get(key) is None:
                raise ConfigError(f"{source}: {key} is required")
        dataset = raw.get("dataset", "fashion-mnist")
        if dataset not in DATASETS:
            raise ValueError(f"dataset: must be one of {DATASETS}, got {dataset!r}")
        reference = raw.get("reference")
        return (_model_path("model", raw["model"]), reference and _model_path("reference", reference), dataset,
                raw.get("root"), AuditSet.from_dict(raw["forget"], "forget"),
                AuditSet.from_dict(raw["nonmembers"], "nonmembers"),
                AuditConfig(**{k: raw[k] for k in config_keys if k in raw}))


def run_audit_file(path) -> dict:
    """Load the file's models and sets and audit them; errors name the file."""
    from ..evaluation.audit import audit
    from ..evaluation.audit_sets import load_audit_set
    from ..models.io import load_model

    source = str(path)
    model, reference, dataset, root, forget, nonmembers, config = parse_audit_file(
        relative_to_file(read_yaml(path, "audit"), path, AUDIT_PATHS), source)
    with naming(source):
        forget_images = load_audit_set(forget, dataset, root)
        nonmember_images = load_audit_set(nonmembers, dataset, root)
        return audit(load_model(model), forget_images, nonmember_images,
                     reference=load_model(reference) if reference else None, config=config)


def _audit(args: argparse.Namespace) -> int:
    result = run_audit_file(args.config)
    for name, figures in result["models"].items():
        low, high = figures["auc_interval"]
        line = f"{name}: membership AUC {figures['auc']:.3f} [{low:.3f}, {high:.3f}]"
        if "canary" in figures:
            line += f", canaries regenerated {figures['canary']['forget']['rate']:.1%} of forget images"
        print(line)
    if "distance_to_reference" in result:
        print(f"model to reference: hole MSE {result['distance_to_reference']['hole_mse_forget']:.4f} (forget)")
    print(f"wrote {result['settings']['out']}/audit.json and audit.md")
    return 0


def _keys_help() -> str:
    from ..evaluation.audit import AuditConfig
    from ..evaluation.audit_sets import AuditSet

    lines = ["audit file keys besides model, reference, dataset (fashion-mnist | demo) and root:",
             "  forget, nonmembers: {" + ", ".join(AuditSet.docs()) + "}"]
    lines += [f"    {name}: {doc}" for name, doc in AuditSet.docs().items()]
    return "\n".join(lines + [f"  {name}: {doc}" for name, doc in AuditConfig.docs().items()])


def add_command(commands, common) -> None:
    audit = commands.add_parser("audit", parents=[common], help="membership, canaries and distance to a retrained model",
                                description=__doc__.rsplit("\n\n", 1)[0], epilog=_keys_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("--config", required=True, help="audit file (above); paths in it are relative to it")
    audit.set_defaults(run=_audit)
