"""Faults end in a clear message and a recoverable state: interrupts, kill -9, divergence, disk, checkpoints."""

import errno
import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch

from conftest import read_metrics, run_script
from experiments.faults import AtomicCheckpointIO, check_writable

TESTS = str(Path(__file__).parent)
# 3 epochs of 10 batches, in calls of 4, 4 and 2 steps; deterministic
SMALL = ["print_config=false", "progress_bar=false", "deterministic=true", "trainer.max_epochs=3",
         "data.limit_train=2560", "steps_per_execution=4", "diagnostics=none", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


def inject(step: int, signal_name: str) -> list[str]:
    return ["+diagnostics.inject._target_=fault_injection.SignalAtStep", f"+diagnostics.inject.step={step}",
            f"+diagnostics.inject.signal_name={signal_name}"]


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent for p in tmp_path.glob("outputs/runs/*/*/metrics.json"))


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_ctrl_c_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    env = {"PYTHONPATH": TESTS}
    proc = run_script([*SMALL, *inject(15, "SIGINT")], tmp_path, env=env)  # after step 18: epoch 2 of 3, mid-way
    assert proc.returncode != 0
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "interrupted"
    assert torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)["global_step"] == 18
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    assert "Resume with:" in proc.stderr and metrics["resume_command"] in proc.stderr

    args = shlex.split(metrics["resume_command"])[2:]  # drop "python train.py"
    original = (run_dir / ".hydra" / "config.yaml").read_text()
    # without the printed hydra.output_subdir, and with another grouping than the checkpoint's
    careless = [a for a in args if not a.startswith("hydra.output_subdir=")]
    proc = run_script([*careless, "steps_per_execution=2"], tmp_path, env=env)  # saved mid-epoch at 4 per call
    assert proc.returncode != 0 and "resume with steps_per_execution=4" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (run_dir / ".hydra" / "config.yaml").read_text() == original  # the first run's config is kept
    failed = read_metrics(run_dir)  # the failed resume is on record, with the way back still there
    assert failed["status"] == "failed" and "steps_per_execution=4" in failed["error"]
    assert failed["resume_command"] == metrics["resume_command"]
    assert "steps_per_execution=2" in next(run_dir.glob(".hydra/resumed-*/overrides.yaml")).read_text()
    proc = run_script(args, tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = read_metrics(run_dir)
    assert resumed["status"] == "completed" and resumed["epochs"] == 3 and "resume_command" not in resumed
    assert "ckpt_path" not in (run_dir / ".hydra" / "overrides.yaml").read_text()  # the original .hydra is kept
    assert "ckpt_path" in next(run_dir.glob(".hydra/resumed-*/overrides.yaml")).read_text()

    reference_dir = tmp_path / "reference"
    proc = run_script([*SMALL, f"hydra.run.dir={reference_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = read_metrics(reference_dir)
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "global_step"):
        assert resumed[key] == reference[key], key
    a, b = final_state(run_dir), final_state(reference_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_marks_and_exits_non_zero(tmp_path):
    proc = run_script([*SMALL, *inject(12, "SIGTERM")], tmp_path, env={"PYTHONPATH": TESTS})
    assert proc.returncode == 143, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    assert read_metrics(run_dir)["status"] == "interrupted"
    state = torch.load(run_dir / "checkpoints" / "interrupted.ckpt", weights_only=True)
    assert state["global_step"] >= 12


def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path):
    proc = run_script([*SMALL, "checkpoint.every_n_train_steps=4", *inject(14, "SIGKILL")], tmp_path,
                      env={"PYTHONPATH": TESTS})
    assert proc.returncode == -9
    (run_dir,) = run_dirs(tmp_path)
    assert read_metrics(run_dir)["status"] == "running"  # what a killed run leaves: no false "completed"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert 14 - 4 <= last["global_step"] <= 14
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    proc = run_script([*SMALL, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run_dir}"],
                      tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_metrics(run_dir)["status"] == "completed"


@pytest.mark.parametrize("steps_per_execution, step", [(1, 5), (4, 8)])
def test_divergence_stops_the_run_with_epoch_and_step(tmp_path, steps_per_execution, step):
    # checked once a logging interval has passed: at step 5, or at the end of the call that passes it
    proc = run_script([*SMALL, "optimizer=sgd", "optimizer.lr=1e6", "trainer.log_every_n_steps=5",
                       f"steps_per_execution={steps_per_execution}"], tmp_path)
    assert proc.returncode == 1
    assert f"diverged at epoch 0, step {step}" in proc.stderr and "Traceback" not in proc.stderr
    metrics = read_metrics(run_dirs(tmp_path)[0])
    assert metrics["status"] == "diverged" and metrics["diverged_step"] == step


def test_unwritable_run_directory_fails_at_start_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_script([*SMALL, f"hydra.run.dir={blocker}/run"], tmp_path)
    assert proc.returncode != 0 and f"{blocker}" in proc.stderr and "Traceback" not in proc.stderr


def test_full_disk_is_reported_with_the_path(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match=f"run directory {tmp_path} is not writable .No space left on device"):
        check_writable(tmp_path)


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/experiments-test-payload-ran"


@pytest.mark.parametrize("script, key", [("eval.py", "ckpt_path"), ("train.py", "ckpt_path")])
def test_a_checkpoint_with_a_pickled_payload_is_refused_not_executed(tmp_path, script, key):
    Path(MARKER).unlink(missing_ok=True)
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {}, "hook": Payload()}, f)
    proc = run_script([f"{key}={evil}", "progress_bar=false"], tmp_path, script=script)
    assert proc.returncode != 0
    assert "refusing to load" in proc.stderr and str(evil) in proc.stderr and "Traceback" not in proc.stderr
    assert not Path(MARKER).exists()


def test_a_rerun_never_overwrites_an_earlier_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script([*SMALL, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = run_script([*SMALL, "trainer.max_epochs=1", "seed=1", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode != 0 and "refusing to overwrite" in proc.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_sweep_never_reuses_a_sweep_directory(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "keep.txt").write_text("earlier results")
    proc = run_script(["-m", "seed=0,1", *SMALL, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode != 0 and "is not empty" in proc.stderr
    assert [p.name for p in sweep.iterdir()] == ["keep.txt"]


def test_deterministic_runs_give_identical_metrics(tmp_path):
    results = []
    for name in ("a", "b"):
        proc = run_script([*SMALL, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / name}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        m = read_metrics(tmp_path / name)
        results.append({k: v for k, v in m.items() if k not in ("run_dir", "best_ckpt", "wall_seconds", "overrides")
                        and not k.startswith("history")})
    assert results[0] == results[1]


def test_atomic_checkpoint_io_leaves_no_temporary_file(tmp_path):
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(2)}, tmp_path / "c.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]
    assert torch.equal(torch.load(tmp_path / "c.ckpt", weights_only=True)["w"], torch.ones(2))
