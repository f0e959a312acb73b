"""UnlearnConfig: every option of `unlearn`, with its default, its check and its doc.

`unlearn(model, forget, retain, **options)` builds one; run files validate their
`unlearn:` section against it; run checkpoints record the options that shape the
result (`recorded()`) and a resumed run must match them.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..training import options
from ..training.options import choice as _choice, described, flag as _flag, number as _number
from ..training.options import optional_flag as _optional_flag
from ..data.decode_cache import MODES as DECODE_CACHE_MODES
from ..models.masks import parse_mask
from ..ops import DISTANCES
from ..training.optim import WEIGHT_DECAY
from .objectives import OBJECTIVES
from .step_data import DIFFUSION_TARGETS, NOISE_STATS

METHODS = tuple(OBJECTIVES)
ENCODER_METHODS = tuple(name for name, objective in OBJECTIVES.items() if objective.encoder_only)
EMBEDDING_METHODS = ("ours", "random_encoder")  # a forget and a retain term on the encoder's maps
# precision name -> the autocast type of the student and the type of the teacher's weights
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_path = options.path("folder")


@described("a mask spec such as inpaint:3")
def _mask(name: str, value):
    return str(parse_mask(value, name))


@described("[lo, hi] with lo < hi, or None")
def _clamp(name: str, value):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be [lo, hi] (two numbers), got {value!r}")
    if not value[0] < value[1]:
        raise ValueError(f"{name} must have lo < hi, got {list(value)}")
    return (float(value[0]), float(value[1]))


@described("a torch device or None")
def _device(name: str, value):
    if value is None:
        return None
    if not isinstance(value, (str, torch.device)):
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda:0', got {value!r}")
    try:
        return str(torch.device(value))
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{name} must be a device such as 'cpu' or 'cuda:0', got {value!r}") from error


def option(default, check, doc: str, *, recorded: bool = False, required: bool = False):
    """A field of UnlearnConfig: `recorded` options shape the result (checkpoints keep them)."""
    return options.option(default, check, doc, recorded=recorded, required=required)


@dataclass(frozen=True)
class UnlearnConfig:
    steps: int = option(None, _number(1, integer=True), "optimisation steps", recorded=True,
                       required=True)
    batch_size: int = option(None, _number(1, integer=True),
                             "forget and retain images per step, each (the global batch under torchrun)",
                             recorded=True, required=True)
    alpha: float = option(0.25, _number(0.0), "weight of the forget term", recorded=True)
    lr: Optional[float] = option(None, _number(0.0, strict=True, optional=True),
                                 "peak learning rate (default 1e-4 * 2 * batch_size / 256)", recorded=True)
    mask: str = option("inpaint:3", _mask,
                       "the corruption T: inpaint:K, outpaint:K, box:A, box:side=F, random:R, mage or hybrid",
                       recorded=True)
    seed: int = option(0, _number(0, integer=True),
                       "fixes the run: batches, corruptions, noise and the global torch RNG", recorded=True)
    device: Optional[str] = option(None, _device, "where to run (default: the model's device)")
    distance: str = option("mse", _choice(DISTANCES), "d: mean squared difference or Euclidean norm",
                           recorded=True)
    noise_stats: str = option("batch", _choice(NOISE_STATS),
                              "statistics of the Gaussian noise images: over the forget batch ('batch'), per "
                              "sample or channel, standard normal, or over the whole retain + forget batch "
                              "('mixed', the authors' MAGE code)", recorded=True)
    noise_clamp: Optional[tuple[float, float]] = option(
        None, _clamp, "clamp the noise to [lo, hi] (default: [0, 1] for models with bounded pixels, else none)",
        recorded=True)
    warmup_steps: Optional[int] = option(None, _number(0, integer=True, optional=True),
                                         "linear warm-up steps (default steps // 20, at least 1)", recorded=True)
    weight_decay: float = option(WEIGHT_DECAY, _number(0.0), "AdamW weight decay (not on biases and norms)",
                                 recorded=True)
    grad_clip: Optional[float] = option(3.0, _number(0.0, strict=True, optional=True),
                                        "gradient-norm clip (None: no clipping)", recorded=True)
    diffusion_target: str = option(
        "pure_noise", _choice(DIFFUSION_TARGETS),
        "diffusion forget target: the teacher on y_t whose hole is pure noise ε ('pure_noise', the authors' "
        "q_sample without its y_0 term), on the noised Gaussian image √γ·n + √(1−γ)·ε in the hole "
        "('noise_image'), or on a whole Gaussian image, its visible part in the condition too ('whole_noise': a "
        "pull at every noise level); other families always use the noise image", recorded=True)
    forget_maps: Optional[int] = option(
        None, _number(1, integer=True, optional=True),
        "encoders that give several feature maps (UNets: the down path's residuals, then the middle block): the "
        "forget term on the last N maps only (1: the middle block), the retain term on all; None: every map "
        "(the authors'); methods 'ours' and 'random_encoder'. The shallow maps are local and cannot tell a "
        "forget image from a retain one, so pulling them towards the noise target damages every class",
        recorded=True)
    method: str = option("ours", _choice(METHODS), "the paper's objective or one of its baselines",
                         recorded=True)
    precision: Optional[str] = option(None, _choice(tuple(PRECISIONS), optional=True),
                                      "autocast type (default bf16 on CUDA GPUs that have it, else fp32)",
                                      recorded=True)
    retain_budget: Optional[float] = option(
        None, _number(0.0, strict=True, optional=True),
        "forget as much as possible while no retain class's held-out loss (the model's own loss on held-out "
        "retain images: hole error, token cross-entropy or noise-prediction error) rises more than this "
        "fraction above the original's, e.g. 0.05; the run ends at the checked state within it that forgot most. "
        "Where steps break it even with the forget weight at its least, the run goes back to that state and halves "
        "the learning rate", recorded=True)
    retain_holdout: Optional[int] = option(
        None, _number(0, integer=True, optional=True),
        "retain images held out of training to measure retain damage per class as the run goes (default with "
        "retain_budget: a tenth of the retain set, at most 256; else 0, no check)", recorded=True)
    check_every: Optional[int] = option(None, _number(1, integer=True, optional=True),
                                        "steps between retain checks (default steps // 20, at least 1)",
                                        recorded=True)
    repeat_samples: bool = option(False, _flag,
                                  "allow batch_size above the forget or retain set's size (images repeat in a step)")
    progress: bool = option(True, _flag, "show a progress bar (rank 0)")
    log_every: Optional[int] = option(None, _number(1, integer=True, optional=True),
                                      "steps between reads of the step values (default 1 on CPU, 20 on GPU)")
    checkpoint_dir: Optional[str] = option(None, _path, "folder for run checkpoints")
    checkpoint_every: Optional[int] = option(None, _number(1, integer=True, optional=True),
                                             "steps between run checkpoints (default: from the step time measured "
                                             "at the start, a save about every 2 minutes of work and at least "
                                             "every tenth of the run)")
    resume_from: Optional[str] = option(None, _path, "a checkpoint folder to continue from")
    fsdp: bool = option(False, _flag, "shard the encoder and teacher with FSDP2 (several processes)")
    checkpoint_activations: bool = option(False, _flag, "recompute encoder block activations in the backward")
    cache_targets: Optional[bool] = option(None, _optional_flag,
                                           "compute each retain sample's teacher embedding once, equal to "
                                           "the uncached one up to rounding (default: wherever it cannot change: "
                                           "method 'ours', a fixed mask, a deterministic family, one embedding "
                                           "tensor)")
    compile: bool = option(False, _flag, "run the student encoder through torch.compile")
    num_workers: Optional[int] = option(None, _number(0, integer=True, optional=True),
                                        "processes decoding image files (default min(8, cores - 1) for "
                                        "image folders, 0 for tensors and other datasets)")
    prefetch: int = option(2, _number(1, integer=True), "steps of images decoded ahead of the step")
    decode_cache: str = option("auto", _choice(DECODE_CACHE_MODES),
                               "keep decoded images: memory, disk (under cache_dir) or off; auto: disk with "
                               "a cache_dir, else memory while the set fits a quarter of RAM")
    cache_dir: Optional[str] = option(None, _path, "folder of the disk decode cache (see cache-images)")
    max_bad_fraction: float = option(0.01, _number(0.0),
                                     "fraction of a set's image files that may be unreadable or gone")

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            if getattr(self, spec.name) is None and spec.metadata["required"]:
                raise ValueError(f"{spec.name} is required ({spec.metadata['doc']})")
        options.check_options(self)
        if self.checkpoint_every is not None and self.checkpoint_dir is None and self.resume_from is None:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        if self.fsdp and self.method not in ENCODER_METHODS:
            raise ValueError(f"fsdp shards the encoder: it applies to methods {ENCODER_METHODS}, not {self.method!r}")
        if self.retain_budget is not None and self.retain_holdout == 0:
            raise ValueError("retain_budget needs held-out retain images: retain_holdout must be at least 1")
        if self.cache_targets and self.method != "ours":
            raise ValueError(f"cache_targets applies to method 'ours', not {self.method!r}")
        if self.forget_maps is not None and self.method not in EMBEDDING_METHODS:
            raise ValueError(f"forget_maps applies to methods {EMBEDDING_METHODS}, not {self.method!r}")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "UnlearnConfig":
        """From a mapping (a run file's `unlearn:` section); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown options {unknown}; known: {sorted(known)}")
        return cls(**options)

    def resolved(self, device_type: str, bf16_supported: bool = False) -> "UnlearnConfig":
        """The defaults that depend on the batch, the run length or the device filled in."""
        lr = self.lr if self.lr is not None else 1e-4 * (2 * self.batch_size) / 256
        precision = self.precision or ("bf16" if device_type == "cuda" and bf16_supported else "fp32")
        checkpoint_dir = self.checkpoint_dir if self.checkpoint_dir is not None else self.resume_from
        return dataclasses.replace(
            self, lr=lr, precision=precision,
            warmup_steps=self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20),
            log_every=self.log_every or (1 if device_type == "cpu" else 20),
            checkpoint_dir=checkpoint_dir,
            check_every=self.check_every or max(1, self.steps // 20),
            checkpoint_every=self.checkpoint_every if checkpoint_dir else None,
        )

    def recorded(self) -> dict[str, Any]:
        """The options that shape the result, as JSON values (what checkpoints keep)."""
        out = {}
        for spec in dataclasses.fields(self):
            if spec.metadata["recorded"]:
                value = getattr(self, spec.name)
                out[spec.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def docs(cls) -> dict[str, str]:
        """{option: its doc, default and check}."""
        return options.docs(cls)

