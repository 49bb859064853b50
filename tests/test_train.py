"""End to end: ``train.py`` and ``eval.py`` through Hydra, as users call them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAST, ROOT, read_metrics, run_script


def only_run_dir(tmp_path: Path) -> Path:
    runs = [p.parent for p in tmp_path.glob("outputs/runs/*/*/metrics.json")]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("steps_per_execution", [1, 16])
def test_train_writes_metrics_tensorboard_and_checkpoints(tmp_path, steps_per_execution):
    proc = run_script([*FAST, "trainer.log_every_n_steps=5", f"steps_per_execution={steps_per_execution}"], tmp_path,
                      env={"PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 2 calls of up to 16 steps, 20 steps: the loss is logged every 5 steps, so no warning that it is not
    assert "smaller than the logging interval" not in proc.stderr
    run_dir = only_run_dir(tmp_path)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("test/acc=") and str(run_dir) in last

    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 1
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "wall_seconds"):
        assert isinstance(metrics[key], float), key
    assert 0.5 < metrics["test/acc"] <= 1.0  # 20 Adam steps already beat chance (0.1) by far
    assert f"{metrics['test/acc']:.4f}" in last

    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and any(c.startswith("best-epoch00") for c in ckpts)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # plain containers only
    assert state["hyper_parameters"]["model"]["hidden_sizes"] == [64, 64, 64]

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "test/loss",
            "test/acc", "final/test_acc"} <= tags
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
    plugin_tags = events.Tags().get("tensors", []) + list(events.summary_metadata)
    assert any("_hparams_/session_start_info" in t for t in plugin_tags)
    assert "hp_metric" not in tags
    # every log_every_n_steps=5 optimizer steps, however many steps a call takes; epoch metrics on the same axis
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20]
    # (Lightning validates before it counts the epoch's last batch: 19 at one step per call too)
    assert metrics["global_step"] == 20 and events.Scalars("val/acc")[-1].step == 19
    assert events.Scalars("train/loss_epoch")[-1].value == pytest.approx(metrics["train/loss"])
    assert metrics["history"]["train/loss"] == [pytest.approx(metrics["train/loss"])]
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()


def test_eval_reproduces_the_test_accuracy_of_the_best_checkpoint(tmp_path):
    proc = run_script(FAST, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = only_run_dir(tmp_path)
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    proc = run_script([f"ckpt_path={best}", "progress_bar=false"], tmp_path, script="eval.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads(next(tmp_path.glob("outputs/eval/*/*/eval.json")).read_text())
    # the run tested on 1 batch of 5000; eval uses all 10000 images, so compare with a fresh full test
    assert 0.5 < evaluated["test/acc"] <= 1.0
    assert proc.stdout.strip().splitlines()[-1].startswith(f"test/acc={evaluated['test/acc']:.4f}")


def test_sgd_with_the_courses_override(tmp_path):
    proc = run_script([*FAST, "activation=relu", "optimizer=sgd", "optimizer.lr=0.1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "completed" and metrics["choices"]["optimizer"] == "sgd"


def test_multirun_gives_each_job_its_own_directory(tmp_path):
    proc = run_script(["-m", "optimizer=sgd,adam", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent for p in tmp_path.glob("outputs/multirun/*/*/*/metrics.json"))
    assert [j.name.split(",")[0] for j in jobs] == ["0_optimizer=sgd", "1_optimizer=adam"]
    assert {read_metrics(j)["choices"]["optimizer"] for j in jobs} == {"sgd", "adam"}


def test_two_runs_started_together_never_share_a_directory(tmp_path):
    cmd = [sys.executable, str(ROOT / "train.py"), *FAST, "trainer.limit_train_batches=2"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    runs = list(tmp_path.glob("outputs/runs/*/*/metrics.json"))
    assert len(runs) == 2 and runs[0].parent != runs[1].parent


def test_unknown_option_lists_the_valid_ones(tmp_path):
    proc = run_script(["activation=relux"], tmp_path)
    assert proc.returncode != 0
    assert "Available options" in proc.stderr and "leaky_relu" in proc.stderr and "alrelu" in proc.stderr


def test_damaged_data_file_stops_before_training(tmp_path):
    data = tmp_path / "mnist"
    shutil.copytree(ROOT / "data" / "mnist", data)
    target = data / "t10k-images-idx3-ubyte.gz"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-100])
    proc = run_script([*FAST, f"data.root={data}"], tmp_path)
    assert proc.returncode != 0
    assert "t10k-images-idx3-ubyte.gz: checksum failed" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("outputs/runs/*/*/checkpoints"))


def test_progress_bar_shows_the_training_loss_and_compile_trains(tmp_path):
    args = [a for a in FAST if a != "progress_bar=false"]
    proc = run_script([*args, "progress_bar=true", "progress_bar_refresh=5", "trainer.log_every_n_steps=5",
                       "compile=true"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train/loss" in proc.stdout and "Epoch 0/0" in proc.stdout
    assert "20/20" in proc.stdout  # mini-batches, though the default call takes up to 16 of them
    metrics = read_metrics(only_run_dir(tmp_path))
    assert metrics["status"] == "completed" and metrics["test/acc"] > 0.5
    # compiled in place: the checkpoint keeps plain keys and loads into an uncompiled model
    state = torch.load(next((only_run_dir(tmp_path) / "checkpoints").glob("best-*.ckpt")), weights_only=True)
    assert "net.output.weight" in state["state_dict"]
