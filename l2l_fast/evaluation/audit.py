"""Does a model forget like retraining? `audit` measures, for a model and a forget set:

- membership: each image's hole MSE of the model's completion (lower error = member), forget
  images (members) against held-out non-members of the same kind; the ROC AUC (0.5: the model
  cannot tell them apart, as a model that never trained on either) with a stratified bootstrap
  interval;
- canaries (when the forget images carried the glyph of l2l_fast.data.canaries in training): how
  often the completion regenerates the glyph (metrics/canary.py) on the forget images, on the
  non-members with the glyph planted, on clean non-members (the chance rate) and on the forget
  images without the glyph (a model that memorised them with it draws it there too);
- with a reference (the model retrained without the forget set): the same figures for it, the
  per-image hole MSE between the two models' completions, and the FID between them (the
  Fashion-MNIST classifier's features, for 1x28x28 models).

Completions come from `evaluate` (the one evaluation API), seeded; every figure is a pure
function of the models, the images and AuditConfig."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..adapters import Adapter, adapter_for
from ..data.canaries import Glyph, plant
from ..training.files import write_text
from ..models.masks import parse_mask
from ..training.options import check_options, described, docs, fail, flag, number, option, path
from .config import MetricsConfig, _integer
from .generation import visible_pixels
from .metrics.canary import THRESHOLD, canary_correlation, regenerated
from .metrics.fid import fid_from_features
from .metrics.membership import bootstrap_interval, check_sizes, roc_auc
from .metrics.pixels import pixel_errors
from .networks import load_networks, network_specs
from .protocol import evaluate


@described("one mask spec")
def _one_mask(name: str, value):
    if not isinstance(value, str):
        fail(name, f"must be one mask spec (the audit scores one corruption), got {value!r}")
    parse_mask(value, name)
    return value


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings (`l2l-fast audit` files hold them beside model, reference and the sets)."""

    mask: str = option("inpaint:3", _one_mask, "the corruption whose completions are scored")
    seed: int = option(0, _integer, "seeds the corruptions and the bootstrap")
    bootstrap: int = option(1000, number(100, integer=True), "bootstrap resamples of each interval")
    level: float = option(0.95, number(0.5, below=1.0, message="a number in [0.5, 1)"),
                          "coverage of the bootstrap intervals")
    canaries: bool = option(False, flag, "the forget images carried the canary glyph in training: plant it on "
                                         "both sets and measure its regeneration")
    threshold: float = option(THRESHOLD, number(-1.0, below=1.0, message="a number in [-1, 1)"),
                              "correlation with the glyph from which a completion regenerates it")
    batch_size: int = option(256, number(1, integer=True), "images per generation batch")
    out: Optional[str] = option(None, path("folder"), "folder of audit.json and audit.md (None: not written)")

    def __post_init__(self):
        check_options(self)

    @classmethod
    def docs(cls) -> dict[str, str]:
        return docs(cls)


def _images(given) -> torch.Tensor:
    images = given[0] if isinstance(given, (tuple, list)) else given
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"expected images [N, C, H, W] (or (images, labels)), got {type(images).__name__}")
    return images.float()


def check_disjoint_images(forget: torch.Tensor, nonmembers: torch.Tensor) -> None:
    """ValueError naming `nonmembers` when an image (the same pixels) is in both sets."""
    def keys(images):
        return {hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest() for image in images}

    shared = len(keys(forget) & keys(nonmembers))
    if shared:
        raise ValueError(f"nonmembers: {shared} images are also in forget (the same pixels); non-members must be "
                         "images the model never trained on")


def _completions(models: dict, sets: dict[str, torch.Tensor], config: AuditConfig) -> dict[str, dict]:
    """name -> set key -> the completions of that set, through `evaluate` (pixel metrics only),
    the sets taken two by two as its forget and retain sets."""
    keys = list(sets)
    out = {name: {} for name in models}
    for first, second in zip(keys[::2], keys[1::2]):
        labels = [torch.zeros(sets[k].shape[0], dtype=torch.long) for k in (first, second)]
        tables = evaluate(models, (sets[first], labels[0]), (sets[second], labels[1]), networks={},
                          keep_generated=True, mask=config.mask, seed=config.seed, batch_size=config.batch_size,
                          metrics=MetricsConfig(fid_inception=None, compute=["MSE_hole"])).tables
        for row, keep in tables[config.mask]:
            out[row["method"]][first] = keep["generated_F"]
            out[row["method"]][second] = keep["generated_R"]
    return out


def _rate(values: torch.Tensor, config: AuditConfig) -> dict:
    values = values[~values.isnan()]
    if values.numel() == 0:
        raise ValueError(f"mask: {config.mask!r} never hides the canary glyph's pixels; choose a mask whose hole "
                         "covers part of it")
    hits = regenerated(values, config.threshold)
    low, high = bootstrap_interval(lambda x: x.mean(-1), hits, seed=config.seed, resamples=config.bootstrap,
                                   level=config.level)
    return {"rate": float(hits.mean()), "interval": [low, high], "correlation": float(values.mean())}


def _model_figures(done: dict, truth: dict, visible: dict, config: AuditConfig) -> dict:
    errors = {k: pixel_errors(done[k], truth[k], visible[k])["MSE_hole"] for k in ("forget", "nonmembers")}
    scores = {k: -v for k, v in errors.items()}  # lower error = member
    low, high = bootstrap_interval(roc_auc, scores["forget"], scores["nonmembers"], seed=config.seed,
                                   resamples=config.bootstrap, level=config.level)
    figures = {"mse_forget": float(errors["forget"].mean()), "mse_nonmembers": float(errors["nonmembers"].mean()),
               "auc": float(roc_auc(scores["forget"], scores["nonmembers"])), "auc_interval": [low, high]}
    if config.canaries:
        figures["canary"] = {k: _rate(canary_correlation(done[k], visible[k]), config)
                             for k in ("forget", "nonmembers", "clean_nonmembers", "clean")}
    return figures


def _features(images: torch.Tensor, network) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([network(b)["features"].double() for b in images.split(256)])


def _distance(done: dict, reference: dict, visible: dict, shape) -> dict:
    out = {f"hole_mse_{k}": float(pixel_errors(done[k], reference[k], visible[k])["MSE_hole"].mean())
           for k in ("forget", "nonmembers")}
    if tuple(shape) == (1, 28, 28):
        network = load_networks(network_specs(MetricsConfig(fid_inception=None), shape), "cpu")["classifier"]
        for k in ("forget", "nonmembers"):
            fid = fid_from_features(_features(done[k], network), _features(reference[k], network))
            out[f"FID_{k}"] = max(fid, 0.0)  # equal sets give a rounding error's -1e-6, not a distance
        out["fid_network"] = "the shipped Fashion-MNIST classifier's features"
    else:
        out["fid_network"] = "skipped: FID between completions is read on the Fashion-MNIST classifier (1x28x28)"
    return out


def audit(model, forget, nonmembers, *, reference=None, config: Optional[AuditConfig] = None,
          **options) -> dict[str, Any]:
    """The audit's figures as a JSON-ready dict (see the module doc); written to `config.out` as
    audit.json and audit.md when it is set.

    model, reference: models or adapters (the reference: retrained without the forget set).
    forget: the images the model must have forgotten, as they were stored (without the canary glyph:
      `canaries=True` plants it); nonmembers: images of the same kind it never trained on. Each an
      image tensor [N, C, H, W] in [0, 1] or (images, labels); at least MIN_PER_SIDE each.
    config / options: AuditConfig (mask, seed, bootstrap, level, canaries, threshold, out, ...)."""
    config = dataclasses.replace(config, **options) if config is not None else AuditConfig(**options)
    forget, nonmembers = _images(forget), _images(nonmembers)
    check_sizes(forget=forget.shape[0], nonmembers=nonmembers.shape[0])
    check_disjoint_images(forget, nonmembers)
    sets = {"forget": forget, "nonmembers": nonmembers}
    if config.canaries:
        sets = {"forget": plant(forget, Glyph()), "nonmembers": plant(nonmembers, Glyph()),
                "clean_nonmembers": nonmembers, "clean": forget}
    models = {name: m if isinstance(m, Adapter) else adapter_for(m)
              for name, m in (("model", model), ("reference", reference)) if m is not None}
    visible = {name: {k: visible_pixels(adapter, v.shape[0], config.mask, config.seed, config.batch_size)
                      for k, v in sets.items()} for name, adapter in models.items()}
    if reference is not None and any(not torch.equal(visible["model"][k], visible["reference"][k]) for k in sets):
        raise ValueError("reference: its corruptions differ from the model's under this mask (another patch grid?)")
    done = _completions(models, sets, config)
    result = {"settings": dataclasses.asdict(config), "glyph": Glyph().to_dict() if config.canaries else None,
              "counts": {k: v.shape[0] for k, v in sets.items()},
              "models": {name: _model_figures(done[name], sets, visible[name], config) for name in models}}
    if reference is not None:
        result["distance_to_reference"] = _distance(done["model"], done["reference"], visible["model"],
                                                    forget.shape[1:])
    if config.out is not None:
        write_audit(result, Path(config.out))
    return result


def _interval(value: float, interval) -> str:
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def audit_markdown(result: dict) -> str:
    """The short report of an audit's result."""
    settings = result["settings"]
    level = f"{settings['level']:.0%}"
    lines = ["# Audit", "",
             f"mask `{settings['mask']}`, seed {settings['seed']}, {settings['bootstrap']} bootstrap resamples, "
             f"{level} intervals; {result['counts']['forget']} forget images (members) against "
             f"{result['counts']['nonmembers']} non-members.", "",
             "Membership: ROC AUC of minus the hole MSE (0.5: members look like non-members, as for a model "
             "that never trained on them)" + (f"; canaries regenerated when the correlation with the glyph in the "
                                             f"hole is at least {settings['threshold']} (r: the mean correlation)." if settings["canaries"]
                                             else "."), ""]
    header = ["model", "hole MSE forget", "hole MSE non-members", f"AUC [{level}]"]
    if settings["canaries"]:
        header += ["canary rate forget", "non-members with the glyph", "clean non-members (chance)",
                   "forget without the glyph"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, figures in result["models"].items():
        cells = [name, f"{figures['mse_forget']:.4f}", f"{figures['mse_nonmembers']:.4f}",
                 _interval(figures["auc"], figures["auc_interval"])]
        if settings["canaries"]:
            cells += [_interval(figures["canary"][k]["rate"], figures["canary"][k]["interval"])
                      + f" (r {figures['canary'][k]['correlation']:.2f})"
                      for k in ("forget", "nonmembers", "clean_nonmembers", "clean")]
        lines.append("| " + " | ".join(cells) + " |")
    distance = result.get("distance_to_reference")
    if distance:
        lines += ["", "Distance of the model's completions to the reference's: hole MSE "
                  f"{distance['hole_mse_forget']:.4f} (forget), {distance['hole_mse_nonmembers']:.4f} (non-members)"
                  + (f"; FID {distance['FID_forget']:.2f} (forget), {distance['FID_nonmembers']:.2f} (non-members), "
                     f"on {distance['fid_network']}." if "FID_forget" in distance else f"; FID {distance['fid_network']}.")]
    return "\n".join(lines) + "\n"


def write_audit(result: dict, out: Path) -> Path:
    """out/audit.json and out/audit.md, each written atomically; returns the JSON's path."""
    write_text(audit_markdown(result), out / "audit.md")
    return write_text(json.dumps(result, indent=2), out / "audit.json")
