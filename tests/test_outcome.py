"""``run/outcome.py``: how a run's training ended, as its record says it."""

from types import SimpleNamespace

from experiments import names
from experiments.lit.callbacks import Diverged, EpochHistory
from experiments.run.outcome import diverged, history_of, latest_of, pruned, trained


def test_a_trained_run_records_each_metrics_last_epoch_and_nothing_else_of_its_history():
    history = {"val/acc": [0.5, 0.8], "train/loss": [1.0, 0.4], "diag/dead_frac/layer1": [0.1, 0.2]}
    record = trained(history)
    assert record["status"] == names.Status.TRAINED and record["history"] is history
    assert {k: v for k, v in record.items() if k not in ("status", "history")} == {"val/acc": 0.8, "train/loss": 0.4}


def test_a_pruned_trial_records_the_epochs_it_trained_and_a_diverged_run_where_it_stopped():
    assert pruned(2, {"val/acc": [0.1, 0.1]}) == {
        "status": names.Status.PRUNED,
        "pruned_after_epoch": 2,
        "history": {"val/acc": [0.1, 0.1]},
    }
    record = diverged(Diverged(1, 17, float("nan"), "loss is nan"), {})
    assert record["status"] == names.Status.DIVERGED and (record["diverged_epoch"], record["diverged_step"]) == (1, 17)


def test_history_and_latest_gather_every_monitors_own_as_copies():
    epochs = EpochHistory()
    epochs.history = {"val/acc": [0.5], "epoch_seconds": [1.0]}
    monitor = SimpleNamespace(history={"diag/act_step": [0, 5]}, latest={"diag/act_std/layer1": 0.3})
    gathered = history_of(epochs, [monitor, SimpleNamespace()])
    assert gathered == {"val/acc": [0.5], "epoch_seconds": [1.0], "diag/act_step": [0, 5]}
    gathered["val/acc"].append(0.9)
    assert epochs.history["val/acc"] == [0.5]  # a copy: testing a checkpoint restores the callbacks' own
    assert latest_of([monitor, SimpleNamespace()]) == {"diag/act_std/layer1": 0.3}
