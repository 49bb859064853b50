"""Hidden-layer activations: PyTorch's own modules, plus ALReLU, which PyTorch lacks.

Config files name the class directly (``_target_: torch.nn.ReLU``), so the YAML is the catalogue.
This module adds what the YAML cannot say: ALReLU itself, and a per-unit PReLU whose size is only
known when the layer is built. Parameter ranges are checked with every other value, in ``config/rules.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn


class ALReLU(nn.Module):
    """Absolute Leaky ReLU: ``x`` for ``x > 0`` and ``|alpha * x|`` otherwise.

    Unlike Leaky ReLU the negative side is reflected upwards, so the derivative there is ``-alpha``:
    never zero, so a unit cannot die, but the output stays non-negative like ReLU's.
    """

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = alpha  # > 0, checked with every other config value (config.rules.RULES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # for x <= 0, |alpha x| = -alpha x; written so the derivative is -alpha at 0 too (never dead)
        return torch.where(x > 0, x, -self.alpha * x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def activation_factory(cfg: DictConfig | dict[str, Any]) -> Callable[[int], nn.Module]:
    """A function ``width -> module``: a fresh activation per hidden layer, sized where it must be."""
    plain = dict(cfg)  # a DictConfig's values resolve as they are read

    def build(width: int) -> nn.Module:
        kwargs = dict(plain)
        if kwargs.get("num_parameters") == "per_unit":
            kwargs["num_parameters"] = width
        return instantiate(kwargs)

    return build
