"""Optimizers and learning-rate schedules from their config groups, kept out of the model config.

Optimizer YAMLs are partial ``torch.optim`` constructors (``_partial_: true``); this module binds them
to the parameters and turns a ``scheduler`` config into Lightning's scheduler dict. One-cycle needs
the run's total number of steps, which only the trainer knows, so it is filled in here.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from hydra.utils import instantiate

# Keys in a scheduler config that are for Lightning, not for the torch scheduler's constructor.
_LIGHTNING_KEYS = ("interval", "frequency")


def build_optimizer(cfg: dict[str, Any], params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return instantiate({k: v for k, v in cfg.items() if k != "full_batch"}, _partial_=True)(params)


def build_scheduler(cfg: dict[str, Any] | None, optimizer: torch.optim.Optimizer,
                    total_steps: int) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` dict, or ``None`` for ``scheduler=none``."""
    if not cfg or cfg.get("_target_") is None:
        return None
    kwargs = {k: v for k, v in cfg.items() if k not in _LIGHTNING_KEYS}
    target = kwargs["_target_"]
    if target.endswith("OneCycleLR"):
        if kwargs.get("max_lr") is None:
            kwargs["max_lr"] = optimizer.param_groups[0]["lr"]
        kwargs["total_steps"] = total_steps
    elif target.endswith("CosineAnnealingLR") and kwargs.get("T_max") is None:
        kwargs["T_max"] = total_steps  # the config steps it per batch
    scheduler = instantiate(kwargs, _partial_=True)(optimizer)
    return {"scheduler": scheduler, "interval": cfg.get("interval", "epoch"), "frequency": cfg.get("frequency", 1)}
