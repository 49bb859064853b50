"""What the framework must know about a part, asked of the part itself: declared by its class, else measured.

A user's own activation or optimizer is on no list of this project, so none is kept: the diagnostics ask
whether an activation saturates, the fused launcher whether it draws random numbers and whether an optimizer
updates element by element. A class answers by declaring a boolean attribute (``saturates``, ``draws_random``,
``elementwise``); otherwise the part is measured, as built from its config. A part that cannot be measured
(it fails on the probe input) gets the safe answer, with the reason: ``Trait(False, why)`` for ``elementwise``,
``Trait(True, why)`` for ``draws_random``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

PROBE = 20.0  # far out on both sides: a saturating activation's derivative is nearly 0 there


class Trait(NamedTuple):
    """A part's answer, and how it was found (shown where a launcher says why a job runs alone)."""

    holds: bool
    how: str


def unmeasured(exc: Exception, safe: bool) -> Trait:
    """The safe answer for a part that failed on the probe, with what it raised (its first line)."""
    return Trait(safe, f"could not be measured ({type(exc).__name__}: {next(iter(str(exc).splitlines()), '')[:80]})")


def _declared(part: Any, name: str) -> bool | None:
    value = getattr(type(part) if not isinstance(part, type) else part, name, None)
    return value if isinstance(value, bool) else None


def saturates(activation: nn.Module, width: int, threshold: float = 1e-2) -> bool:
    """Whether the activation's derivative is below ``threshold`` far out on both sides (sigmoid, tanh,
    softsign, hard tanh): where its units can saturate. ReLU's is 1 on the right: its units die instead."""
    if (declared := _declared(activation, "saturates")) is not None:
        return declared
    x = torch.tensor([[-PROBE], [PROBE]]).expand(2, width).clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(activation(x.clone()).sum(), x)
    return bool((grad.abs() < threshold).all())


def draws_random(build: Callable[[int], nn.Module], width: int = 8) -> Trait:
    """Whether an activation draws random numbers in training (RReLU's slopes): two calls on one input differ.
    ``build``: the factory the network uses (``width -> module``). The caller's random state is left as it was."""
    try:
        activation = build(width)
        if (declared := _declared(activation, "draws_random")) is not None:
            return Trait(declared, "declared by its class")
        activation.train()
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            x = torch.randn(4, width)
            differ = not torch.equal(activation(x.clone()), activation(x.clone()))
    except Exception as exc:  # whatever it raises, it could not be measured
        return Trait(
            True, f"could not be measured ({type(exc).__name__}: {next(iter(str(exc).splitlines()), '')[:80]})"
        )
    return Trait(differ, "two calls on one input differ" if differ else "two calls on one input agree")


def elementwise(build: Callable[[list[nn.Parameter]], torch.optim.Optimizer]) -> Trait:
    """Whether an optimizer's update of an element depends on that element's gradient and state only (SGD, Adam,
    RMSprop): three steps on two tensors apart, and on the same elements joined in one tensor, end equal. An
    optimizer that reads a whole tensor (a norm, a factored moment) does not, and a fused group, whose members
    share one tensor, would change it. ``build``: ``params -> optimizer`` as the run makes it."""
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            a, b = torch.randn(3, 4), torch.randn(5)
            grads = [(torch.randn(3, 4), torch.randn(5)) for _ in range(3)]
        apart = [nn.Parameter(a.clone()), nn.Parameter(b.clone())]
        joined = nn.Parameter(torch.cat([a.flatten(), b]))
        first, second = build(apart), build([joined])
        if (declared := _declared(first, "elementwise")) is not None:
            return Trait(declared, "declared by its class")
        for ga, gb in grads:
            apart[0].grad, apart[1].grad, joined.grad = ga.clone(), gb.clone(), torch.cat([ga.flatten(), gb])
            first.step()
            second.step()
    except Exception as exc:  # whatever it raises, it could not be measured
        return Trait(
            False, f"could not be measured ({type(exc).__name__}: {next(iter(str(exc).splitlines()), '')[:80]})"
        )
    same = torch.allclose(torch.cat([apart[0].detach().flatten(), apart[1].detach()]), joined.detach(), atol=1e-6)
    return Trait(same, "its steps on tensors apart and joined agree" if same else "it reads whole tensors")
