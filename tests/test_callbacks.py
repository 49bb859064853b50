"""The project's Lightning callbacks: end to end (slow), Ctrl-C / SIGTERM resume exactly at any step, divergence
stops the run, the per-epoch history survives a resume; in process, the progress bar reads metrics when they
can have changed; the checkpoint writer leaves the previous checkpoint whole when a save is killed or fails."""

import errno
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from conftest import read_metrics, run_process, run_script, subprocess_env
from experiments.lit.callbacks import Diverged, DivergenceGuard, EpochHistory, Interrupts, RichProgressBar
from experiments.lit.checkpoint_io import AtomicCheckpointIO
from experiments.sweep_dir import Action, plan_job
from fault_injection import SignalAtStep, SignalInValidation

TESTS = Path(__file__).parent
STARTUP = TESTS / "ctrl_c_at_import"  # its sitecustomize sends SIGINT at an import
# 3 epochs of 10 batches; deterministic
SMALL = [
    "print_config=false",
    "callbacks.progress_bar=null",
    "deterministic=true",
    "trainer.max_epochs=3",
    "data.limit_train=2560",
    "diagnostics.histograms=null",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=3",
]  # gradient norms read inside every epoch


def inject(step: int | str, signal_name: str) -> list[str]:
    return [
        "+diagnostics.inject._target_=fault_injection.SignalAtStep",
        f"+diagnostics.inject.step={step}",
        f"+diagnostics.inject.signal_name={signal_name}",
    ]


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent for p in tmp_path.glob("outputs/runs/*/*/metrics.json"))


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, dict]:
    """The uninterrupted run: its metrics.json and final weights."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = run_script([*SMALL, f"hydra.run.dir={tmp / 'run'}"], tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return read_metrics(tmp / "run"), final_state(tmp / "run")


def interrupt_and_resume(tmp_path: Path, step: int, signal_name: str, exit_code: int) -> tuple[Path, float]:
    """Stop the run with the signal inside step ``step + 1``, then run the printed resume command."""
    proc = run_process([*SMALL, *inject(step, signal_name)], tmp_path, extra_paths=[TESTS])
    assert proc.returncode == exit_code, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "interrupted" and metrics["global_step"] == step + 1  # that step completed
    saved = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert saved["global_step"] == step + 1
    before = next(v for k, v in saved["callbacks"].items() if k.startswith("EpochHistory"))["elapsed"]
    assert "Resume with:" in proc.stdout and metrics["resume_command"] in proc.stdout
    # the epoch counted as the progress bar counts it, from 1
    assert re.search(rf"Interrupted in epoch {saved['epoch'] + 1}/\d+, step {step + 1}; checkpoint saved", proc.stdout)
    log = (run_dir / "train.log").read_text()
    assert "`weights_only` was not set" not in proc.stderr + log
    if signal_name == "SIGINT":  # the log names what the user did
        assert "Ctrl-C: stopping after this training step" in log and "Received SIGTERM" not in log
    else:
        assert "Received SIGTERM" in log and "Ctrl-C" not in log
    original = (run_dir / ".hydra" / "config.yaml").read_text()
    args = shlex.split(metrics["resume_command"])[2:]  # drop "python train.py"
    proc = run_script(args, tmp_path, extra_paths=[TESTS], env={"PYTHONWARNINGS": "default"})  # warnings shown
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exists and is not empty" not in proc.stdout + proc.stderr  # no warning for what a resume arranged
    assert (run_dir / ".hydra" / "config.yaml").read_text() == original  # the first run's config is kept
    assert "ckpt_path" in next(run_dir.glob(".hydra/resumed-*/overrides.yaml")).read_text()
    return run_dir, before


def assert_same_run(run_dir: Path, reference: tuple[dict, dict], step: int, before: float) -> None:
    resumed, (expected, weights) = read_metrics(run_dir), reference
    assert resumed["status"] == "completed" and "resume_command" not in resumed
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "train/acc", "global_step", "epochs"):
        assert resumed[key] == expected[key], (key, step)
    finals = {k for k in expected if k.startswith("diag/")}  # the monitors' last measurements, born-dead included
    assert {"diag/born_dead_frac/total", "diag/grad_norm/total"} <= finals
    assert {k: resumed.get(k) for k in finals} == {k: expected[k] for k in finals}, step
    history = resumed["history"]
    assert set(history) == set(expected["history"]) and {"diag/dead_frac/layer1", "diag/grad_norm/layer1"} <= set(
        history
    )
    for key in set(history) - {"epoch_seconds"}:  # metrics and diagnostics: one entry per epoch, the same values
        assert history[key] == expected["history"][key], (key, step)
    assert len(history["epoch_seconds"]) == 3
    if step % 10 == 9:  # stopped once that epoch had ended: nothing of the next one was done
        assert before == 0
    else:
        assert history["epoch_seconds"][step // 10] > before > 0  # time before the interruption plus after it
    state = final_state(run_dir)
    assert all(torch.equal(state[k], weights[k]) for k in weights), step


@pytest.mark.slow
def test_ctrl_c_at_a_random_step_inside_an_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    step = random.choice([s for s in range(1, 29) if s % 10 not in (0, 9)])  # not an epoch's first or last step
    run_dir, before = interrupt_and_resume(tmp_path, step, "SIGINT", 130)
    assert_same_run(run_dir, reference, step, before)


@pytest.mark.slow
def test_ctrl_c_in_an_epochs_last_step_resumes_exactly_too(tmp_path, reference):
    # the run stops after that epoch's validation; in the final epoch's last step only the test is left
    step = random.choice([9, 19, 29])
    run_dir, before = interrupt_and_resume(tmp_path, step, "SIGINT", 130)
    assert_same_run(run_dir, reference, step, before)


@pytest.mark.slow
def test_ctrl_c_inside_a_validation_stops_after_it_and_resumes_exactly(tmp_path):
    two = [*SMALL, "data.eval_batch_size=2500", "trainer.limit_val_batches=2"]  # Lightning would end it mid-way
    proc = run_script([*two, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = read_metrics(tmp_path / "reference"), final_state(tmp_path / "reference")
    step = random.choice([10, 20, 30])  # the validations at the end of each epoch
    inject = ["+diagnostics.inject._target_=fault_injection.SignalInValidation", f"+diagnostics.inject.step={step}"]
    proc = run_process([*two, *inject], tmp_path, extra_paths=[TESTS])
    assert proc.returncode == 130, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "interrupted" and metrics["global_step"] == step, metrics
    assert "Ctrl-C: stopping after this validation" in (run_dir / "train.log").read_text()
    saved = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)
    before = next(v for k, v in saved["callbacks"].items() if k.startswith("EpochHistory"))["elapsed"]
    proc = run_script(shlex.split(metrics["resume_command"])[2:], tmp_path, extra_paths=[TESTS])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(run_dir, reference, step - 1, before)  # as a stop in that epoch's last step


@pytest.mark.slow
def test_sigterm_saves_marks_and_resumes_exactly(tmp_path, reference):
    step = random.choice(range(11, 19))
    run_dir, before = interrupt_and_resume(tmp_path, step, "SIGTERM", 143)
    assert_same_run(run_dir, reference, step, before)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_ctrl_c_while_python_imports_hydra_is_one_line_and_leaves_no_directory(tmp_path, script):
    env = {"CTRL_C_AT_IMPORT": "hydra"}
    proc = run_process(["ckpt_path=x.ckpt"] if script == "eval.py" else SMALL, tmp_path, script, env, 60, [STARTUP])
    assert proc.returncode == 130
    assert proc.stderr.strip() == "Interrupted (Ctrl-C) while starting, before a run began"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("module", ["torch", "lightning"])  # the config checks' import; the training stack's
def test_ctrl_c_while_a_run_starts_up_is_one_line_and_recorded_interrupted(tmp_path, module):
    proc = run_process(SMALL, tmp_path, env={"CTRL_C_AT_IMPORT": module}, timeout=60, extra_paths=[STARTUP])
    assert proc.returncode == 130
    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/runs/*/*/train.log")]
    assert proc.stderr.strip() == (
        f"Interrupted (Ctrl-C) before training began; metrics.json status=interrupted; run_dir={run_dir}"
    )
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "interrupted" and metrics["error"] == "interrupted (Ctrl-C) before training began"
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_a_careless_resume_keeps_the_first_runs_hydra_config(tmp_path):
    proc = run_process([*SMALL, *inject(4, "SIGINT")], tmp_path, extra_paths=[TESTS])
    assert proc.returncode == 130
    (run_dir,) = run_dirs(tmp_path)
    original = {p.name: p.read_text() for p in (run_dir / ".hydra").glob("*.yaml")}
    ckpt = run_dir / "checkpoints" / "interrupted.ckpt"
    proc = run_script([*SMALL, f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}"], tmp_path)  # no output_subdir
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").glob("*.yaml")} == original
    assert len(list(run_dir.glob(".hydra/resumed-*/config.yaml"))) == 1


@pytest.mark.slow
def test_kill_9_loses_at_most_the_steps_since_the_last_step_checkpoint(tmp_path):
    every = ["callbacks=step_checkpoint", "callbacks.step_checkpoint.every_n_train_steps=4"]
    proc = run_process([*SMALL, *every, *inject(14, "SIGKILL")], tmp_path, extra_paths=[TESTS])
    assert proc.returncode == -9
    (run_dir,) = run_dirs(tmp_path)
    assert read_metrics(run_dir)["status"] == "running"  # what a killed run leaves: no false "completed"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 12  # the last multiple of 4 before the kill in step 15
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    proc = run_script(
        [*SMALL, *every, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_metrics(run_dir)["status"] == "completed" and read_metrics(run_dir)["global_step"] == 30


@pytest.mark.slow
def test_divergence_stops_the_run_at_the_next_logging_step(diverged_run):
    run_dir, proc = diverged_run  # logging every 5 steps
    assert proc.returncode == 1
    assert "diverged in epoch 1, step 5" in proc.stderr and "Traceback" not in proc.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "diverged" and metrics["diverged_step"] == 5


@pytest.mark.slow
def test_divergence_without_a_logging_step_in_the_epoch_stops_the_run_at_its_end(tmp_path):
    proc = run_script([*SMALL, "optimizer=sgd", "optimizer.lr=1e6", "trainer.log_every_n_steps=50"], tmp_path)
    assert proc.returncode == 1
    assert "diverged in epoch 1, step 10" in proc.stderr and "Traceback" not in proc.stderr
    metrics = read_metrics(run_dirs(tmp_path)[0])
    assert metrics["status"] == "diverged" and metrics["diverged_step"] == 10


@pytest.mark.slow
def test_deterministic_runs_give_identical_metrics(tmp_path, reference):
    proc = run_script([*SMALL, f"hydra.run.dir={tmp_path / 'again'}"], tmp_path)  # the reference's settings
    assert proc.returncode == 0, proc.stderr[-2000:]
    again, (first, _) = read_metrics(tmp_path / "again"), reference
    assert again["deterministic_algorithms"] is first["deterministic_algorithms"] is True
    varying = ("run_dir", "best_ckpt", "wall_seconds", "overrides", "history", "pid")  # pid: where it ran
    assert {k: v for k, v in again.items() if k not in varying} == {k: v for k, v in first.items() if k not in varying}
    assert {k: v for k, v in again["history"].items() if k != "epoch_seconds"} == {
        k: v for k, v in first["history"].items() if k != "epoch_seconds"
    }


@pytest.mark.slow
def test_ctrl_c_during_the_final_test_is_recorded_as_an_interruption(tmp_path):
    proc = run_process([*SMALL, *inject("test", "SIGINT")], tmp_path, extra_paths=[TESTS])
    assert proc.returncode == 130, proc.stderr[-2000:]
    metrics = read_metrics(run_dirs(tmp_path)[0])
    assert metrics["status"] == "interrupted" and "during the test" in metrics["error"]
    assert len(metrics["history"]["val/acc"]) == 3  # training had completed


@pytest.mark.slow
def test_ctrl_c_in_fits_set_up_leaves_no_checkpoint_to_resume_from_and_the_sweep_runs_it_again(tmp_path):
    # a Ctrl-C before training began: a checkpoint then holds no optimizer, and a resume from it would fail
    proc = run_process(
        [*SMALL, "+diagnostics.inject._target_=fault_injection.SignalInSetUp"], tmp_path, extra_paths=[TESTS]
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "interrupted" and "before training began" in metrics["error"], metrics
    assert not {"resume_command", "interrupted_ckpt"} & set(metrics) and "Resume with" not in proc.stdout
    assert proc.stderr.strip().endswith(
        f"Interrupted (Ctrl-C) before training began; metrics.json status=interrupted; run_dir={run_dir}"
    )
    assert not (run_dir / "checkpoints" / "interrupted.ckpt").exists()
    assert plan_job(0, run_dir).action == Action.RERUN  # finishing a sweep trains it again


class LogsEveryStep(L.LightningModule):
    """A progress-bar metric that changes at every step (the batch index), and one from validation."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        self.log("batch", float(batch_idx), prog_bar=True)
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_batch", float(batch_idx), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class SeenBar(RichProgressBar):
    """Records what the bar shows after each training batch and after each validation."""

    def __init__(self) -> None:
        super().__init__(refresh_rate=1000)
        self.shown_after: list[dict] = []
        self.after_validation: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.shown_after.append(dict(self.shown))  # what its get_metrics gave the bar

    def on_validation_end(self, trainer, pl_module):
        super().on_validation_end(trainer, pl_module)
        self.after_validation.append(dict(self.shown))


def bare_trainer(tmp_path: Path, *callbacks: L.Callback, **settings: Any) -> L.Trainer:
    """A CPU trainer with none of its own logger, checkpoints, bar or summary: only the callbacks under test."""
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(accelerator="cpu", callbacks=list(callbacks), default_root_dir=tmp_path, **{**quiet, **settings})


def test_the_progress_bar_reads_metrics_at_logging_steps_epoch_ends_and_after_validation(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(24, 4)), batch_size=2)
    bar = SeenBar()
    trainer = bare_trainer(
        tmp_path,
        bar,
        max_epochs=1,
        enable_progress_bar=True,
        log_every_n_steps=5,
        num_sanity_val_steps=0,
        val_check_interval=6,
        limit_val_batches=1,
    )
    trainer.fit(LogsEveryStep(), train_dataloaders=data, val_dataloaders=data)
    # 12 batches: read after the first, at steps 5 and 10, after the validation of step 6 (fresh: it shows
    # batch 5 and the validation's metric) and after the epoch's last batch; in between, the last read
    assert [m["batch"] for m in bar.shown_after] == [0, 0, 0, 0, 4, 4, 5, 5, 5, 9, 9, 11]
    assert [(m["batch"], m["val_batch"]) for m in bar.after_validation] == [(5, 0), (11, 0)]
    assert "val_batch" not in bar.shown_after[5] and bar.shown_after[6]["val_batch"] == 0


def test_without_logging_steps_the_progress_bar_reads_metrics_at_the_epochs_end(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=2)
    bar = SeenBar()
    trainer = bare_trainer(
        tmp_path, bar, max_epochs=2, enable_progress_bar=True, log_every_n_steps=0, limit_val_batches=0
    )
    trainer.fit(LogsEveryStep(), train_dataloaders=data, val_dataloaders=data)
    assert [m["batch"] for m in bar.shown_after] == [0, 0, 0, 0, 0, 5] + [5] * 6  # the first epoch's end, twice


class EpochNames(RichProgressBar):
    """Records the training bar's description after every training batch."""

    def __init__(self) -> None:
        super().__init__(refresh_rate=1000)
        self.names: list[str] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.names.append(self.progress.tasks[self.train_progress_bar_id].description.strip())


@pytest.mark.parametrize("max_epochs, shown", [(2, ["Epoch 1/2", "Epoch 2/2"]), (-1, ["Epoch 1", "Epoch 2"])])
def test_the_progress_bar_counts_epochs_from_one(tmp_path, max_epochs, shown):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=2)
    bar = EpochNames()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        max_steps=8,
        accelerator="cpu",
        logger=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[bar],
        default_root_dir=tmp_path,
    )
    trainer.fit(LogsEveryStep(), train_dataloaders=data)
    assert bar.names == [shown[0]] * 4 + [shown[1]] * 4


def test_a_progress_bar_resumed_in_an_epochs_middle_counts_from_one_too(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=2)
    at_step_6 = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, filename="mid", every_n_train_steps=6)
    trainer = dict(accelerator="cpu", logger=False, enable_model_summary=False, limit_val_batches=0)
    L.Trainer(max_epochs=2, callbacks=[at_step_6, EpochNames()], **trainer).fit(LogsEveryStep(), data)
    resumed = EpochNames()
    L.Trainer(max_epochs=3, callbacks=[resumed], enable_checkpointing=False, **trainer).fit(
        LogsEveryStep(), data, ckpt_path=tmp_path / "mid.ckpt"
    )
    assert resumed.names == ["Epoch 2/3"] * 2 + ["Epoch 3/3"] * 4  # from the second epoch's third batch


SAVER = """
import sys, torch
from pathlib import Path
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from experiments.lit.checkpoint_io import AtomicCheckpointIO
path, n = Path(sys.argv[1]), 0
io = TorchCheckpointIO() if sys.argv[2:] == ["lightning"] else AtomicCheckpointIO()
while True:
    n += 1
    io.save_checkpoint({"n": n, "w": torch.full((4_000_000,), float(n))}, path)  # 16 MB each
    print(n, flush=True)
"""


@pytest.fixture
def other_tmpdir():
    """A fresh temp directory on another filesystem than pytest's (tmpfs ``/dev/shm`` on Linux), removed
    afterwards with what killed saves left in it; None where there is none with room for a few saves."""
    shm = Path("/dev/shm")
    if (
        not (shm.is_dir() and os.access(shm, os.W_OK))
        or shm.stat().st_dev == Path(tempfile.gettempdir()).stat().st_dev
        or shutil.disk_usage(shm).free < 256 << 20
    ):
        yield None
        return
    path = tempfile.mkdtemp(prefix="checkpoint-io-", dir=shm)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_a_checkpoint_killed_mid_write_leaves_the_previous_one_whole(tmp_path, other_tmpdir):
    path = tmp_path / "last.ckpt"
    for delay in (0.05, 0.19, 0.43):
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(env={"TMPDIR": other_tmpdir} if other_tmpdir else None),
        )
        assert proc.stdout.readline().strip()  # one save done: there is a previous checkpoint to protect
        time.sleep(delay)  # then kill -9 at some point of a later save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved = torch.load(path, weights_only=True)
        assert torch.equal(saved["w"], torch.full((4_000_000,), float(saved["n"])))
        for tmp in tmp_path.glob(".*.tmp"):  # what a killed save leaves is a stray temporary, never the file
            tmp.unlink()


@pytest.mark.slow
def test_lightnings_own_writer_is_not_atomic_where_the_temp_directory_is_another_filesystem(tmp_path, other_tmpdir):
    """Why the project keeps its own writer: Lightning's ``TorchCheckpointIO`` writes to the system's temp
    directory and moves the file into place; across filesystems that move is a copy into the target, and a
    kill -9 during it leaves a torn checkpoint where a whole one was."""
    if other_tmpdir is None:
        pytest.skip("needs a temp directory on another filesystem (/dev/shm) with room for a few saves")
    path = tmp_path / "last.ckpt"
    torn = False
    for _ in range(3):  # the kill is sent when a copy has begun; it may land after the copy ends
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), "lightning"],
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(env={"TMPDIR": other_tmpdir}),
        )
        assert proc.stdout.readline().strip()  # one save done: a whole checkpoint to protect
        whole = path.stat().st_size
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and path.stat().st_size >= whole // 2:
            pass  # watch the file until a later save has rewritten less than half of it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if path.stat().st_size < whole:
            torn = True
            break
    assert torn
    with pytest.raises(Exception):  # noqa: B017 -- whatever torch raises on a torn file: it cannot load it
        torch.load(path, weights_only=True)


def test_a_failed_write_leaves_the_earlier_checkpoint_untouched(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, path)

    def half_written(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))


class DivergesAtStep(L.LightningModule):
    """A loss that is NaN from training step ``at`` on, logged at every step as ``train/loss``; with ``bad``, a
    loss whose value is ``bad`` (infinite) while its gradient stays finite, so the weights stay finite too."""

    def __init__(self, at: int, bad: float | None = None) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.at, self.bad = at, bad

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        if self.global_step >= self.at:
            loss = loss * float("nan") if self.bad is None else loss + self.bad
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_the_divergence_guard_stops_within_a_logging_interval_where_early_stopping_waits_for_the_epoch(tmp_path):
    """The issue's choice between ``EarlyStopping(check_finite=True)`` and a guard: whichever stops within one
    logging interval. 40 steps an epoch, logging every 5, the loss NaN from step 12."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(80, 4)), batch_size=2)

    def trainer(callback: L.Callback) -> L.Trainer:
        return bare_trainer(tmp_path, callback, max_epochs=2, log_every_n_steps=5)

    early = trainer(L.pytorch.callbacks.EarlyStopping(monitor="train/loss", check_finite=True))
    early.fit(DivergesAtStep(at=12), data)
    assert early.should_stop and early.global_step == 40  # the whole first epoch: 28 steps on a NaN loss
    with pytest.raises(Diverged) as stopped:
        trainer(DivergenceGuard(every_n_steps=5)).fit(DivergesAtStep(at=12), data)
    assert stopped.value.epoch == 0 and stopped.value.step == 15  # the first logging step after the NaN


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_the_divergence_guard_stops_on_an_infinite_loss_as_on_a_nan(tmp_path, bad):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(40, 4) + 1), batch_size=2)
    trainer = bare_trainer(tmp_path, DivergenceGuard(every_n_steps=5), max_epochs=1, log_every_n_steps=5)
    with pytest.raises(Diverged, match=f"train loss is {bad}$") as stopped:
        trainer.fit(DivergesAtStep(at=7, bad=bad), data)
    assert stopped.value.epoch == 0 and stopped.value.step == 10  # the first logging step after step 7


class _OnCPU:
    device = torch.device("cpu")


def test_a_resumed_epoch_counts_the_time_it_spent_before_the_interruption():
    """The interrupted process's seconds of the epoch travel in the checkpoint and are added to the resumed
    process's, wherever in the epoch the interruption fell (1000 s: far more than this test can take)."""
    first = EpochHistory()
    first.on_train_epoch_start(None, _OnCPU())
    saved = first.state_dict()
    saved["elapsed"] = 1000.0  # as if the interrupted process had spent that long in the epoch
    resumed = EpochHistory()
    resumed.load_state_dict(saved)
    resumed.on_train_start(None, _OnCPU())  # a run resumed mid-epoch gets no on_train_epoch_start
    resumed.on_train_epoch_end(None, _OnCPU())
    (seconds,) = resumed.history["epoch_seconds"]
    assert 1000.0 <= seconds < 1010.0
    resumed.on_train_epoch_start(None, _OnCPU())  # the next epoch starts from nothing
    resumed.on_train_epoch_end(None, _OnCPU())
    assert resumed.history["epoch_seconds"][1] < 10.0


def test_an_interrupted_run_exits_with_128_plus_the_signal_that_stopped_it():
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    interrupts = Interrupts(None, lambda trainer, ckpt: None)
    assert interrupts.exit_status(KeyboardInterrupt()) == 130  # a second Ctrl-C, or one before training
    assert interrupts.exit_status(SIGTERMException()) == 143  # Lightning's graceful stop on SIGTERM
    interrupts.signal = signal.SIGINT  # a first Ctrl-C, turned into that graceful stop: still a Ctrl-C
    assert interrupts.exit_status(SIGTERMException()) == 130


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_stop_in_fits_set_up_saves_no_checkpoint_and_one_in_training_saves_a_resumable_one(stop, tmp_path):
    """Before training began the optimizers are not yet made: a checkpoint then could not be resumed."""
    from types import SimpleNamespace

    from experiments.errors import BEFORE_TRAINING

    saved, told = [], []
    trainer = SimpleNamespace(
        training=True, save_checkpoint=lambda path, weights_only: saved.append((path, weights_only))
    )
    interrupts = Interrupts(tmp_path, lambda trainer, ckpt: told.append(ckpt))
    interrupts.on_exception(trainer, None, stop())  # in fit's set-up: the training loop has not started
    assert saved == told == [] and interrupts.stopped_outside_training() == BEFORE_TRAINING
    interrupts.on_train_start(trainer, None)
    interrupts.on_exception(trainer, None, stop())
    assert saved == [(tmp_path / "interrupted.ckpt", False)] and told == [tmp_path / "interrupted.ckpt"]


class CountsValidation(LogsEveryStep):
    """Counts the validation batches it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.validated = 0

    def validation_step(self, batch, batch_idx):
        self.validated += 1
        return super().validation_step(batch, batch_idx)


# where the signal lands: 4 steps of 2 samples an epoch, then a validation of 4 batches
SIGNAL_AT = {
    "training": lambda name: SignalAtStep(0, name),  # the first step
    "validation": lambda name: SignalInValidation(4, name),  # the first epoch's validation, its first batch
    "before validation": lambda name: SignalAtStep(3, name),  # the epoch's last step, before that validation
}


@pytest.mark.parametrize(
    "signal_name, where, saved",
    [
        ("SIGTERM", "training", True),
        ("SIGINT", "training", True),
        ("SIGINT", "validation", True),
        ("SIGTERM", "validation", False),
        ("SIGINT", "before validation", False),  # Lightning's check after a validation's first batch ends it
    ],
)
def test_a_ctrl_c_in_a_validation_waits_for_its_end_and_a_stop_lightning_makes_there_saves_nothing(
    tmp_path, signal_name, where, saved
):
    """A Ctrl-C in a validation lets it end, then stops where a Ctrl-C in its training step would. Lightning
    ends a validation mid-way where its SIGTERM flag is up when the validation starts or while it runs (a
    Ctrl-C in the step before it, a SIGTERM from outside): training's loop then stands inside no step, nothing
    is saved there, and the record's error says why."""
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=2)
    called = []
    interrupts = Interrupts(tmp_path, lambda trainer, ckpt: called.append((ckpt, trainer.global_step)))
    trainer = bare_trainer(tmp_path, SIGNAL_AT[where](signal_name), interrupts, max_epochs=2, num_sanity_val_steps=0)
    module = CountsValidation()
    with pytest.raises(SystemExit):
        trainer.fit(module, data, data)
    assert interrupts.began and not interrupts.ended
    assert signal.getsignal(signal.SIGINT) is not interrupts._ctrl_c  # the user's Ctrl-C handler is back
    if saved:
        step = 1 if where == "training" else 4  # the step in progress; or the epoch's last, validated after
        assert called == [(tmp_path / "interrupted.ckpt", step)] and called[0][0].exists()
        assert interrupts.signal == getattr(signal, signal_name)  # what the exit status and log name
        assert module.validated == (4 if where == "validation" else 0)  # the validation ran to its end
    else:
        assert called == [] and not (tmp_path / "interrupted.ckpt").exists() and module.validated == 1
        assert "inside a validation" in interrupts.stopped_outside_training()
