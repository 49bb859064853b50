"""Files of a sweep directory: what finishing a sweep does with each job's directory, the record of the code a
sweep ran with, and the refusal of a directory that is no sweep of this project (end to end:
test_finish_sweeper.py)."""

import json
import re
from pathlib import Path

import pytest
import yaml

from experiments.errors import RunDirectoryError
from experiments.sweep_dir import (
    CODE_FILE,
    Action,
    code_changes,
    code_digests,
    move_aside,
    own_job_dir,
    plan_job,
    read_sweep,
    summary,
    write_code,
)


def job(tmp_path: Path, record: dict | None, files: tuple[str, ...] = ()) -> Path:
    job_dir = tmp_path / "3_activation=tanh"
    job_dir.mkdir()
    if record is not None:
        (job_dir / "metrics.json").write_text(json.dumps(record))
    for name in files:
        (job_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (job_dir / name).write_text(name)
    return job_dir


INTERRUPTED = {
    "status": "interrupted",
    "resume_command": "python train.py ...",
    "interrupted_ckpt": "/elsewhere/3_activation=tanh/checkpoints/interrupted.ckpt",
    "global_step": 17,
}


@pytest.mark.parametrize("status", ["completed", "diverged"])
def test_a_job_that_ended_is_kept(tmp_path, status):
    plan = plan_job(3, job(tmp_path, {"status": status}))
    assert (plan.action, plan.why) == (Action.KEEP, status)


def test_an_interrupted_job_resumes_from_its_own_checkpoint_even_where_the_sweep_moved(tmp_path):
    job_dir = job(tmp_path, INTERRUPTED, ("checkpoints/interrupted.ckpt",))
    plan = plan_job(3, job_dir)
    assert plan.action == Action.RESUME and plan.ckpt == job_dir / "checkpoints" / "interrupted.ckpt"
    assert plan.why == "interrupted at step 17"


@pytest.mark.parametrize(
    "record, files, why",
    [
        ({"status": "failed"}, (), "failed"),
        ({"status": "running"}, (), "left running by a process that was killed"),
        ({"status": "trained"}, (), "trained"),
        (INTERRUPTED, (), "interrupted: no checkpoint to resume from"),  # its checkpoint is gone
        ({**INTERRUPTED, "resume_command": None}, ("checkpoints/interrupted.ckpt",), "interrupted: no checkpoint"),
        (None, (".hydra/config.yaml", "train.log"), "no record (stopped before it began)"),
    ],
)
def test_any_other_job_runs_again(tmp_path, record, files, why):
    plan = plan_job(3, job(tmp_path, record, files))
    assert plan.action == Action.RERUN and plan.why.startswith(why)


def test_a_job_without_a_directory_or_with_an_empty_one_runs(tmp_path):
    assert plan_job(0, tmp_path / "0_x").action == Action.RUN
    (tmp_path / "1_x").mkdir()
    assert plan_job(1, tmp_path / "1_x").action == Action.RUN


def test_a_job_run_again_keeps_its_earlier_files_beside_the_new_ones(tmp_path):
    job_dir = job(tmp_path, {"status": "failed"}, (".hydra/config.yaml", "train.log", "checkpoints/last.ckpt"))
    (job_dir / "earlier-1").mkdir()  # a first finish's: stays where it is
    plan = plan_job(3, job_dir)
    move_aside(plan, "2")
    assert sorted(p.name for p in job_dir.iterdir()) == ["earlier-1", "earlier-2"]
    kept = sorted(str(p.relative_to(plan.moved_to)) for p in plan.moved_to.rglob("*") if p.is_file())
    assert kept == [".hydra/config.yaml", "checkpoints/last.ckpt", "metrics.json", "train.log"]


def test_the_summary_names_every_job_under_its_action(tmp_path):
    plans = [plan_job(0, job(tmp_path, {"status": "completed"})), plan_job(1, tmp_path / "1_x")]
    assert summary(plans) == ["1 job kept: #0 (completed)", "1 job run: #1 (never ran)"]


def test_the_code_record_names_what_changed_since_the_sweep_began(tmp_path):
    write_code(tmp_path)
    recorded = json.loads((tmp_path / CODE_FILE).read_text())["files"]
    assert recorded == code_digests() and code_changes(tmp_path) == []
    names = set(recorded)
    assert {"src/experiments/run/recipe.py", "conf/config.yaml", "conf/activation/relu.yaml"} <= names
    assert "src/hydra_plugins/fused_launcher/fused_launcher.py" in names
    recorded["conf/activation/relu.yaml"] = "0" * 64  # edited since
    del recorded["src/experiments/run/recipe.py"]  # added since
    recorded["conf/activation/old.yaml"] = "1" * 64  # removed since
    (tmp_path / CODE_FILE).write_text(json.dumps({"files": recorded}))
    assert code_changes(tmp_path) == [
        "conf/activation/old.yaml",
        "conf/activation/relu.yaml",
        "src/experiments/run/recipe.py",
    ]


def test_a_sweep_without_a_code_record_is_refused(tmp_path):
    with pytest.raises(RunDirectoryError, match="has no code.json"):
        code_changes(tmp_path)


def multirun_yaml(tmp_path: Path, hydra: dict) -> Path:
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"seed": 1, "hydra": hydra}))
    return tmp_path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda t: t / "missing", "no such directory"),
        (lambda t: t, "no multirun.yaml there, so it is no sweep"),
        (
            lambda t: multirun_yaml(t, {"job": {"name": "my_app"}, "callbacks": {"output_guard": {}}}),
            "not from a sweep",
        ),
        (lambda t: multirun_yaml(t, {"job": {"name": "train"}, "callbacks": {}}), "not from a sweep"),
        (lambda t: (t / "multirun.yaml").write_text("a: [") and t, "cannot be read"),
    ],
)
def test_a_directory_that_is_no_sweep_of_this_project_is_one_line(tmp_path, make, words):
    with pytest.raises(RunDirectoryError, match=words) as caught:
        read_sweep(make(tmp_path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("named", [5, None, ["x"], "/elsewhere/checkpoints/..", "../../outside/interrupted.ckpt"])
def test_an_interrupted_job_whose_record_names_no_checkpoint_of_its_own_runs_again(tmp_path, named):
    """metrics.json is read back: ``interrupted_ckpt: 5`` or a path out of the job is no way back."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "interrupted.ckpt").write_text("another run's")
    job_dir = job(tmp_path, {**INTERRUPTED, "interrupted_ckpt": named}, ("checkpoints/last.ckpt",))
    plan = plan_job(3, job_dir)
    assert plan.action == Action.RERUN and plan.ckpt is None


def test_finishing_touches_only_the_sweep_s_own_job_directories(tmp_path):
    sweep, outside = tmp_path / "sweep", tmp_path / "outside"
    (sweep / "0_a").mkdir(parents=True)
    outside.mkdir()
    (outside / "precious").write_text("keep")
    own_job_dir(sweep, sweep / "0_a")
    own_job_dir(sweep, sweep / "1_never_ran")
    (sweep / "2_link").symlink_to(outside)
    (sweep / "3_a").mkdir()
    (sweep / "3_a" / "tensorboard").symlink_to(outside)
    (sweep / "4_a" / "checkpoints").mkdir(parents=True)
    (sweep / "4_a" / "checkpoints" / "last.ckpt").symlink_to(outside / "precious")
    for job_dir, words in [
        (sweep / "2_link", "is a link"),
        (sweep / "3_a", "3_a/tensorboard is a link"),
        (sweep / "4_a", "4_a/checkpoints/last.ckpt is a link"),
        (sweep / "x" / "5_nested", "not a directory of the sweep itself"),
        (sweep / ".." / "outside", "not a directory of the sweep itself"),
    ]:
        with pytest.raises(RunDirectoryError, match=re.escape(words)) as caught:
            own_job_dir(sweep, job_dir)
        assert "\n" not in str(caught.value)
    own_job_dir(sweep, sweep / "3_a", touched=False)  # a job finishing keeps as it is: its links are not followed
    with pytest.raises(RunDirectoryError, match="is a link"):
        own_job_dir(sweep, sweep / "2_link", touched=False)  # its record would be another directory's
    assert [p.name for p in outside.iterdir()] == ["precious"] and (outside / "precious").read_text() == "keep"
