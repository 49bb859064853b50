"""Names kept once: a metric or a config group added to ``experiments.names`` alone reaches the record, the sweep
report, TensorBoard's HParams and the config checks; run statuses are one enum that reads as plain text."""

import json
from types import SimpleNamespace

import pytest
import torch
from test_hparams import Captures

from conftest import compose_config
from experiments import names
from experiments.config import catalogue
from experiments.config.rules import argument_problems, problems, unread_keys
from experiments.lit.callbacks import EpochHistory
from experiments.names import Group, Metric, Status
from experiments.reports.summary_csv import write_csv
from experiments.reports.table import group_configs, label_configs, read_job
from experiments.run.hparams import flat_hparams, log_final

TOP2 = Metric("val/top2", "val/top2", per_epoch=True)
REGULARIZER = Group("regularizer", "class", base="torch.nn.Module", hparams=True)


@pytest.fixture
def with_top2(monkeypatch):
    monkeypatch.setattr(names, "METRICS", (*names.METRICS, TOP2))


@pytest.fixture
def with_regularizer(monkeypatch):
    monkeypatch.setattr(names, "GROUPS", (*names.GROUPS, REGULARIZER))


def test_a_new_metric_is_accepted_by_the_checks_only_once_it_is_named(monkeypatch):
    cfg = compose_config(["optimized_metric=val/top2", "callbacks.model_checkpoint.monitor=val/top2"])
    refused = problems(cfg)
    assert any(p.startswith("optimized_metric='val/top2' is invalid") for p in refused)
    assert any(p.startswith("callbacks.model_checkpoint.monitor='val/top2' is invalid") for p in refused)
    monkeypatch.setattr(names, "METRICS", (*names.METRICS, TOP2))
    assert problems(cfg) == []


def test_a_new_metric_is_recorded_each_epoch(with_top2):
    class Logged:
        callback_metrics = {"val/acc": torch.tensor(0.5), "val/top2": torch.tensor(0.75)}

    history = EpochHistory()
    module = SimpleNamespace(device=torch.device("cpu"))
    history.setup(Logged(), module, "fit")
    history.on_train_start(Logged(), module)
    history.on_train_epoch_end(Logged(), module)
    history.on_train_end(Logged(), module)  # the epoch's metrics are read once Lightning has computed them
    assert history.history["val/top2"] == [0.75] and history.history["val/acc"] == [0.5]


def test_a_new_metric_is_a_column_of_the_report_and_its_aggregate(with_top2, tmp_path):
    jobs = [
        {"job": "0", "status": "completed", "val/top2": 0.75, "_overrides": {"activation": "relu"}},
        {"job": "1", "status": "completed", "val/top2": 0.25, "_overrides": {"activation": "elu"}},
    ]
    label_configs(jobs)
    write_csv(jobs, tmp_path / "summary.csv")
    header, first, _ = (tmp_path / "summary.csv").read_text().splitlines()
    column = header.split(",").index("val/top2")
    assert first.split(",")[column] == "0.75"
    by_config = {g["config"]: g["val/top2"] for g in group_configs(jobs)}
    assert by_config == {"activation=relu": (0.75, 0.0), "activation=elu": (0.25, 0.0)}


def test_a_new_metric_goes_to_the_loggers_as_a_final_metric(with_top2):
    logger = Captures()
    log_final([logger], 10, compose_config(), {}, {"val/top2": 0.75, "test/acc": 0.9, "status": "completed"})
    assert logger.metrics == {10: {"final/val_top2": 0.75, "final/test_acc": 0.9}}


def test_a_new_group_is_read_not_warned_about_and_its_arguments_are_checked(monkeypatch):
    overrides = ["+regularizer._target_=torch.nn.Dropout", "+regularizer.p=0.1", "+regularizer.pp=2"]
    cfg = compose_config(overrides)
    assert any(w.startswith("regularizer is set but train.py does not read it") for w in unread_keys(cfg))
    assert not any(p.startswith("regularizer.pp") for p in argument_problems(cfg))
    monkeypatch.setattr(names, "GROUPS", (*names.GROUPS, REGULARIZER))
    assert unread_keys(cfg) == []
    assert argument_problems(cfg) == [
        "regularizer.pp is not an argument of torch.nn.Dropout: did you mean regularizer.p? write regularizer.p=2"
    ]
    assert catalogue.kind("regularizer") is torch.nn.Module


def test_a_new_group_is_among_the_hyperparameters(with_regularizer):
    cfg = compose_config(["+regularizer._target_=torch.nn.Dropout", "+regularizer.p=0.1"])
    assert flat_hparams(cfg, {})["regularizer.p"] == 0.1


def test_without_the_new_group_its_keys_are_hyperparameters_only_as_an_override():
    cfg = compose_config(["+regularizer._target_=torch.nn.Dropout", "+regularizer.p=0.1"])
    assert "regularizer.p" not in flat_hparams(cfg, {})


@pytest.mark.parametrize("status", list(Status))
def test_a_status_is_written_and_read_as_plain_text(status, tmp_path):
    text = json.dumps({"status": status})
    assert text == json.dumps({"status": status.value}) and f"{status}" == str(status) == status.value
    (tmp_path / "metrics.json").write_text(text)
    expected = status if status in names.finished() else Status.INCOMPLETE
    assert read_job(tmp_path)["status"] == expected
