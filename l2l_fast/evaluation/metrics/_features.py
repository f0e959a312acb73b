"""Running a network over images in batches: eval mode, no grad, float64 rows on the CPU."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Union

import torch
from torch import nn

Images = Union[torch.Tensor, Iterable[torch.Tensor]]


def batches(images: Images, batch_size: int) -> Iterator[torch.Tensor]:
    """A tensor [N, ...] in chunks of `batch_size`, or the batches of an iterable as they come."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if torch.is_tensor(images):
        if images.ndim < 1:
            raise ValueError("images must have a batch dimension")
        yield from images.split(batch_size)
    else:
        for batch in images:
            if not torch.is_tensor(batch) or batch.ndim < 1:
                raise TypeError(f"expected batches of images as tensors [B, ...], got {type(batch).__name__}")
            yield batch


@contextlib.contextmanager
def evaluating(network: nn.Module):
    """Eval mode and no grad inside; each submodule's own mode restored after."""
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        with torch.no_grad():
            yield network
    finally:
        for module, training in modes:
            module.training = training


def device_of(network: nn.Module, fallback: torch.device) -> torch.device:
    param = next(network.parameters(), None)
    if param is None:
        param = next(network.buffers(), None)
    return param.device if param is not None else fallback


class Rows(nn.Module):
    """Wraps a network: images [B, ...] → float64 CPU rows [B, D], checked finite."""

    def __init__(self, network: nn.Module, name: str = "network"):
        super().__init__()
        if not isinstance(network, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(network).__name__}")
        self.network = network
        self.name = name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.network(images.to(device_of(self.network, images.device)))
        if not torch.is_tensor(out) or out.ndim < 1 or out.shape[0] != images.shape[0]:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(
                f"{self.name} must map images [{images.shape[0]}, ...] to [{images.shape[0]}, D], got {shape}"
            )
        out = out.detach().reshape(out.shape[0], -1).to("cpu", torch.float64)
        if not torch.isfinite(out).all():
            raise ValueError(f"{self.name} returned non-finite values")
        return out


def rows(network: nn.Module, images: Images, batch_size: int, name: str = "network") -> torch.Tensor:
    """All rows of `network` over `images`, concatenated: float64 [N, D]."""
    wrapped = Rows(network, name)
    with evaluating(network):
        out = [wrapped(batch) for batch in batches(images, batch_size)]
    if not out:
        raise ValueError("no images given")
    return torch.cat(out)
