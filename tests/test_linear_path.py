"""scripts/linear_path.py: the loss along the line from a run's own initial weights to its final ones."""

import json
import shutil

import pytest
import torch

from conftest import FAST, run_script, script_module

line = script_module("scripts/linear_path.py")
pytestmark = pytest.mark.slow  # each test reads a run of train.py


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """A run whose steps move no weight by more than 1e-25 (SGD at a rate of 1e-30): its last weights are its
    initial ones, as the run built them."""
    run_dir = tmp_path_factory.mktemp("still") / "run"
    proc = run_script(
        [*FAST, "optimizer=sgd", "optimizer.lr=1e-30", "trainer.limit_train_batches=3", f"hydra.run.dir={run_dir}"],
        run_dir.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    proc = run_script([*FAST, "seed=3", f"hydra.run.dir={run_dir}"], run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_the_initial_weights_are_rebuilt_exactly_as_the_run_built_them(still):
    initial, final, _ = line.initial_and_final(still)
    start, end = initial.state_dict(), final.state_dict()
    assert start.keys() == end.keys()
    for name, value in end.items():
        torch.testing.assert_close(start[name], value, rtol=0, atol=1e-25, msg=name)


def test_the_line_s_ends_are_the_losses_of_the_initial_and_the_final_weights(trained):
    initial, final, data = line.initial_and_final(trained)
    x, y = data.images("val"), data.tensors["val_y"]
    losses = line.loss_along(initial, final, x, y)
    with torch.no_grad():
        at_start, at_end = (float(m.loss_fn(m(x), y)) for m in (initial, final))
    assert losses[line.ALPHAS.index(0.0)] == pytest.approx(at_start, abs=1e-6)
    assert losses[line.ALPHAS.index(1.0)] == pytest.approx(at_end, abs=1e-6)
    assert at_end < at_start  # the run learnt: the two ends differ


def test_the_script_draws_each_run_and_writes_its_numbers_and_never_over_a_file(trained, tmp_path):
    out = tmp_path / "pictures" / "line.png"
    args = [str(trained), str(trained), "--out", str(out), "--train-images", "500"]
    proc = run_script(args, tmp_path, "scripts/linear_path.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(out), str(out.with_suffix(".json"))] and out.stat().st_size > 10_000
    numbers = json.loads(out.with_suffix(".json").read_text())[str(trained)]
    assert numbers["alpha"] == line.ALPHAS and len(numbers["train_loss"]) == len(numbers["val_loss"]) == 41
    assert numbers["optimizer"] == "Adam lr=0.003"
    start_to_end = numbers["train_loss"][line.ALPHAS.index(0.0) : line.ALPHAS.index(1.0) + 1]
    assert numbers["monotone"] == (start_to_end == sorted(start_to_end, reverse=True))
    again = run_script(args, tmp_path, "scripts/linear_path.py")
    assert again.returncode == 2 and f"{out} exists: name another --out" in again.stderr


@pytest.mark.parametrize(
    "damage, said",
    [
        (lambda run: (run / ".hydra" / "config.yaml").write_text("seed: x\n"), "/.hydra/config.yaml: seed is 'x'"),
        (lambda run: (run / ".hydra" / "config.yaml").write_text("seed: true\n"), "seed is True"),
        (lambda run: (run / ".hydra" / "config.yaml").write_text("seed: -1\n"), "seed is -1, not a seed"),
        (lambda run: (run / ".hydra" / "config.yaml").write_text("seed: [\n"), "the file cannot be read as YAML"),
        (lambda run: (run / "checkpoints" / "last.ckpt").unlink(), "has no checkpoints/last.ckpt: name a run"),
        (lambda run: shutil.rmtree(run / ".hydra"), "has no .hydra/config.yaml: name the directory of a run"),
    ],
    ids=["seed not a number", "seed a boolean", "seed out of bounds", "not YAML", "no last checkpoint", "no config"],
)
def test_a_run_directory_that_cannot_say_its_start_or_end_is_one_line(damage, said, trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run)
    proc = run_script([str(run), "--out", str(tmp_path / "line.png")], tmp_path, "scripts/linear_path.py")
    assert proc.returncode == 2 and proc.stderr.startswith("Error: ") and said in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "line.png").exists()
