"""How a run's training ended, as its record says it: ``trained`` (then tested), ``diverged``, ``pruned``; with the
history of every epoch and the monitors' last measurements. The single run (``recipe.py``) and the fused launcher's
members (``experiments.fused``) record their outcomes with these same functions.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from experiments import names
from experiments.lit.callbacks import Diverged, EpochHistory
from experiments.names import Status


def how_it_ran(trainer: L.Trainer) -> dict[str, Any]:
    """The record's account of the loop: how far it got, on how many threads, on which device."""
    return {
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "device": str(trainer.strategy.root_device),
        **({"data": trainer.datamodule.account()} if hasattr(trainer.datamodule, "account") else {}),
    }


def pruned(epochs: int, history: dict[str, list[float]]) -> dict[str, Any]:
    """The record of a search's trial its pruner stopped after ``epochs`` epochs: not tested."""
    return {"status": Status.PRUNED, "pruned_after_epoch": epochs, "history": history}


def diverged(exc: Diverged, history: dict[str, list[float]]) -> dict[str, Any]:
    """The record of a run that the divergence guard stopped."""
    return {
        "status": Status.DIVERGED,
        "error": str(exc),
        "diverged_epoch": exc.epoch,
        "diverged_step": exc.step,
        "history": history,
    }


def trained(history: dict[str, list[float]]) -> dict[str, Any]:
    """The record of a run whose training ended: its history and each metric's last epoch."""
    recorded = names.recorded()
    out = {name: values[-1] for name, values in history.items() if name in recorded and values}
    return {**out, "status": Status.TRAINED, "history": history}


def latest_of(monitors: list[L.Callback]) -> dict[str, float]:
    """The monitors' last measurements (the diagnostics' final ``diag/*`` values), for the record."""
    return {k: v for monitor in monitors for k, v in getattr(monitor, "latest", {}).items()}


def history_of(history: EpochHistory, monitors: list[L.Callback]) -> dict[str, list[float]]:
    """Per-epoch metrics and diagnostics, copied: testing a checkpoint restores every callback's state
    from it, the histories' too."""
    out = {name: list(values) for name, values in history.history.items()}
    for monitor in monitors:
        out.update({name: list(values) for name, values in getattr(monitor, "history", {}).items()})
    return out
