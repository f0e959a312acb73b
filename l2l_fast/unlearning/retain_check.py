"""Retain damage measured as the run goes, and `retain_budget` (DESIGN §6).

The unit: the relative rise of the model's own loss (`adapter.task_loss`: the hole
reconstruction error of an MAE, the token cross-entropy of a VQ model, the
noise-prediction error of a diffusion model) on retain images the run holds out
from training, each with a fixed seeded corruption, per class when the retain set
yields (image, label) pairs. `retain_budget=0.05` lets no class's held-out loss rise
more than 5% above the original model's. Forgetting is measured in the same unit,
on a fixed slice of the forget images: the larger their loss's rise, the more the
model has forgotten.

The solver treats unlearning as Feng et al. (ICLR 2025) do: minimise the forget
objective subject to a bound ε on the retain objective. Its Lagrangian, divided by
the multiplier μ on the retain term, is the run's own loss with α_t = α / μ_t, so the
run keeps its objective and the check moves μ by dual ascent on the measured
violation, in multiplicative form (log μ ← log μ + η · clip(damage / ε − 1, ±1), μ in
[1, MAX_MULTIPLIER]; cf. the Lagrangian multiplier control of Stooke et al., ICML
2020). μ starts at MAX_MULTIPLIER, on the retain side: Adam's steps do not shrink
with the loss's scale, and the retain term's gradient is 0 at the original weights,
so any forget weight moves the encoder at full speed at first and only the balance
of the two terms, once they pull against each other, sets how far it drifts. Under
the budget μ falls (the forget weight grows, by at most e per check) towards the
user's α, the most aggressive setting the run uses; above it μ rises. Each checked
state within the budget is a candidate; the run ends at the candidate that forgot most and
says so when the last state broke the budget.
This differs from Feng et al.'s solver (boundary solutions, then a walk along the
Pareto front): a dual update needs no second pass over the data.
The multiplier scales the loss, which Adam's normalisation cancels, so it cannot shorten
the steps: with μ at MAX_MULTIPLIER the forget weight is already negligible, yet Adam turns
the retain term's small, noisy gradient near the original weights into lr-sized steps
(the Fashion-MNIST Palette at lr 4e-3: +73% at step 5 with a forget weight of 5e-5). A check
that breaks the budget with μ already at its bound therefore backtracks, as a line search
does: the weights go back to the best state within the budget and the step length (a factor
on the lr schedule, Adam's moments kept) halves; the factor never grows back. Near the retain
optimum the damage grows with the square of the distance moved and the forgetting with the
distance itself, so short enough steps find states within the budget that forget, though
they may forget little: that Palette at 0.05 halves three times and keeps step 75, forget
+4.5% (benchmarks/results/tradeoff_diffusion).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

from ..data.source import ImageSource
from ..training import distributed

log = logging.getLogger(__name__)
MAX_MULTIPLIER = 1e4
DUAL_STEP = 1.0  # η
FORGET_SLICE = 256  # forget images whose loss measures forgetting
CHUNK = 64


def default_holdout(retain_size: int) -> int:
    """Held-out retain images when retain_budget is set and retain_holdout is not: a tenth
    of the set, at most 256."""
    return max(1, min(256, retain_size // 10))


def split_holdout(size: int, holdout: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out indices) of a set of `size`, the held-out ones drawn with `seed`."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[holdout:].sort().values, order[:holdout].sort().values


@dataclass
class Check:
    step: int
    damage: float  # the largest relative rise over the held-out classes (over the whole slice without labels)
    per_class: dict[str, float]  # {class: relative rise}; {"all": ...} without labels
    forget: float  # relative rise of the loss on the forget slice
    alpha: float  # the forget weight the steps up to this check used
    step_scale: float = 1.0  # the factor on the lr the steps up to this check used

    @property
    def worst_class(self) -> str:
        return max(self.per_class, key=self.per_class.get)


@dataclass
class Best:
    step: int
    forget: float
    damage: float
    weights: dict[str, torch.Tensor] = field(repr=False)


class RetainCheck:
    """The held-out retain images and the forget slice, their losses under the original
    model, and the checks made since; with a budget, the multiplier and the best state."""

    def __init__(self, adapter, trainable: nn.Module, retain: ImageSource, forget: ImageSource,
                 holdout: torch.Tensor, *, spec, alpha: float, budget: Optional[float], every: int, seed: int,
                 device: torch.device, ctx: distributed.Context):
        self.adapter, self.trainable, self.ctx = adapter, trainable, ctx
        self.alpha0, self.budget, self.every = alpha, budget, every
        self.groups = _groups(retain, holdout)
        self.images = {"retain": retain.batch(holdout).to(device), "forget": forget.batch(
            torch.arange(min(FORGET_SLICE, len(forget)))).to(device)}
        self.corruption = {name: adapter.draw(spec, images.shape[0], torch.Generator().manual_seed(seed + i))
                           for i, (name, images) in enumerate(self.images.items())}
        # from the retain side: the weight on forgetting grows while the damage stays under the budget
        self.multiplier, self.history = (1.0 if budget is None else MAX_MULTIPLIER), []
        self.step_scale = 1.0  # halved each time the budget breaks with the multiplier at its bound
        self.baseline: dict[str, float] = {}
        self.best: Optional[Best] = None

    @property
    def alpha(self) -> float:
        return self.alpha0 / self.multiplier

    def start(self) -> None:
        """The original model's losses; with a budget, its weights as the first candidate."""
        self.baseline = self._losses()
        if self.budget is not None:
            self.best = Best(0, 0.0, 0.0, _copy(self.trainable))

    def due(self, done: int, steps: int) -> bool:
        return done % self.every == 0 or done == steps

    def check(self, done: int) -> Check:
        losses = self._losses()
        rise = {name: losses[name] / self.baseline[name] - 1.0 for name in losses}
        per_class = {name[len("class "):] if name != "retain" else "all": value
                     for name, value in rise.items() if name != "forget"}
        result = Check(done, max(per_class.values()), per_class, rise["forget"], self.alpha, self.step_scale)
        self.history.append(result)
        note = ""
        if self.budget is not None:
            if result.damage <= self.budget and result.forget > self.best.forget:
                self.best = Best(done, result.forget, result.damage, _copy(self.trainable))
            backtrack = result.damage > self.budget and self.multiplier == MAX_MULTIPLIER
            if backtrack:  # the forget weight cannot fall further: the steps' length breaks the budget
                self.trainable.load_state_dict(self.best.weights)
                self.step_scale /= 2
            step = DUAL_STEP * min(1.0, max(-1.0, result.damage / self.budget - 1.0))
            self.multiplier = min(MAX_MULTIPLIER, max(1.0, self.multiplier * math.exp(step)))
            note = f", alpha now {self.alpha:.3g}"
            if backtrack:
                note += f"; back to step {self.best.step}, step length x{self.step_scale:g}"
        log.info("step %d: retain damage %+.2f%% (worst class %s), forget %+.1f%%%s", done, 100 * result.damage,
                 result.worst_class, 100 * result.forget, note)
        return result

    def finish(self) -> Optional[str]:
        """With a budget: the best state within it loaded when the last check broke it; a sentence
        saying what was kept (None without a budget)."""
        if self.budget is None:
            return None
        last, best = self.history[-1], self.best
        broke = f"damage {last.damage:+.2%}" + ("" if last.worst_class == "all" else f", class {last.worst_class}")
        if last.step == best.step:
            message = f"retain_budget {self.budget:g}: met (damage {last.damage:+.2%}, forget {last.forget:+.1%})"
        else:
            self.trainable.load_state_dict(best.weights)
            if last.damage <= self.budget:
                message = (f"retain_budget {self.budget:g}: met; kept the state of step {best.step}, which forgot more "
                           f"(forget {best.forget:+.1%}, {last.forget:+.1%} at the end)")
            elif best.step == 0:
                message = (f"retain_budget {self.budget:g} could not be met: every checked state broke it (last: "
                           f"{broke}); the model is the original")
            else:
                message = (f"retain_budget {self.budget:g}: the last state broke it ({broke}); kept "
                           f"the state of step {best.step} (damage {best.damage:+.2%}, forget {best.forget:+.1%})")
        if self.step_scale < 1.0:
            halvings = round(-math.log2(self.step_scale))
            message += f"; the step length was halved {halvings} time{'s' if halvings > 1 else ''}"
        (log.info if last.damage <= self.budget else log.warning)(message)
        return message

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """(JSON meta, tensors) for a run checkpoint."""
        meta = {"multiplier": self.multiplier, "step_scale": self.step_scale, "baseline": self.baseline,
                "history": [asdict(c) for c in self.history]}
        tensors = {}
        if self.best is not None:
            meta["best"] = {"step": self.best.step, "forget": self.best.forget, "damage": self.best.damage}
            tensors = {f"budget_best.{k}": v for k, v in self.best.weights.items()}
        return meta, tensors

    def load_state(self, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
        self.multiplier, self.baseline = meta["multiplier"], meta["baseline"]
        self.step_scale = meta.get("step_scale", 1.0)  # checkpoints from before backtracking
        self.history = [Check(**c) for c in meta["history"]]
        if "best" in meta:
            self.best = Best(**meta["best"], weights=dict(tensors))

    def _losses(self) -> dict[str, float]:
        """{"class C" or "retain", "forget": mean task loss}, the same values on every rank."""
        module_modes = [(m, m.training) for m in self.adapter.model.modules()]
        self.adapter.model.eval()
        names, values = [], []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                for name, index in [*self.groups.items(), ("forget", None)]:
                    which = "forget" if name == "forget" else "retain"
                    images, corruption = self.images[which], self.corruption[which]
                    if index is None:
                        index = torch.arange(images.shape[0])
                    names.append(name)
                    values.append(_mean_loss(self.adapter, images, corruption, index))
        finally:
            for module, mode in module_modes:
                module.train(mode)
        losses = torch.tensor(values, dtype=torch.float64)
        if self.ctx.enabled:  # rank 0's values, so that every rank takes the same decisions
            losses = losses.to(self.images["retain"].device)
            torch.distributed.broadcast(losses, 0)
        return dict(zip(names, losses.tolist()))


def _groups(retain: ImageSource, holdout: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"class C": rows of the held-out images of class C} when the set has labels, else {"retain": all rows}."""
    labels = retain.labels(holdout)
    if labels is None:
        return {"retain": torch.arange(holdout.numel())}
    return {f"class {c}": (labels == c).nonzero().flatten() for c in labels.unique().tolist()}


def _mean_loss(adapter, images: torch.Tensor, corruption, index: torch.Tensor) -> float:
    total = 0.0
    for chunk in index.split(CHUNK):
        loss = adapter.task_loss(images[chunk.to(images.device)], adapter.select(corruption, chunk))
        total += float(loss) * len(chunk)
    return total / index.numel()


def _copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
