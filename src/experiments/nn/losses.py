"""The course's four losses, each taking the network's raw outputs (logits) and class indices.

Each loss applies the transform it needs itself (log-softmax, softmax or sigmoid), so the network
never ends in one. ``check_output_activation`` catches the course-slide habit of putting a softmax
layer in front of ``CrossEntropyLoss``, which silently applies softmax twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_ACTIVATIONS = ("none", "softmax", "log_softmax", "sigmoid")


class NLLOnLogSoftmax(nn.Module):
    """Negative log-likelihood of ``log_softmax(logits)``: ``CrossEntropyLoss`` spelled in two steps."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(F.log_softmax(logits, dim=1), target)


class SoftmaxMSELoss(nn.Module):
    """The course's MSE: mean squared error between softmax probabilities and one-hot targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        return F.mse_loss(F.softmax(logits, dim=1), one_hot)


class OneHotBCELoss(nn.Module):
    """The course's binary cross-entropy: one sigmoid per class against one-hot targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, one_hot)


# What each loss does to its input first, keyed by class name.
LOSS_TRANSFORM = {
    "CrossEntropyLoss": "log_softmax",
    "NLLOnLogSoftmax": "log_softmax",
    "SoftmaxMSELoss": "softmax",
    "OneHotBCELoss": "sigmoid",
}

# (output activation, loss transform) -> ("warn" or "refuse", why); a pair not listed is fine. The fix is
# the same for every listed pair: no output layer (the loss applies its own transform).
_VERDICT = {
    ("softmax", "log_softmax"): (
        "warn",
        "softmax is applied twice (the layer, then the loss's log-softmax); "
        "the loss cannot reach 0 and gradients shrink",
    ),
    ("softmax", "softmax"): ("warn", "softmax is applied twice (the layer, then the loss's softmax)"),
    ("softmax", "sigmoid"): ("refuse", "sigmoid of probabilities lies in (0.5, 0.73), so BCE can never fit a 0 target"),
    ("log_softmax", "softmax"): (
        "refuse",
        "the loss expects scores, not log-probabilities; MSE against one-hot "
        "targets of log-probabilities is meaningless",
    ),
    ("log_softmax", "sigmoid"): (
        "refuse",
        "sigmoid of log-probabilities (all <= 0) is at most 0.5, so BCE can never fit a 1 target",
    ),
    ("sigmoid", "log_softmax"): (
        "warn",
        "softmax over sigmoid outputs in (0, 1) caps every class probability below "
        "0.25; accuracy still works but the loss cannot fall",
    ),
    ("sigmoid", "softmax"): ("warn", "softmax over sigmoid outputs in (0, 1) keeps probabilities near 0.1"),
    ("sigmoid", "sigmoid"): ("warn", "sigmoid is applied twice (the layer, then the loss's sigmoid)"),
}


@dataclass(frozen=True)
class OutputVerdict:
    """What is wrong with an output activation before a loss: ``refuse``, it cannot train (a config check
    refuses it); otherwise it trains, with a warning. ``message`` names the fix."""

    refuse: bool
    message: str


def check_output_activation(output_activation: str, loss_target: str) -> OutputVerdict | None:
    """``None`` if the pair is right, else the verdict naming the fix.

    ``loss_target`` is the loss config's ``_target_`` (``torch.nn.CrossEntropyLoss``): the check runs
    with the other config checks, before anything is built.
    """
    name = loss_target.rpartition(".")[2]
    # no entry: no output layer, a loss without a known transform, or log_softmax before a log-softmax
    # loss (log_softmax is idempotent, so that pair is right)
    verdict = _VERDICT.get((output_activation, LOSS_TRANSFORM.get(name)))
    if verdict is None:
        return None
    kind, reason = verdict
    return OutputVerdict(
        refuse=kind == "refuse",
        message=f"model.output_activation={output_activation} with {name}: {reason}. Set model.output_activation=none",
    )
