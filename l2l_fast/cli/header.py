"""The start-up lines of `unlearn` and `eval`: what is about to run, said before any work."""
from __future__ import annotations

from ..adapters import adapter_for
from ..data.config import DataConfig
from ..models.pixels import pixels_of


def model_line(label: str, model) -> str:
    """One model: family, parameters, image shape, pixel convention, patch grid."""
    adapter = adapter_for(model)
    family = getattr(model, "family", type(model).__name__)
    count = sum(p.numel() for p in model.parameters())
    grid = getattr(model, "grid", None) or getattr(adapter, "grid", None)
    shape = "x".join(map(str, adapter.image_shape))
    return (f"{label}: {family}, {count / 1e6:.2f}M parameters, {shape} images"
            + (f" on a {grid[0]}x{grid[1]} grid" if grid else "") + f", pixels {pixels_of(model).describe()}")


def sets_line(data: DataConfig, forget_count: int, retain_count: int) -> str:
    """The forget and retain classes by name, with their image counts."""
    forget = (f"{len(data.forget_indices)} chosen images" if data.forget_indices is not None
              else "forgets " + ", ".join(data.class_names(data.forget)) if data.forget else "forgets listed files")
    return (f"data: {data.dataset}, {forget} ({forget_count} images); "
            f"keeps {', '.join(data.class_names(data.retain))} ({retain_count} images)")
