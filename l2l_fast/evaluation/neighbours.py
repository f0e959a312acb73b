"""Retain classes that unlearning moved: the neighbour effect made visible.

Forgetting a class can damage the retain classes that look like it (forgetting
sneakers hurts sandals), most of all when the retain set is a proxy without
those neighbours. A retain class is flagged for a method when, against the
table's baseline row (the original model), its classifier accuracy on generated
images fell by more than `acc_drop` (absolute), or its per-class FID rose above
`fid_ratio` times the baseline's. Only the harmful direction is flagged.

Rows are the report's: {"method": str, "metrics": {"per_class_R": {class: acc},
"per_class_FID_R": {class: fid} (optional)}}; class keys are strings, as in
results.json.
"""
from __future__ import annotations

from typing import Optional

import torch

from .metrics import frechet_distance

ACC_DROP = 0.05
FID_RATIO = 1.25
BASELINE = "Original"


def per_class_fid(real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor, features) -> dict[str, float]:
    """{class: FID between that class's real and generated images} (matching rows of real and fake)."""
    if real.shape != fake.shape or real.shape[0] != labels.shape[0]:
        raise ValueError(f"real {tuple(real.shape)}, fake {tuple(fake.shape)} and labels {tuple(labels.shape)} "
                         "must describe the same images")
    return {str(c): frechet_distance(real[labels == c], fake[labels == c], features)
            for c in labels.unique().tolist()}


def baseline_row(rows: list[dict], baseline: Optional[str] = BASELINE) -> Optional[dict]:
    """The row named `baseline`, else None (tables without the original model get no flags)."""
    return next((row for row in rows if row["method"] == baseline), None)


def flag_neighbours(rows: list[dict], *, baseline: Optional[str] = BASELINE, acc_drop: float = ACC_DROP,
                    fid_ratio: float = FID_RATIO) -> list[dict]:
    """One entry per (method, retain class) that moved past a threshold against the baseline row.

    Entry: {"method", "class", "acc_before", "acc_after", "fid_before", "fid_after", "reasons"};
    the FID fields are None where a row has no per_class_FID_R.
    """
    if acc_drop < 0 or fid_ratio < 1:
        raise ValueError(f"acc_drop must be >= 0 and fid_ratio >= 1, got {acc_drop} and {fid_ratio}")
    base = baseline_row(rows, baseline)
    if base is None:
        return []
    base_acc = base["metrics"].get("per_class_R", {})
    base_fid = base["metrics"].get("per_class_FID_R", {})
    flags = []
    for row in rows:
        if row is base:
            continue
        acc, fid = row["metrics"].get("per_class_R", {}), row["metrics"].get("per_class_FID_R", {})
        for c in sorted(base_acc, key=int):
            reasons = []
            if c in acc and base_acc[c] - acc[c] > acc_drop:
                reasons.append(f"accuracy {base_acc[c]:.2f} -> {acc[c]:.2f}")
            has_fid = c in fid and c in base_fid
            if has_fid and fid[c] > fid_ratio * base_fid[c]:
                reasons.append(f"FID {base_fid[c]:.1f} -> {fid[c]:.1f} ({fid[c] / base_fid[c]:.2f}x)")
            if reasons:
                flags.append({"method": row["method"], "class": c, "acc_before": base_acc[c],
                              "acc_after": acc.get(c), "fid_before": base_fid.get(c) if has_fid else None,
                              "fid_after": fid.get(c) if has_fid else None, "reasons": reasons})
    return flags


def flag_lines(rows: list[dict], *, baseline: Optional[str] = BASELINE, acc_drop: float = ACC_DROP,
               fid_ratio: float = FID_RATIO) -> list[str]:
    """Markdown / terminal lines naming the flagged retain classes of a table (empty without a baseline)."""
    if baseline_row(rows, baseline) is None:
        return []
    head = (f"Retain classes moved by unlearning against {baseline!r} (accuracy on generated images down by "
            f"more than {acc_drop:.2f}, or per-class FID above {fid_ratio:g}x):")
    flags = flag_neighbours(rows, baseline=baseline, acc_drop=acc_drop, fid_ratio=fid_ratio)
    if not flags:
        return [head, "", "- none", ""]
    return [head, ""] + [f"- {f['method']}: class {f['class']}: " + "; ".join(f["reasons"]) for f in flags] + [""]
