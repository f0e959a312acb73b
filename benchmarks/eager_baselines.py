"""What a user writes instead of the fused operators: the baselines of the operator
benchmarks and of the regression pairs (plain PyTorch, none of the project's operators)."""
import torch


def eager_loss(s, t, w):
    """The loss as plain PyTorch writes it: per-sample mean squared difference, weighted."""
    return ((s.float() - t.float()) ** 2).reshape(s.shape[0], -1).mean(1) * w


def eager_noise(x, keep, clamp=(0.0, 1.0), fill=0.0):
    """The noise as the authors' code draws it: randn_like · σ + μ of the batch, clamped; holes filled."""
    noise = torch.clamp(torch.randn_like(x) * x.std() + x.mean(), *clamp)
    return keep * noise + (1 - keep) * fill
