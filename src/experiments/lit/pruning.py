"""Stopping an Optuna trial that is behind: each validation's monitored metric reported to the trial, and training
stopped where the study's pruner says so.

The job of a search opens its trial from the study's storage (``experiments.config.search.job_trial``), so the
same callback serves a trial run in this process, in a joblib worker or on a Ray node. A pruned run records
``pruned`` and the epochs it trained (``experiments.run.recipe``).
"""

from __future__ import annotations

import math
import os
from typing import Any

import lightning as L

from experiments.sweep_dir import TRIAL_ENV


class TrialPruning(L.Callback):
    """Reports ``monitor`` after every validation (the epoch as the step) and stops a trial the pruner prunes;
    ``pruned_after`` is then the number of epochs it trained."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_after: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.pruned_after is not None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(float(value)):  # a diverging run stops by its own guard
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            self.pruned_after = epoch + 1
            trainer.should_stop = True


def search_trial(hc: Any) -> Any:
    """The Optuna trial a job of a search runs, opened from its study (``config.search.job_trial``) while the job's
    environment names it; None for any other job, which imports no Optuna."""
    if not os.environ.get(TRIAL_ENV):
        return None
    from experiments.config.search import job_trial

    return job_trial(hc)
