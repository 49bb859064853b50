"""scripts/optimizer_paths.py: the optimizers' own YAMLs stepping a point down three surfaces, drawn and animated."""

import math

import matplotlib.image
import pytest
import torch
from PIL import Image

from conftest import ROOT, run_script, script_module

paths = script_module("scripts/optimizer_paths.py")


@pytest.mark.parametrize("lr", [0.01, 0.15])  # the y direction shrinking, then flipping sign each step
def test_gradient_descent_on_the_quadratic_follows_the_closed_form(lr):
    surface = paths.SURFACES["quadratic"]
    points = paths.path(paths.optimizer_config("gd"), surface, lr, steps=50)
    k = torch.arange(51, dtype=torch.float64).unsqueeze(1)
    factors = torch.tensor([1 - lr * c for c in paths.QUADRATIC_CURVATURES], dtype=torch.float64)
    expected = torch.tensor(surface.start, dtype=torch.float64) * factors**k  # (1 - lr λ)^k along each axis
    torch.testing.assert_close(points, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("surface", sorted(paths.SURFACES))
def test_the_lectures_momentum_and_pytorchs_draw_the_same_path_at_a_constant_rate(surface):
    pytorch, lecture = (paths.optimizer_config(name) for name in ("momentum", "momentum_lecture"))
    assert pytorch["momentum"] == lecture["momentum"]
    one, other = (paths.path(cfg, paths.SURFACES[surface], 1e-3, steps=200) for cfg in (pytorch, lecture))
    torch.testing.assert_close(one, other, rtol=0, atol=1e-6)


def test_each_optimizer_is_built_from_its_yaml_as_a_run_builds_it():
    assert paths.optimizer_config("nesterov")["nesterov"] is True
    assert paths.optimizer_config("adam")["betas"] == [0.9, 0.999]
    assert paths.optimizer_config("gd")["_target_"] == "torch.optim.SGD"  # a preset: its optimizer section


def test_the_chosen_rate_is_the_grids_cheapest_path_and_a_diverging_rate_is_never_chosen():
    surface, config = paths.SURFACES["rosenbrock"], paths.optimizer_config("gd")
    lr, points = paths.best_path(config, surface, steps=30)
    costs = {rate: paths.path_cost(paths.path(config, surface, rate, 30), surface) for rate in paths.LR_GRID}
    assert math.isinf(costs[max(paths.LR_GRID)])  # a rate of 1 on Rosenbrock's gradients diverges
    assert lr == min(costs, key=costs.get) and math.isfinite(costs[lr])
    assert torch.equal(points, paths.path(config, surface, lr, 30))


def test_the_noisy_gradient_is_seeded_and_only_sgds():
    surface, config = paths.SURFACES["beale"], paths.optimizer_config("sgd")
    noisy = [paths.path(config, surface, 1e-3, 20, noise=0.2, seed=s) for s in (0, 0, 1)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    assert not torch.equal(noisy[0], paths.path(config, surface, 1e-3, 20))
    assert set(paths.NOISY) == {"sgd"}


@pytest.mark.slow  # the whole script, pictures and animation drawn
def test_the_script_writes_a_picture_per_surface_and_an_animation(tmp_path):
    proc = run_script(
        ["--steps", "20", "--frames", "4", "--out", str(tmp_path)], tmp_path, "scripts/optimizer_paths.py"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = proc.stdout.splitlines()[:4]
    assert written == [str(tmp_path / f"optimizer_paths_{s}.png") for s in paths.SURFACES] + [
        str(tmp_path / "optimizer_paths.gif")
    ]
    rows = [line.split(" | ") for line in proc.stdout.splitlines()[6:]]  # then the table of where each path ends
    assert len(rows) == len(paths.SURFACES) * len(paths.OPTIMIZERS)
    quadratic_gd = next(r for r in rows if r[0] == "| quadratic" and r[1] == "`gd`")
    rate = float(quadratic_gd[2])
    end = paths.path(paths.optimizer_config("gd"), paths.SURFACES["quadratic"], rate, 20)[-1]
    assert float(quadratic_gd[3]) == pytest.approx(float(paths.quadratic(end)), rel=1e-2)
    assert float(quadratic_gd[4].rstrip(" |")) == pytest.approx(float(end.norm()), rel=1e-2)  # the minimum: 0, 0
    for png in written[:-1]:
        height, width = matplotlib.image.imread(png).shape[:2]
        assert 500 <= width <= 900 and 350 <= height <= 700
    assert Image.open(written[-1]).n_frames == 4


@pytest.mark.parametrize("args", [["--steps", "0"], ["--frames", "1"]])
def test_a_run_of_no_steps_or_one_frame_is_refused_by_its_option(args, tmp_path):
    proc = run_script(args, tmp_path, "scripts/optimizer_paths.py")
    assert proc.returncode == 2 and "--steps must be at least 1 and --frames at least 2" in proc.stderr


def test_the_committed_pictures_are_the_ones_the_readme_shows():
    readme = (ROOT / "README.md").read_text()
    for name in ("optimizer_paths_rosenbrock.png", "optimizer_paths.gif"):
        assert f"docs/{name}" in readme and (ROOT / "docs" / name).stat().st_size < 1_500_000
