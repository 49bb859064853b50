"""A researcher's own parts, from outside the package, end to end from a directory outside the repository: their
config directory passed as Hydra's search path, their module on PYTHONPATH. Runs, fused sweeps, eval.py and
finish= take the classes it names; a checkpoint naming one still needs that search path to be loaded."""

import json
import shutil
from pathlib import Path

import pytest

from conftest import FAST, ROOT, read_metrics, run_script

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "own_activation"  # the README's worked example, run from a copy outside the repo


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> tuple[Path, Path, str]:
    """The user's directory (a copy of the example, outside the repository), their module's directory, and the
    search path override."""
    home = tmp_path_factory.mktemp("researcher") / "own_activation"
    shutil.copytree(EXAMPLE, home)
    return home, home, f"hydra.searchpath=[file://{home / 'conf'}]"


def run(args: list[str], user, tmp_path: Path, script: str = "train.py"):
    """The script as the user runs it: their module importable, from their own directory."""
    return run_script(args, tmp_path, script=script, extra_paths=[user[1]])


def sweep_of(tmp_path: Path) -> Path:
    (sweep,) = tmp_path.glob("outputs/multirun/*/*")
    return sweep


def records(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: read_metrics(p.parent) for p in sorted(sweep.glob("*/metrics.json"))}


def test_a_torch_activation_by_yaml_alone_and_an_optimizer_of_the_user_s(user, tmp_path):
    proc = run([user[2], "activation=hardswish", "optimizer=adamax", *FAST], user, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = (read_metrics(p.parent) for p in tmp_path.glob("outputs/runs/*/*/metrics.json"))
    assert record["status"] == "completed" and record["choices"]["activation"] == "hardswish"
    assert record["choices"]["optimizer"] == "adamax"


@pytest.fixture(scope="module")
def separate(user, tmp_path_factory) -> Path:
    """The two settings of the user's activation, each its own run (the basic launcher)."""
    tmp = tmp_path_factory.mktemp("separate")
    proc = run(["-m", user[2], "activation=scaled_relu", "activation.scale=0.5,3.0", *FAST], user, tmp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sweep_of(tmp)


def test_two_settings_of_a_user_activation_fused_equal_their_separate_runs(user, separate, tmp_path):
    """Its repr is the same for both: the fused model must not let them share one activation call."""
    args = ["-m", user[2], "hydra/launcher=fused", "activation=scaled_relu", "activation.scale=0.5,3.0", *FAST]
    proc = run(args, user, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fused, alone = records(sweep_of(tmp_path)), records(separate)
    assert list(fused) == list(alone) and all("fused_group" in r for r in fused.values())
    assert fused[list(fused)[0]]["test/acc"] != fused[list(fused)[1]]["test/acc"]  # two settings, two networks
    for job in fused:
        for key in ("test/acc", "val/acc"):
            assert abs(fused[job][key] - alone[job][key]) <= 0.002, (job, key, fused[job][key], alone[job][key])


def test_a_user_activation_drawing_random_numbers_runs_alone_saying_why(user, tmp_path):
    proc = run(["-m", user[2], "hydra/launcher=fused", "activation=jittered_relu", "seed=0,1", *FAST], user, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "activation my_parts.JitteredReLU draws random numbers (two calls on one input differ)" in (
        proc.stdout + proc.stderr
    )
    assert all("fused_group" not in r for r in records(sweep_of(tmp_path)).values())


def test_eval_of_a_user_class_s_checkpoint_needs_the_search_path_and_names_it(user, separate, tmp_path):
    job = sorted(separate.glob("0_*"))[0]
    proc = run([user[2], f"ckpt_path='{job}'", "progress_bar=false"], user, tmp_path, "eval.py")
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1].startswith("test/acc="), proc.stderr[-2000:]
    proc = run([f"ckpt_path='{job}'", "progress_bar=false", "hydra.run.dir=again"], user, tmp_path, "eval.py")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "activation._target_='my_parts.ScaledReLU' is not a class that conf/activation/ names" in lines[0]
    assert lines[0].endswith(f"its run was made with '{user[2]}'")


def test_finish_takes_the_search_path_again_from_the_user(user, separate, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(separate, sweep)
    shutil.rmtree(sorted(sweep.glob("1_*"))[0])
    proc = run([f"finish={sweep}"], user, tmp_path)
    assert proc.returncode == 2 and "give them again" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run([f"finish={sweep}", user[2]], user, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    finished = records(sweep)
    assert [r["status"] for r in finished.values()] == ["completed", "completed"]
    assert json.loads((sweep / "code.json").read_text())  # the sweep's own record, untouched


def test_an_idx_set_of_another_shape_trains_fused_evaluates_and_reports(tmp_path):
    """A user's own IDX files (5x7 pictures, 3 classes; not MNIST's 28x28 and 10): the network, the config checks,
    the normalisation and the report take the set's own sizes; eval.py of its checkpoint on MNIST says which
    data.root it needs."""
    from conftest import write_idx_set

    root = write_idx_set(tmp_path / "own_set", image=(5, 7), classes=3, train=600, test=90)
    data = [f"data.root={root}", "data.val_size=100", "data.batch_size=50", "data.eval_batch_size=100"]
    single = run_script([*data, *FAST, "trainer.max_epochs=2", "hydra.run.dir=run"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    record = read_metrics(tmp_path / "run")
    assert record["status"] == "completed" and record["test/acc"] > 0.9  # three brightness bands: easy to learn
    data_read = {"root": str(root), "image": [5, 7], "classes": 3, "train_images": 600, "test_images": 90}
    assert record["data"].items() >= data_read.items() and record["data"]["pixel_stats"] == "measured"
    assert 0.2 < record["data"]["pixel_mean"] < 0.8 and record["data"]["pixel_mean"] != 0.1307
    weights = __import__("torch").load(record["best_ckpt"], weights_only=True)["state_dict"]
    assert weights["net.hidden.0.linear.weight"].shape[1] == 35 and weights["net.output.weight"].shape[0] == 3

    sweep = run_script(["-m", *data, *FAST, "hydra/launcher=fused", "seed=0,1", "hydra.sweep.dir=sweep"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    jobs = [read_metrics(p.parent) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    assert len(jobs) == 2 and all(j["status"] == "completed" and j.get("fused_group") for j in jobs)
    assert all(j["data"] == record["data"] for j in jobs)  # the fused members record the set as a run does
    assert "seed" in (tmp_path / "sweep" / "summary.md").read_text()

    evaluated = run_script(["ckpt_path=run", *data[:2], "hydra.run.dir=eval"], tmp_path, "eval.py")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["test/acc"] == pytest.approx(record["test/acc"])
    on_mnist = run_script(["ckpt_path=run", "hydra.run.dir=eval_mnist"], tmp_path, "eval.py")
    assert on_mnist.returncode != 0 and not (tmp_path / "eval_mnist" / "eval.json").exists()
    assert "trained on 35 inputs and 3 classes" in on_mnist.stderr and "data.root=<its directory>" in on_mnist.stderr
