"""Hidden-layer activations: PyTorch's own modules, plus ALReLU, which PyTorch lacks.

Config files name the class directly (``_target_: torch.nn.ReLU``), so the YAML is the catalogue.
This module adds what the YAML cannot say: ALReLU itself, a per-unit PReLU whose size is only known
when the layer is built, and the parameter checks that give a named error instead of a silent NaN.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn


class ALReLU(nn.Module):
    """Absolute Leaky ReLU: ``x`` for ``x > 0`` and ``|alpha * x|`` otherwise.

    Unlike Leaky ReLU the negative side is reflected upwards, so the derivative there is ``-alpha``:
    never zero, so a unit cannot die, but the output stays non-negative like ReLU's.
    """

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"activation.alpha={alpha}: ALReLU needs alpha > 0")
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # for x <= 0, |alpha x| = -alpha x; written so the derivative is -alpha at 0 too (never dead)
        return torch.where(x > 0, x, -self.alpha * x)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


# Parameter ranges per activation argument: (low, high, low inclusive). Checked before anything trains.
PARAM_RANGES: dict[str, tuple[float, float, bool]] = {
    "negative_slope": (0.0, 1.0, True),
    "alpha": (0.0, float("inf"), False),
    "beta": (0.0, float("inf"), False),
    "lower": (0.0, 1.0, True),
    "upper": (0.0, 1.0, True),
    "init": (0.0, 1.0, True),
    "threshold": (0.0, float("inf"), False),
}
SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign)


def check_activation(cfg: DictConfig | dict) -> list[str]:
    """Every problem with an ``activation`` config, one line each, with key and valid range."""
    params = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    errors = []
    for key, (low, high, inclusive) in PARAM_RANGES.items():
        if key not in params:
            continue
        value = params[key]
        valid = f"a number in {'[' if inclusive else '('}{low}, {high}]"
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or not ((value >= low if inclusive else value > low) and value <= high):
            errors.append(f"activation.{key}={value!r} is invalid: must be {valid}")
    if params.get("num_parameters", 1) not in (1, "per_unit"):
        errors.append(f"activation.num_parameters={params['num_parameters']!r} is invalid: must be 1 or per_unit")
    lower, upper = params.get("lower"), params.get("upper")
    if isinstance(lower, (int, float)) and isinstance(upper, (int, float)) and lower > upper:
        errors.append(f"activation.lower={lower} > activation.upper={upper}: RReLU needs lower <= upper")
    return errors


def activation_factory(cfg: DictConfig | dict[str, Any]) -> Callable[[int], nn.Module]:
    """A function ``width -> module``: a fresh activation per hidden layer, sized where it must be."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)

    def build(width: int) -> nn.Module:
        kwargs = dict(plain)
        if kwargs.get("num_parameters") == "per_unit":
            kwargs["num_parameters"] = width
        return instantiate(kwargs)

    return build
