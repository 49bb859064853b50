"""``python train.py finish=<sweep_dir>`` (``hydra/sweeper=finish``): a sweep killed at a random job, finished in
place, ends with every job's record equal to an uninterrupted sweep's; the jobs it kept are untouched."""

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import four_jobs, read_metrics, run_script, start_script
from experiments.reports.table import job_dirs
from hydra_plugins.finish_sweeper.finish_sweeper import FinishSweeper

# What differs between two runs of one job by nature: its timings, its directory and process, how it was started.
VOLATILE = {"wall_seconds", "group_seconds", "run_dir", "overrides", "resumed_from", "best_ckpt", "pid", "host"}


def records(sweep_dir: Path) -> dict[str, dict]:
    return {d.name: read_metrics(d) for d in job_dirs(sweep_dir)}


def kill_at_random_job(tmp_path: Path, launcher: str, signal_name: str) -> tuple[Path, int]:
    """Start the sweep, wait for a random job to begin, then send the signal to the sweep's process group a
    random moment later, as Ctrl-C in a terminal (SIGINT) or the OOM killer or a reboot (SIGKILL) would."""
    sweep_dir, job = tmp_path / "sweep", random.randrange(4)
    proc = start_script(
        [*four_jobs(launcher), f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(sweep_dir.glob(f"{job}_*/metrics.json")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        time.sleep(random.uniform(0, 1.0))
        os.killpg(proc.pid, getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{launcher}: {signal_name} at job {job}; exit {proc.returncode}; {stderr[-400:]}")
    assert proc.returncode != 0, "the sweep ended before the signal: nothing was left to finish"
    return sweep_dir, job


def files_of(job_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(job_dir)): (p.read_bytes(), p.stat().st_mtime_ns) for p in job_dir.rglob("*") if p.is_file()
    }


def assert_same_records(finished: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(finished) == set(expected)
    for job, want in expected.items():
        got = finished[job]
        assert got["status"] == "completed", (job, got.get("error"))
        assert not {"resume_command", "interrupted_ckpt", "error"} & set(got), job
        assert Path(got["best_ckpt"]).name == Path(want["best_ckpt"]).name, job
        same = {k: v for k, v in want.items() if k not in VOLATILE | {"history"}}
        assert {k: got.get(k) for k in same} == same, job
        assert set(got) - VOLATILE == set(want) - VOLATILE, job
        for key in set(want["history"]) - {"epoch_seconds"}:
            assert got["history"][key] == want["history"][key], (job, key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, signal_name",
    [("basic", "SIGINT"), ("basic", "SIGKILL"), ("fused", "SIGINT"), ("fused", "SIGKILL"), ("joblib", "SIGINT")],
)
def test_a_sweep_killed_at_a_random_job_and_finished_in_place_equals_an_uninterrupted_one(
    tmp_path, four_job_sweep, launcher, signal_name
):
    sweep_dir, _ = kill_at_random_job(tmp_path, launcher, signal_name)
    before = {d.name: read_metrics(d) if (d / "metrics.json").exists() else {} for d in job_dirs(sweep_dir)}
    files_before = {name: files_of(sweep_dir / name) for name in before}
    kept = {name: files_before[name] for name, m in before.items() if m.get("status") == "completed"}
    resumed = {name for name, m in before.items() if m.get("status") == "interrupted" and m.get("resume_command")}
    again = set(before) - set(kept) - resumed

    proc = run_script([f"finish={sweep_dir}"], tmp_path, env={"PYTHONWARNINGS": "default"})  # warnings shown
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exists and is not empty" not in proc.stdout + proc.stderr  # a resumed job's own checkpoints: arranged

    assert_same_records(records(sweep_dir), records(four_job_sweep(launcher)))
    for name, files in kept.items():  # not one byte or time stamp of a kept job changed, and nothing was added
        assert files_of(sweep_dir / name) == files, name
    for name in resumed:  # resumed as a single run resumes: its first Hydra config kept, this run's beside it
        job = sweep_dir / name
        assert read_metrics(job)["resumed_from"].endswith("interrupted.ckpt")
        assert "ckpt_path" in next(job.glob(".hydra/resumed-*/overrides.yaml")).read_text()
        assert "ckpt_path" not in (job / ".hydra" / "overrides.yaml").read_text()
    for name in again:  # every file of the earlier attempt (with a record or killed before it wrote one) kept beside
        (earlier,) = (sweep_dir / name).glob("earlier-*")
        assert files_of(earlier) == files_before[name], name
    summary = (sweep_dir / "summary.csv").read_text()
    assert summary.count("completed") == 4 and "earlier-" not in summary
    assert (sweep_dir / "multirun.yaml").exists() and list(sweep_dir.glob("finish-*.yaml"))


@pytest.mark.slow
def test_finishing_a_finished_sweep_launches_nothing_and_rebuilds_its_report(tmp_path, four_job_sweep):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(four_job_sweep("basic"), sweep_dir)
    (sweep_dir / "summary.md").unlink()
    files = {d.name: files_of(d) for d in job_dirs(sweep_dir)}
    proc = run_script([f"finish={sweep_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 jobs kept: #0 (completed), #1 (completed), #2 (completed), #3 (completed)" in proc.stdout + proc.stderr
    assert "Launching" not in proc.stdout + proc.stderr
    assert {d.name: files_of(d) for d in job_dirs(sweep_dir)} == files
    assert (sweep_dir / "summary.md").exists()


@pytest.mark.slow
def test_a_sweep_run_by_other_code_is_refused_in_one_line_and_left_as_it_was(tmp_path, four_job_sweep):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(four_job_sweep("basic"), sweep_dir)
    code = json.loads((sweep_dir / "code.json").read_text())
    code["files"]["conf/optimizer/adam.yaml"] = "0" * 64
    (sweep_dir / "code.json").write_text(json.dumps(code))
    listing = sorted(p.name for p in sweep_dir.iterdir())
    proc = run_script([f"finish={sweep_dir}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"Error: {sweep_dir} was swept with other code or configs (conf/optimizer/adam.yaml changed since): "
        f"finishing it would mix two versions in one report; restore them, or run the sweep again"
    )
    assert sorted(p.name for p in sweep_dir.iterdir()) == listing

    (sweep_dir / "code.json").unlink()
    proc = run_script([f"finish={sweep_dir}"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "has no code.json" in proc.stderr


@given(
    nums=st.sets(st.integers(0, 40)).map(sorted),
    max_batch_size=st.none() | st.integers(-1, 6),
)
def test_a_launch_gets_only_consecutive_jobs_numbered_from_its_first(nums, max_batch_size):
    """A launch numbers its jobs from ``initial_job_idx`` on: a job handed over out of turn would run under
    another's number and directory. Every job to run is launched once, in order, at most max_batch_size at a time."""
    plans = [SimpleNamespace(num=n) for n in nums]
    chunks = FinishSweeper(max_batch_size=max_batch_size)._chunks(plans)
    assert [p.num for chunk in chunks for p in chunk] == nums
    limit = max_batch_size if max_batch_size and max_batch_size > 0 else len(nums)
    for chunk in chunks:
        assert [p.num for p in chunk] == list(range(chunk[0].num, chunk[0].num + len(chunk))) and len(chunk) <= limit
    # and a launch as long as it may be: a chunk ends at a gap in the numbers or at the limit
    for before, after in zip(chunks, chunks[1:]):
        assert after[0].num != before[-1].num + 1 or len(before) == limit
