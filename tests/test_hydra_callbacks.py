"""The output guard: no run, resume, eval or sweep ever writes into a directory that holds earlier results;
the sweep settings' check: a launcher or sweeper setting that would fail mid-sweep is refused first."""

import os
import pickle
from pathlib import Path

import pytest

from conftest import FAST, read_metrics, run_script

pytestmark = pytest.mark.slow


def snapshot(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    proc = run_script([*FAST, f"hydra.run.dir={tmp / 'run'}"], tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "run"


def refused(proc, words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], (
        proc.stderr
    )


def test_a_rerun_never_overwrites_an_earlier_run(tmp_path, finished_run):
    before = snapshot(finished_run)
    proc = run_script([*FAST, "seed=1", f"hydra.run.dir={finished_run}"], tmp_path)
    refused(proc, "already holds a run")
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("status", ["completed", "interrupted", "failed"])
def test_the_refusal_s_advice_followed_works(tmp_path, finished_run, status):
    """A run directory that holds a run: the advice says what can be done with that run, and typed as it says,
    it runs (a second refusal would send a student round in circles)."""
    import json
    import shlex
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    record = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").write_text(json.dumps({**record, "status": status}))
    if status == "interrupted":
        shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "interrupted.ckpt")
    proc = run_script([*FAST, f"hydra.run.dir={run_dir}"], tmp_path)
    refused(proc, "already holds a run")
    line = proc.stderr.strip()
    advice = {
        "completed": f" (to train on from this run there, add ckpt_path={run_dir}/checkpoints/last.ckpt)",
        "interrupted": f", or resume it there: add ckpt_path={run_dir}/checkpoints/interrupted.ckpt",
        "failed": "",
    }[status]
    assert line.endswith(f"drop the override for a fresh directory{advice}"), line
    if not advice:
        return
    (added,) = shlex.split(line.rpartition("add ")[2].rstrip(")"))
    kept = [] if status == "completed" else [f"hydra.run.dir={run_dir}"]  # completed: the override dropped
    proc = run_script([*FAST, "trainer.max_epochs=2", *kept, added], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize("record", ["metrics.json", "eval.json", ".hydra/config.yaml"])
def test_a_directory_holding_only_one_record_is_not_a_fresh_run_directory(tmp_path, record, script):
    run_dir = tmp_path / "run"
    (run_dir / record).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / record).write_text('{"status": "completed"}')
    args = [*FAST] if script == "train.py" else [f"ckpt_path={tmp_path / 'none.ckpt'}"]
    before = snapshot(run_dir)
    proc = run_script([*args, f"hydra.run.dir={run_dir}"], tmp_path, script=script)
    refused(proc, f"already holds a run ({record})")
    assert snapshot(run_dir) == before


def test_a_directory_holding_only_a_checkpoint_is_not_a_fresh_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"a stranger's checkpoint")
    proc = run_script([*FAST, f"hydra.run.dir={run_dir}"], tmp_path)
    refused(proc, "checkpoints/last.ckpt")
    assert sorted(p.name for p in run_dir.rglob("*")) == ["checkpoints", "last.ckpt"]


def test_resuming_a_completed_run_in_place_is_refused(tmp_path, finished_run):
    before = snapshot(finished_run)
    proc = run_script(
        [*FAST, f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={finished_run}"], tmp_path
    )
    refused(proc, "holds a completed run")
    assert snapshot(finished_run) == before


def test_eval_never_writes_into_a_training_run(tmp_path, finished_run):
    before = snapshot(finished_run)
    proc = run_script(
        [f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={finished_run}"],
        tmp_path,
        script="eval.py",
    )
    refused(proc, "already holds a run")
    assert snapshot(finished_run) == before


def test_a_sweep_never_reuses_a_sweep_directory(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "keep.txt").write_text("earlier results")
    proc = run_script(["-m", "seed=0,1", *FAST, f"hydra.sweep.dir={sweep}"], tmp_path)
    refused(proc, "is not empty")
    assert [p.name for p in sweep.iterdir()] == ["keep.txt"]


def test_an_unwritable_run_directory_fails_at_start_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_script([*FAST, f"hydra.run.dir={blocker}/run"], tmp_path)
    refused(proc, f"{blocker}/run")


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/experiments-test-payload-ran"


@pytest.mark.parametrize("script", ["eval.py", "train.py"])
def test_a_checkpoint_with_a_pickled_payload_is_refused_not_executed(tmp_path, script):
    Path(MARKER).unlink(missing_ok=True)
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {}, "hook": Payload()}, f)
    proc = (
        run_script([f"ckpt_path={evil}", *FAST], tmp_path, script=script)
        if script == "train.py"
        else run_script([f"ckpt_path={evil}"], tmp_path, script=script)
    )
    refused(proc, f"{evil}: refusing to load")
    assert not Path(MARKER).exists()
    if script == "train.py":
        (record,) = tmp_path.glob("outputs/runs/*/*/metrics.json")
        assert read_metrics(record.parent)["status"] == "failed"


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_log_file_linked_outside_the_run_directory_is_never_written(tmp_path, finished_run, script):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / f"{script.removesuffix('.py')}.log").symlink_to(outside)
    args = [*FAST] if script == "train.py" else [f"ckpt_path={finished_run / 'checkpoints' / 'last.ckpt'}"]
    proc = run_script([*args, f"hydra.run.dir={run_dir}"], tmp_path, script=script)
    refused(proc, "holds symbolic links")
    assert outside.read_text() == "keep" and sorted(p.name for p in run_dir.iterdir()) == [f"{script[:-3]}.log"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0 is invalid"),
        (["hparams_search=lr_width", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 is invalid"),
    ],
)
def test_a_sweep_setting_that_would_fail_mid_sweep_is_refused_before_any_directory(tmp_path, args, words):
    # joblib's own error for n_jobs=0, and Optuna's for no trials, are tracebacks after the sweep started
    proc = run_script(["-m", "seed=0,1", *FAST, *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    refused(proc, words)
    assert not (tmp_path / "sweep").exists()


def test_an_unwritable_sweep_directory_fails_at_start_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = run_script(["-m", "seed=0,1", *FAST, f"hydra.sweep.dir={blocker}/sweep"], tmp_path)
    refused(proc, f"hydra.sweep.dir={blocker}/sweep: not writable")
    assert blocker.read_text() == "not a directory"
