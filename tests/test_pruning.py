"""``lit/pruning.py``: each validation reported to the trial, and training stopped where the pruner says so."""

import math
from types import SimpleNamespace

import optuna
import pytest

from experiments.lit.pruning import TrialPruning


def trainer_at(epoch: int, value: float, sanity: bool = False):
    return SimpleNamespace(
        current_epoch=epoch, sanity_checking=sanity, should_stop=False, callback_metrics={"val/acc": value}
    )


@pytest.fixture
def study():
    """A maximising study whose median pruner prunes from the second trial on, at any step."""
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    first = study.ask()
    for epoch, value in enumerate([0.8, 0.9, 0.95]):
        first.report(value, step=epoch)
    study.tell(first, 0.95)
    return study


def test_a_trial_behind_the_median_is_stopped_after_the_epoch_it_fell_behind_at(study):
    trial = study.ask()
    pruning = TrialPruning(trial, "val/acc")
    ahead = trainer_at(0, 0.85)
    pruning.on_validation_end(ahead, None)
    assert not ahead.should_stop and pruning.pruned_after is None
    behind = trainer_at(1, 0.5)
    pruning.on_validation_end(behind, None)
    assert behind.should_stop and pruning.pruned_after == 2  # two epochs trained
    assert study.trials[1].intermediate_values == {0: 0.85, 1: 0.5}
    after = trainer_at(2, 0.1)  # a stopped trial reports nothing more
    pruning.on_validation_end(after, None)
    assert study.trials[1].intermediate_values == {0: 0.85, 1: 0.5} and not after.should_stop


@pytest.mark.parametrize("trainer", [trainer_at(0, 0.1, sanity=True), trainer_at(0, math.nan)])
def test_the_sanity_check_and_a_value_that_is_no_number_are_not_reported(study, trainer):
    trial = study.ask()
    TrialPruning(trial, "val/acc").on_validation_end(trainer, None)
    assert study.trials[1].intermediate_values == {} and not trainer.should_stop


def test_a_job_outside_a_search_has_no_trial_to_report_to(monkeypatch):
    from experiments.lit.pruning import search_trial
    from experiments.sweep_dir import TRIAL_ENV

    monkeypatch.delenv(TRIAL_ENV, raising=False)
    assert search_trial(object()) is None  # the job's Hydra config is not even read
