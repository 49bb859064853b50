"""Every file read back, end to end, as an attacker or a careless colleague hands it over and a user then uses it as
the README says: a checkpoint to eval.py or to a resume, a run directory to eval.py, a sweep directory to
``finish=`` and to the report. Each case holds the rule of ``read_back.py``: nothing the file names is called (a
marker file stays absent), nothing outside its directory is touched (an outside directory survives as it was),
damage is one line naming the file and the key, exit status 2. (Units and generated damage: test_read_back.py.)"""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from test_hostile_inputs import one_line, run

from conftest import FAST, ROOT

pytestmark = pytest.mark.slow
MARKER = "payload-ran"


@pytest.fixture(scope="module")
def completed(tmp_path_factory) -> Path:
    """A completed run's directory, made in this process: best and last checkpoints, metrics.json."""
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    code, _ = run("train.py", [*FAST, "trainer.max_epochs=2"], run_dir)
    assert code == 0
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "handed-over"
    shutil.copytree(run_dir, copy)
    return copy


def edit(path: Path, change) -> None:
    checkpoint = torch.load(path, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)


def outside_dir(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    return victim


def survived(victim: Path) -> None:
    assert sorted(p.name for p in victim.iterdir()) == ["precious"] and (victim / "precious").read_text() == "keep"


# ---------------------------------------------------------------- checkpoints and run directories, to eval.py


@pytest.mark.parametrize("given", ["file", "run directory"])
def test_eval_builds_nothing_that_a_checkpoint_s_data_settings_name(given, completed, tmp_path):
    copy, marker = copy_of(completed, tmp_path), tmp_path / MARKER
    for ckpt in (copy / "checkpoints").glob("*.ckpt"):
        edit(
            ckpt,
            lambda c: c["datamodule_hyper_parameters"].update(normalize={"_target_": "os.mkdir", "path": str(marker)}),
        )
    best = json.loads((copy / "metrics.json").read_text())["best_ckpt"]
    json_path = copy / "metrics.json"
    json_path.write_text(json_path.read_text().replace(str(completed), str(copy)))
    ckpt_path = copy / "checkpoints" / Path(best).name if given == "file" else copy
    code, lines = run("eval.py", [f"ckpt_path={ckpt_path}"], tmp_path / "eval")
    one_line(code, lines, 2, "datamodule_hyper_parameters.normalize._target_ names a class to build")
    assert not marker.exists()


@pytest.mark.parametrize(
    "record, words",
    [
        ({"best_ckpt": 5}, "metrics.json: best_ckpt is 5, not a file name"),
        ({"best_ckpt": "OTHER"}, "metrics.json: best_ckpt names"),  # another run's checkpoint
        ({"best_ckpt": "{run}/checkpoints/../../victim/precious"}, "which is no file of"),
    ],
)
def test_eval_of_a_run_directory_tests_only_a_checkpoint_of_that_directory(record, words, completed, tmp_path):
    copy, victim = copy_of(completed, tmp_path), outside_dir(tmp_path)
    other = next((completed / "checkpoints").glob("best-*.ckpt"))
    (copy / "checkpoints" / other.name).unlink()  # the copy's own best is gone: only the other run's remains
    value = record["best_ckpt"]
    if isinstance(value, str):
        value = str(other) if value == "OTHER" else value.format(run=copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").write_text(json.dumps({**metrics, "best_ckpt": value}))
    code, lines = run("eval.py", [f"ckpt_path={copy}"], tmp_path / "eval")
    one_line(code, lines, 2, str(copy / "metrics.json"), words)
    survived(victim)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda c: c["hyper_parameters"]["model"].update(hidden_sizes="64"), "hyper_parameters.model.hidden_sizes="),
        (lambda c: c["hyper_parameters"]["model"].update(hidden_sizes=[1e6, 1e6]), "[1000000.0, 1000000.0] is invalid"),
        (lambda c: c["hyper_parameters"].update(num_classes=10**12), "hyper_parameters.num_classes is 1000000000000"),
        (lambda c: c["hyper_parameters"]["optimizer"].update(lr="${oc.env:HOME}"), "holds an interpolation"),
    ],
)
def test_eval_of_damaged_settings_is_one_line_and_allocates_nothing_they_size(change, words, completed, tmp_path):
    path = tmp_path / "damaged.ckpt"
    shutil.copy(completed / "checkpoints" / "last.ckpt", path)
    edit(path, change)
    code, lines = run("eval.py", [f"ckpt_path={path}"], tmp_path / "eval")
    one_line(code, lines, 2, str(path), words)


# ---------------------------------------------------------------- a stopped run's checkpoint, resumed in place


def stopped(completed: Path, tmp_path: Path, change) -> Path:
    """A copy of the run as if it had been stopped after its first epoch: interrupted.ckpt, a record saying so."""
    copy = copy_of(completed, tmp_path)
    ckpt = copy / "checkpoints" / "interrupted.ckpt"
    shutil.copy(copy / "checkpoints" / "last.ckpt", ckpt)
    edit(ckpt, change)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics.update(status="interrupted", interrupted_ckpt=str(ckpt), resume_command="python train.py ...")
    (copy / "metrics.json").write_text(json.dumps(metrics))
    return copy


def best_state(checkpoint: dict) -> dict:
    return next(v for k, v in checkpoint["callbacks"].items() if "'val/acc'" in k)


def aim_at(path: str, score: float = 1.0):
    def change(checkpoint):
        state = best_state(checkpoint)
        state.update(best_model_path=path, kth_best_model_path=path, best_k_models={path: torch.tensor(score)})
        state.update(best_model_score=torch.tensor(score))

    return change


def resume(copy: Path) -> tuple[int, list[str]]:
    """Resumed in place, as its resume command does; the lines after the note every resume in place prints
    first (where this run's Hydra config goes, beside the first run's)."""
    ckpt = copy / "checkpoints" / "interrupted.ckpt"
    code, lines = run("train.py", [*FAST, "trainer.max_epochs=3", f"ckpt_path={ckpt}"], copy)
    assert (
        lines[0]
        == f"{copy / '.hydra'} holds the first run's config; this run's goes to {copy}/.hydra/resumed-"
        + (lines[0].rpartition("resumed-")[2])
    )
    return code, lines[1:]


def test_a_resume_removes_nothing_outside_its_run(completed, tmp_path):
    victim = outside_dir(tmp_path)
    copy = stopped(completed, tmp_path, aim_at(str(tmp_path / "handed-over" / "checkpoints" / ".." / ".." / "victim")))
    code, lines = resume(copy)
    one_line(code, lines, 2, "interrupted.ckpt: callbacks[", "best_model_path names", "no checkpoint of this run's")
    survived(victim)


def test_a_resume_never_reports_another_run_s_best_checkpoint_as_its_own(completed, tmp_path):
    other = next((completed / "checkpoints").glob("best-*.ckpt"))
    copy = stopped(completed, tmp_path, aim_at(str(other), score=1.0))
    (copy / "checkpoints" / other.name).unlink()  # the copy's own best is gone: the state names the other's
    code, lines = resume(copy)
    one_line(code, lines, 2, "best_model_path names", str(other))


def test_a_resume_of_the_run_s_own_state_in_a_moved_directory_completes(completed, tmp_path):
    original = {p.name: p.read_bytes() for p in (completed / "checkpoints").iterdir()}
    copy = stopped(completed, tmp_path, lambda c: None)  # its states name the original directory
    code, lines = resume(copy)
    record = json.loads((copy / "metrics.json").read_text())
    assert code == 0 and record["status"] == "completed" and Path(record["best_ckpt"]).parent == copy / "checkpoints"
    assert {p.name: p.read_bytes() for p in (completed / "checkpoints").iterdir()} == original


def test_a_resume_of_a_damaged_history_is_one_line(completed, tmp_path):
    copy = stopped(completed, tmp_path, lambda c: c["callbacks"]["EpochHistory"].update(history={"val/acc": "high"}))
    code, lines = resume(copy)
    one_line(code, lines, 2, "interrupted.ckpt: callbacks[EpochHistory].history is not a mapping of names")


# ---------------------------------------------------------------- sweep directories, to finish= and the report


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep of two jobs whose data.root holds '/' and '..': each job still a directory of the sweep's own."""
    tmp = tmp_path_factory.mktemp("sweep")
    root = f"{ROOT}/data/../data/mnist"
    args = ["-m", *FAST, "activation=relu,tanh", f"data.root={root}", f"hydra.sweep.dir={tmp / 'sweep'}"]
    code, _ = run("train.py", args, None, cwd=tmp)
    assert code == 0
    return tmp / "sweep"


def test_job_directories_are_direct_children_of_the_sweep_whatever_the_values_hold(sweep):
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1"]
    assert all(json.loads((p / "metrics.json").read_text())["status"] == "completed" for p in jobs)
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and not (ROOT / "data" / "mnist" / "0_activation=relu").exists()


def a_copy(sweep: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    return copy


@pytest.mark.parametrize(
    "where, planted",
    [
        ("task", ["+callbacks.pwn._target_=os.mkdir", "+callbacks.pwn.path={marker}"]),
        ("hydra", ["+hydra.callbacks.pwn._target_=os.mkdir", "+hydra.callbacks.pwn.path={marker}"]),
        ("config_name", "../../../../../../../../{evil}/x"),
        ("task", ["experiment=../../../../../../../../{evil}/x"]),
    ],
)
def test_finish_runs_nothing_a_sweep_s_record_names(where, planted, sweep, tmp_path):
    copy, marker, evil = a_copy(sweep, tmp_path), tmp_path / MARKER, tmp_path / "evil"
    evil.mkdir()
    body = {"callbacks": {"pwn": {"_target_": "os.mkdir", "path": str(marker)}}}
    (evil / "x.yaml").write_text("# @package _global_\n" + yaml.safe_dump(body))
    shutil.rmtree(next(copy.glob("1_*")))  # a job to run: what finish= would launch with the planted overrides
    cfg = yaml.safe_load((copy / "multirun.yaml").read_text())
    fill = lambda s: s.format(marker=marker, evil=str(evil).lstrip("/"))
    if where == "config_name":
        cfg["hydra"]["job"]["config_name"] = fill(planted)
    else:
        cfg["hydra"]["overrides"][where] += [fill(p) for p in planted]
    (copy / "multirun.yaml").write_text(yaml.safe_dump(cfg))
    code, lines = run("train.py", [f"finish={copy}"], None, cwd=tmp_path)
    one_line(code, lines, 2, f"{copy / 'multirun.yaml'}: hydra.")
    assert not marker.exists() and not next(copy.glob("1_*"), None)


@pytest.mark.parametrize("plant", ["job directory", "link inside"])
def test_finish_moves_and_writes_nothing_through_a_planted_link(plant, sweep, tmp_path):
    copy, victim = a_copy(sweep, tmp_path), outside_dir(tmp_path)
    job = next(copy.glob("1_*"))
    record = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").write_text(json.dumps({**record, "status": "failed"}))  # a job finish= runs again
    if plant == "job directory":
        shutil.rmtree(job)
        job.symlink_to(victim)
    else:
        shutil.rmtree(job / "tensorboard")
        (job / "tensorboard").symlink_to(victim)
    code, lines = run("train.py", [f"finish={copy}"], None, cwd=tmp_path)
    one_line(code, lines, 2, "is a link")
    survived(victim)
