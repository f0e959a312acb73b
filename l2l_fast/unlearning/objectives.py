"""The unlearning objective of DESIGN §1 and the paper's baselines.

    ours: L = mean_{x in R} d(E_θ(T(x)), E_0(T(x))) + α · mean_{x in F} d(E_θ(T(x)), E_0(T(n_x)))

The two means and α live in per-sample weights, so the loss is the plain sum
of the fused per-sample distances (and its backward needs no rescaling).
Every method returns (loss, retain term, forget term) for one step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..ops import encoder_distance, encoder_distance_multi, gaussian_target
from .caches import SampleCache, cached_prepare
from .step_data import StepInputs


@dataclass
class StepModels:
    """What an objective runs besides the data: the module being trained (the student
    encoder, possibly wrapped; the whole model's methods use the adapter's model), the
    frozen reference (the teacher encoder, or an adapter of the original model) and the
    retain-target cache."""

    student: Optional[nn.Module] = None
    reference: Any = None
    cache: Optional[SampleCache] = None


def sample_weights(num_retain: int, num_forget: int, alpha: float, device) -> torch.Tensor:
    """[R + F] weights: 1/|R| for retain samples, α/|F| for forget samples."""
    return torch.cat([
        torch.full((num_retain,), 1.0 / num_retain, device=device),
        torch.full((num_forget,), alpha / num_forget, device=device),
    ])


def per_sample_distance(student, target, weight: torch.Tensor, distance: str) -> torch.Tensor:
    """Weighted d per sample [B]; a list of feature maps sums d over the maps."""
    if isinstance(student, (list, tuple)):
        target = [t.detach().to(s.dtype) for s, t in zip(student, target)]
        return encoder_distance_multi(student, target, weight, distance=distance)
    return encoder_distance(student, target.detach().to(student.dtype), weight, distance=distance)


def _split(per_sample: torch.Tensor, num_retain: int, alpha: float):
    retain = per_sample[:num_retain].sum()
    forget = per_sample[num_retain:].sum() / alpha if alpha > 0 else per_sample.new_tensor(float("nan"))
    return per_sample.sum(), retain.detach(), forget.detach()


def _prepare_real(s: StepInputs):
    """adapter.prepare([retain; forget]), from the per-sample caches when the engine keeps them."""
    if s.prepared is None:
        return s.adapter.prepare(torch.cat([s.retain, s.forget]))
    return s.adapter.concat(cached_prepare(s.prepared["retain"], s.adapter, s.retain, s.retain_index),
                            cached_prepare(s.prepared["forget"], s.adapter, s.forget, s.forget_index))


def _encode_real(s: StepInputs, encoder: nn.Module):
    real = _prepare_real(s)
    return real, s.adapter.encode(encoder, real, s.corruption)


def ours(s: StepInputs, m: StepModels):
    """E_θ(T(x)) towards E_0 on the mixed batch [T(x_R); T(n_F)], one teacher pass.
    With a SampleCache, retain targets already computed are not computed again."""
    teacher, cache = m.reference, m.cache
    real, student = _encode_real(s, m.student)
    forget_corruption = s.part("forget")
    noise = s.noise(s.forget, s.adapter.noise_keep(forget_corruption))
    if s.diffusion_target != "whole_noise":  # whole_noise: the Gaussian image alone, visible part included
        noise = s.adapter.noise_input(s.forget, noise, forget_corruption)
    noise = s.adapter.prepare(noise)
    corruption = s.adapter.target_corruption(s.corruption, s.num_retain, s.diffusion_target)
    with torch.no_grad():
        if cache is None:
            mixed = s.adapter.concat(s.adapter.take(real, slice(0, s.num_retain)), noise)
            target = s.adapter.encode(teacher, mixed, corruption)
        else:
            target = _cached_targets(s, teacher, real, noise, cache, corruption)
    weights = sample_weights(s.num_retain, s.forget.shape[0], s.alpha, s.retain.device)
    return _split(_distances(student, target, weights, s), s.num_retain, s.alpha)


def _distances(student, target, weights: torch.Tensor, s: StepInputs) -> torch.Tensor:
    """per_sample_distance; with s.forget_maps = N, the forget rows' over the last N maps only."""
    if s.forget_maps is None:
        return per_sample_distance(student, target, weights, s.distance)
    check_forget_maps(s.forget_maps, student)
    n, deep = s.num_retain, slice(len(student) - s.forget_maps, None)
    retain = per_sample_distance(_rows(student, slice(0, n)), _rows(target, slice(0, n)), weights[:n], s.distance)
    forget = per_sample_distance([m[n:] for m in student[deep]], [t[n:] for t in target[deep]], weights[n:],
                                 s.distance)
    return torch.cat([retain, forget])


def check_forget_maps(forget_maps: int, embedding) -> None:
    """forget_maps against an embedding: a list of at least that many maps."""
    if not isinstance(embedding, (list, tuple)) or forget_maps > len(embedding):
        maps = len(embedding) if isinstance(embedding, (list, tuple)) else 1
        raise ValueError(f"forget_maps {forget_maps}: this model's encoder gives {maps} feature map"
                         f"{'s' if maps > 1 else ''}; it applies to encoders with more than one (UNets)")


def _cached_targets(s: StepInputs, teacher: nn.Module, real, noise, cache, corruption):
    """[cached E_0(T(x_R)); E_0(T(n_F))], the teacher run on the noise and on uncached retain rows."""
    missing = cache.missing(s.retain_index)
    inputs = noise
    if missing.numel():
        inputs = s.adapter.concat(s.adapter.take(real, missing.to(s.retain.device, non_blocking=True)), noise)
    chosen = torch.cat([missing, s.num_retain + torch.arange(s.forget.shape[0])])
    fresh = s.adapter.encode(teacher, inputs, s.adapter.select(corruption, chosen))
    if missing.numel():
        cache.store(s.retain_index[missing], fresh[: missing.numel()])
    return torch.cat([cache.lookup(s.retain_index), fresh[missing.numel():].to(cache.values.dtype)])


def _gaussian_like(embedding, s: StepInputs):
    """Gaussian vectors with the batch statistics of each embedding (map)."""
    if isinstance(embedding, (list, tuple)):
        return [gaussian_target(e, seed=s.noise_seed, offset=s.noise_offset, stats="batch") for e in embedding]
    return gaussian_target(embedding, seed=s.noise_seed, offset=s.noise_offset, stats="batch")


def _rows(embedding, index: slice):
    if isinstance(embedding, (list, tuple)):
        return [e[index] for e in embedding]
    return embedding[index]


def _cat(first, second):
    if isinstance(first, (list, tuple)):
        return [torch.cat([a, b]) for a, b in zip(first, second)]
    return torch.cat([first, second])


def random_encoder(s: StepInputs, m: StepModels):
    """Forget targets: Gaussian vectors with the statistics of the teacher's embeddings."""
    real, student = _encode_real(s, m.student)
    with torch.no_grad():
        teacher_out = s.adapter.encode(m.reference, real, s.corruption)
        retain_part = _rows(teacher_out, slice(0, s.num_retain))
        forget_part = _gaussian_like(_rows(teacher_out, slice(s.num_retain, None)), s)
        target = _cat(retain_part, forget_part)
    weights = sample_weights(s.num_retain, s.forget.shape[0], s.alpha, s.retain.device)
    return _split(_distances(student, target, weights, s), s.num_retain, s.alpha)


def max_loss(s: StepInputs, m: StepModels):
    """Whole model: task_loss(R) − α · task_loss(F)."""
    retain = s.adapter.task_loss(s.retain, s.part("retain"))
    forget = s.adapter.task_loss(s.forget, s.part("forget"))
    return retain - s.alpha * forget, retain.detach(), forget.detach()


def noisy_label(s: StepInputs, m: StepModels):
    """Whole model: task_loss(R) + α · task_loss(F with Gaussian-noise targets)."""
    retain = s.adapter.task_loss(s.retain, s.part("retain"))
    forget = s.adapter.task_loss(s.forget, s.part("forget"), targets=s.noise(s.forget))
    return retain + s.alpha * forget, retain.detach(), forget.detach()


def retain_label(s: StepInputs, m: StepModels):
    """Whole model: forget samples take the original model's outputs on retain samples as targets."""
    retain = s.adapter.task_loss(s.retain, s.part("retain"))
    count = s.forget.shape[0]
    if count > s.num_retain:
        raise ValueError("retain_label needs at least as many retain as forget images per step")
    with torch.no_grad():
        targets = m.reference.generate(s.retain[:count], s.adapter.select(s.corruption, slice(0, count)))
    forget = s.adapter.task_loss(s.forget, s.part("forget"), targets=targets)
    return retain + s.alpha * forget, retain.detach(), forget.detach()


@dataclass(frozen=True)
class Objective:
    loss: Callable[[StepInputs, StepModels], tuple]  # -> (loss, retain term, forget term)
    encoder_only: bool  # trains the encoder alone (else the whole model)
    reference: Optional[str]  # "teacher": a frozen encoder copy; "original": a frozen model copy


OBJECTIVES = {
    "ours": Objective(ours, encoder_only=True, reference="teacher"),
    "random_encoder": Objective(random_encoder, encoder_only=True, reference="teacher"),
    "max_loss": Objective(max_loss, encoder_only=False, reference=None),
    "noisy_label": Objective(noisy_label, encoder_only=False, reference=None),
    "retain_label": Objective(retain_label, encoder_only=False, reference="original"),
}
