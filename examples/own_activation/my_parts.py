"""A researcher's own activations, outside the package: import-able from where you run (PYTHONPATH=.)."""

import torch
from torch import nn


class ScaledReLU(nn.Module):
    """ReLU times ``scale``: a setting, and no ``extra_repr`` (the framework tells settings apart by config)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * self.scale


class JitteredReLU(nn.Module):
    """ReLU with a random gain in training: the fused launcher measures that it draws random numbers and runs
    each job of it alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * (1 + 0.1 * torch.rand_like(x)) if self.training else torch.relu(x)
