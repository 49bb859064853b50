"""Optimizers and learning-rate schedules from their config groups, kept out of the model config.

An optimizer YAML is a partial ``torch.optim`` constructor (``_partial_: true``), bound here to the
parameters. A scheduler YAML is Lightning's ``lr_scheduler`` dict: the partial torch scheduler under
``scheduler``, and beside it when Lightning steps it (``interval``, ``frequency``). One-cycle and cosine
need the run's total number of steps, which only the trainer knows, so they are filled in here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hydra.utils import instantiate


class LectureMomentum(torch.optim.Optimizer):
    """Momentum as the lecture writes it: ``v <- beta v + lr g; theta <- theta - v``.

    PyTorch's ``SGD(momentum=beta)`` keeps ``v <- beta v + g; theta <- theta - lr v`` instead. At a constant
    learning rate the two take identical steps (the lecture's ``v`` is ``lr`` times PyTorch's). Under a
    schedule they differ: PyTorch applies a new ``lr`` to the whole accumulated velocity at once, while here
    only new gradients are scaled by it and the velocity keeps the step sizes it was built with.
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        if not lr > 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(
                f"LectureMomentum needs lr > 0, 0 <= momentum < 1 and weight_decay >= 0; "
                f"got lr={lr}, momentum={momentum}, weight_decay={weight_decay}"
            )
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                velocity = state["velocity"].mul_(group["momentum"]).add_(grad, alpha=group["lr"])
                p.sub_(velocity)
        return loss


def build_optimizer(cfg: dict[str, Any], params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    return instantiate(cfg, _partial_=True)(params)


def build_scheduler(
    cfg: dict[str, Any] | None, optimizer: torch.optim.Optimizer, total_steps: int, total_epochs: int
) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` dict, or ``None`` for ``scheduler=none``.

    A schedule over the whole run spans ``total_steps`` when stepped per batch, ``total_epochs`` per epoch.
    """
    if not cfg or not cfg.get("scheduler"):
        return None
    ctor = dict(cfg["scheduler"])
    name = ctor["_target_"].rpartition(".")[2]
    span = total_steps if cfg.get("interval") == "step" else total_epochs  # Lightning's default: per epoch
    if name == "OneCycleLR":
        if ctor.get("max_lr") is None:  # each parameter group's own rate (a fused sweep has one per member)
            ctor["max_lr"] = [group["lr"] for group in optimizer.param_groups]
        ctor["total_steps"] = span
    elif name == "CosineAnnealingLR" and ctor.get("T_max") is None:
        ctor["T_max"] = span
    return {**cfg, "scheduler": instantiate(ctor, _partial_=True, _convert_="all")(optimizer)}  # lists as lists
