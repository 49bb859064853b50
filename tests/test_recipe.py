"""A run's parts come from its config groups: Lightning's own callbacks and loggers, built as configured."""

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from conftest import compose_config
from experiments.lit import callbacks
from experiments.lit.diagnostics import DeadUnitMonitor, GradNormMonitor, HistogramMonitor
from experiments.run.recipe import (
    best_checkpoint,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    set_threads,
)


def by_type(callbacks: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for c in callbacks:
        out.setdefault(type(c).__name__, []).append(c)
    return out


def test_default_callbacks_are_lightnings_own_as_configured(tmp_path):
    cfg = compose_config(["callbacks.progress_bar.refresh_rate=7"], output_dir=str(tmp_path))
    found = by_type(build_callbacks(cfg))
    (bar,) = found["RichProgressBar"]
    assert isinstance(bar, RichProgressBar) and bar.refresh_rate == 7
    assert type(bar) is callbacks.RichProgressBar  # Lightning's, reading metrics at logging steps
    best, last = sorted(found["ModelCheckpoint"], key=lambda c: c.monitor is None)
    assert best.monitor == "val/acc" and best.mode == "max" and best.save_top_k == 1
    assert last.monitor is None and last.filename == "last" and last.dirpath == str(tmp_path / "checkpoints")
    assert {type(c) for c in found["DeadUnitMonitor"] + found["GradNormMonitor"] + found["HistogramMonitor"]} == {
        DeadUnitMonitor,
        GradNormMonitor,
        HistogramMonitor,
    }


def test_step_checkpoints_and_early_stopping_are_options_of_the_callbacks_group(tmp_path):
    cfg = compose_config(
        [
            "callbacks=[step_checkpoint,early_stopping]",
            "callbacks.step_checkpoint.every_n_train_steps=9",
            "callbacks.early_stopping.patience=4",
        ],
        output_dir=str(tmp_path),
    )
    found = by_type(build_callbacks(cfg))
    steps = [c for c in found["ModelCheckpoint"] if "'every_n_train_steps': 9" in c.state_key]
    assert len(found["ModelCheckpoint"]) == 3 and len(steps) == 1 and steps[0].filename == "last"
    (stop,) = found["EarlyStopping"]
    assert isinstance(stop, EarlyStopping) and stop.monitor == "val/acc" and stop.patience == 4


def test_no_callbacks_and_no_diagnostics_build_nothing(tmp_path):
    cfg = compose_config(["callbacks=none", "diagnostics=none"], output_dir=str(tmp_path))
    assert build_callbacks(cfg) == []


def test_loggers_write_into_the_run_directory(tmp_path):
    (tb,) = build_loggers(compose_config([], output_dir=str(tmp_path)))
    assert isinstance(tb, TensorBoardLogger) and tb.log_dir.rstrip("/") == str(tmp_path / "tensorboard")
    (csv,) = build_loggers(compose_config(["logger=csv"], output_dir=str(tmp_path)))
    assert isinstance(csv, CSVLogger) and csv.log_dir.rstrip("/") == str(tmp_path / "csv")
    assert build_loggers(compose_config(["logger=none"], output_dir=str(tmp_path))) == []


def test_model_and_data_are_built_from_their_targets():
    cfg = compose_config(["model.hidden_sizes=[8,4]", "data.batch_size=32"])
    data = build_datamodule(cfg)
    module = build_module(cfg, data)
    assert type(data).__name__ == "MNISTDataModule" and data.batch_size == 32
    assert [h.linear.out_features for h in module.net.hidden] == [8, 4]


@pytest.mark.parametrize(
    "overrides, present, absent",
    [
        (["diagnostics=none"], [], ["diag/dead_frac/total", "diag/grad_norm/layer1", "weights/layer1"]),
        (["diagnostics.histograms=null"], ["diag/dead_frac/total", "diag/grad_norm/layer1"], ["weights/layer1"]),
        (["diagnostics.dead_units=null"], ["diag/grad_norm/layer1", "weights/layer1"], ["diag/dead_frac/total"]),
        (["diagnostics.grad_norms=null"], ["diag/dead_frac/total", "weights/layer1"], ["diag/grad_norm/layer1"]),
    ],
)
def test_diagnostics_switch_off_as_a_group_and_one_by_one(tmp_path, overrides, present, absent):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from experiments.run.recipe import run

    args = [
        "trainer.limit_train_batches=4",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=2",
        "callbacks.progress_bar=null",
        *overrides,
    ]
    cfg = compose_config(args, output_dir=str(tmp_path))
    result = run(cfg, tmp_path, {"optimizer": "adam"}, args)
    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    written = set(result) | set(result["history"]) | set(events.Tags()["histograms"])
    assert result["status"] == "completed"
    assert all(k in written for k in present) and not any(k in written for k in absent), written


def test_a_weights_only_checkpoint_is_refused_for_resuming_before_anything_is_built(tmp_path):
    import torch

    from experiments.errors import CheckpointError
    from experiments.run.recipe import run

    cfg = compose_config([], output_dir=str(tmp_path))
    module = build_module(cfg, build_datamodule(cfg))
    weights = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "epoch": 1,
        "global_step": 10,
        "pytorch-lightning_version": "2.6.0",
    }  # what a fused sweep member saves
    torch.save(weights, tmp_path / "member.ckpt")
    cfg.ckpt_path = str(tmp_path / "member.ckpt")
    with pytest.raises(CheckpointError, match="holds weights only .* eval.py tests it, but a run cannot resume"):
        run(cfg, tmp_path / "run", {}, [])
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_last_checkpoint_is_written_in_an_epoch_without_validation(tmp_path):
    import torch

    from experiments.run.recipe import run

    run_dir = tmp_path / "run"
    cfg = compose_config(
        [
            "+trainer.check_val_every_n_epoch=2",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=3",
            "callbacks.progress_bar=null",
            "diagnostics=none",
            "logger=none",
        ],
        output_dir=str(run_dir),
    )
    result = run(cfg, run_dir, {}, [])
    assert result["status"] == "completed" and result["best_ckpt"] is None  # no validation: nothing to rank
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 3


@pytest.mark.parametrize(
    "given, threads, parallel, expected",
    [
        (None, "auto", 1, "cores"),  # alone: every core
        (None, "auto", 2, "half"),  # joblib's n_jobs=2: half each
        ("3", "auto", 1, 3),  # a scheduler's say (a Ray task's num_cpus, joblib's worker): taken as it is
        ("0", "auto", 1, "cores"),  # no say
        ("many", "auto", 1, "cores"),
        ("3", 1, 1, 1),  # threads given: the user's word wins
    ],
)
def test_auto_threads_take_what_the_scheduler_gave_else_share_the_cores(
    monkeypatch, given, threads, parallel, expected
):
    import os

    import torch

    before = torch.get_num_threads()
    if given is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", given)
    cores = os.cpu_count() or 1
    want = {"cores": cores, "half": max(1, cores // 2)}.get(expected, expected)
    try:
        assert set_threads(threads, parallel) == want == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_the_best_checkpoint_is_the_first_monitoring_ones_with_its_score_only_as_val_acc(tmp_path):
    last, by_loss, by_acc = (ModelCheckpoint(dirpath=tmp_path, monitor=m) for m in (None, "val/loss", "val/acc"))
    for ckpt, path, score in ((by_loss, "loss.ckpt", 0.31), (by_acc, "acc.ckpt", 0.875)):
        ckpt.best_model_path, ckpt.best_model_score = str(tmp_path / path), torch.tensor(score)
    assert best_checkpoint([last, by_acc, by_loss]) == {"best_ckpt": str(tmp_path / "acc.ckpt"), "best_val_acc": 0.875}
    # a val/loss score is not recorded as best_val_acc
    assert best_checkpoint([last, by_loss, by_acc]) == {"best_ckpt": str(tmp_path / "loss.ckpt"), "best_val_acc": None}
    assert best_checkpoint([last]) == best_checkpoint([]) == {"best_ckpt": None, "best_val_acc": None}
