"""Optimizers and learning-rate schedules from their config groups, kept out of the model config.

An optimizer YAML is a partial ``torch.optim`` constructor (``_partial_: true``), bound here to the
parameters. A scheduler YAML is Lightning's ``lr_scheduler`` dict: the partial torch scheduler under
``scheduler``, and beside it when Lightning steps it (``interval``, ``frequency``). One-cycle and cosine
need the run's total number of steps, which only the trainer knows, so they are filled in here.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from hydra.utils import instantiate


def build_optimizer(cfg: dict[str, Any], params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return instantiate(cfg, _partial_=True)(params)


def build_scheduler(cfg: dict[str, Any] | None, optimizer: torch.optim.Optimizer,
                    total_steps: int, total_epochs: int) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` dict, or ``None`` for ``scheduler=none``.

    A schedule over the whole run spans ``total_steps`` when stepped per batch, ``total_epochs`` per epoch.
    """
    if not cfg or not cfg.get("scheduler"):
        return None
    ctor = dict(cfg["scheduler"])
    name = ctor["_target_"].rpartition(".")[2]
    span = total_steps if cfg.get("interval", "epoch") == "step" else total_epochs
    if name == "OneCycleLR":
        if ctor.get("max_lr") is None:
            ctor["max_lr"] = optimizer.param_groups[0]["lr"]
        ctor["total_steps"] = span
    elif name == "CosineAnnealingLR" and ctor.get("T_max") is None:
        ctor["T_max"] = span
    return {**cfg, "scheduler": instantiate(ctor, _partial_=True)(optimizer)}
