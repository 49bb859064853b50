"""The paths the course's optimizers take on three classic surfaces, as the slides animate them.

Each optimizer is built from its own YAML (``conf/optimizer/<name>.yaml``, composed by Hydra as a run composes
it) and steps one point ``(x, y)`` down an ill-conditioned quadratic, Rosenbrock's valley and Beale's function.
Only the learning rate is the surface's: each optimizer takes, from a grid, the rate whose path gets down
fastest and stays down (``path_cost``): a rate that suits a quadratic's gradients of size 1 sends a step on
Rosenbrock's, of size 1000, off the map. ``sgd`` gets Gaussian noise on every gradient, as a mini-batch's
gradient is a noisy full-batch one.

    python scripts/optimizer_paths.py                   # docs/optimizer_paths_<surface>.png and .gif
    python scripts/optimizer_paths.py --steps 100 --out /tmp/paths
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.colors import LogNorm
from omegaconf import OmegaConf

from experiments.names import CONF_DIR
from experiments.nn.optimizers import build_optimizer

OPTIMIZERS = ("gd", "sgd", "momentum", "momentum_lecture", "nesterov", "rmsprop", "adam")
NOISY = {"sgd": 0.2}  # the gradient noise's standard deviation, relative to the gradient's size at the start
LR_GRID = tuple(10.0 ** (e / 2) for e in range(-10, 1))  # 1e-5 ... 1, half a decade apart


@dataclass(frozen=True)
class Surface:
    """A loss of two parameters, where a path starts, its minimum, and the window drawn around them."""

    loss: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    window: tuple[float, float, float, float]  # x from, x to, y from, y to


# Eigenvalues 1 and 10 along x and y: gradient descent crawls along x while it zig-zags across y.
QUADRATIC_CURVATURES = (1.0, 10.0)


def quadratic(p: torch.Tensor) -> torch.Tensor:
    return 0.5 * (QUADRATIC_CURVATURES[0] * p[..., 0] ** 2 + QUADRATIC_CURVATURES[1] * p[..., 1] ** 2)


def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    x, y = p[..., 0], p[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(p: torch.Tensor) -> torch.Tensor:
    x, y = p[..., 0], p[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


SURFACES = {
    "quadratic": Surface(quadratic, (-4.0, 1.5), (0.0, 0.0), (-4.5, 2.5, -2.0, 2.0)),
    "rosenbrock": Surface(rosenbrock, (-1.5, 2.0), (1.0, 1.0), (-2.0, 1.5, -0.5, 3.0)),
    "beale": Surface(beale, (1.0, 1.4), (3.0, 0.5), (-0.5, 4.0, -1.0, 2.0)),
}


def optimizer_config(name: str) -> dict:
    """``optimizer=<name>``'s settings as a run composes them (a preset such as ``gd`` sets more than the group)."""
    from hydra import compose, initialize_config_dir

    from experiments.run.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"optimizer={name}"])
    return OmegaConf.to_container(cfg.optimizer, resolve=True)


def path(config: dict, surface: Surface, lr: float, steps: int, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """The ``steps + 1`` points ``[x, y]`` an optimizer built from ``config`` (at rate ``lr``) visits."""
    point = torch.tensor(surface.start, dtype=torch.float64, requires_grad=True)
    optimizer = build_optimizer({**config, "lr": lr}, [point])
    generator = torch.Generator().manual_seed(seed)
    scale = None
    visited = [point.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()
        surface.loss(point).backward()
        if noise:
            if scale is None:  # noise sized once, by the gradient where the path starts
                scale = noise * float(point.grad.norm())
            point.grad += scale * torch.randn(2, generator=generator, dtype=torch.float64)
        optimizer.step()
        visited.append(point.detach().clone())
    return torch.stack(visited)


def path_cost(points: torch.Tensor, surface: Surface) -> float:
    """The loss averaged over the path's points (the area under its loss curve): low for a path that gets down
    fast and stays down, high for one that crawls or overshoots; infinite for one that diverged."""
    losses = surface.loss(points)
    return float(losses.mean()) if torch.isfinite(losses).all() else math.inf


def best_path(config: dict, surface: Surface, steps: int, noise: float = 0.0) -> tuple[float, torch.Tensor]:
    """The grid's rate of the cheapest path (``path_cost``), and that path (the smaller rate on a tie)."""
    tried = [(lr, path(config, surface, lr, steps, noise)) for lr in LR_GRID]
    return min(tried, key=lambda t: (path_cost(t[1], surface), t[0]))


def paths(steps: int) -> dict[str, dict[str, tuple[float, torch.Tensor]]]:
    """For each surface, each optimizer's chosen rate and path."""
    configs = {name: optimizer_config(name) for name in OPTIMIZERS}
    return {
        s: {name: best_path(cfg, surface, steps, NOISY.get(name, 0.0)) for name, cfg in configs.items()}
        for s, surface in SURFACES.items()
    }


def _contours(ax: plt.Axes, surface: Surface) -> None:
    x0, x1, y0, y1 = surface.window
    xs, ys = torch.meshgrid(
        torch.linspace(x0, x1, 300, dtype=torch.float64),
        torch.linspace(y0, y1, 300, dtype=torch.float64),
        indexing="xy",
    )
    z = surface.loss(torch.stack([xs, ys], dim=-1)).clamp_min(1e-6)
    levels = torch.logspace(math.log10(float(z.min())), math.log10(float(z.max())), 25).tolist()
    ax.contour(xs, ys, z, levels=levels, norm=LogNorm(), cmap="Greys", linewidths=0.6)
    ax.plot(*surface.minimum, marker="*", markersize=14, color="gold", markeredgecolor="black", zorder=5)
    ax.plot(*surface.start, marker="o", markersize=6, color="black", zorder=5)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


COLORS = dict(zip(OPTIMIZERS, plt.get_cmap("tab10").colors))
# the lecture's momentum dashed over PyTorch's: at a constant rate the two take the same steps, and both show
DASHED = {"momentum_lecture"}


def _style(name: str) -> str:
    return "--" if name in DASHED else "-"


def _label(name: str, lr: float) -> str:
    return f"{name}{' (noisy gradient)' if name in NOISY else ''}, lr={lr:.0e}"


def draw(found: dict[str, dict[str, tuple[float, torch.Tensor]]], out: Path, frames: int = 30) -> list[Path]:
    """A PNG per surface (every path whole) and an animated GIF of the three side by side."""
    out.mkdir(parents=True, exist_ok=True)
    steps = len(next(iter(next(iter(found.values())).values()))[1]) - 1  # every path has the same length
    written = []
    for s, by_optimizer in found.items():
        fig, ax = plt.subplots(figsize=(7, 5.2))
        _contours(ax, SURFACES[s])
        for name, (lr, points) in by_optimizer.items():
            ax.plot(*points.T, color=COLORS[name], linestyle=_style(name), linewidth=1.4, label=_label(name, lr))
        ax.set_title(f"{s}: {steps} steps from the black dot; the star is the minimum")
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        written.append(out / f"optimizer_paths_{s}.png")
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)

    fig, axes = plt.subplots(1, len(found), figsize=(5 * len(found), 4.6))
    lines = {}
    for ax, (s, by_optimizer) in zip(axes, found.items()):
        _contours(ax, SURFACES[s])
        ax.set_title(s)
        for name, (lr, _) in by_optimizer.items():
            (lines[s, name],) = ax.plot([], [], color=COLORS[name], linestyle=_style(name), label=_label(name, lr))
    axes[0].legend(fontsize=6, loc="lower right")
    shown = sorted({round(steps * (i / max(frames - 1, 1)) ** 1.5) for i in range(frames)})  # early steps slower

    def frame(k: int) -> list:
        for (s, name), line in lines.items():
            points = found[s][name][1][: k + 1]
            line.set_data(points[:, 0], points[:, 1])
        fig.suptitle(f"step {k} of {steps}")
        return list(lines.values())

    fig.tight_layout(rect=(0, 0, 1, 0.94))  # room for the step counter above the panels' titles
    written.append(out / "optimizer_paths.gif")
    FuncAnimation(fig, frame, frames=shown, blit=False).save(written[-1], writer=PillowWriter(fps=6), dpi=72)
    plt.close(fig)
    return written


def table(found: dict[str, dict[str, tuple[float, torch.Tensor]]]) -> str:
    """Each path's chosen rate, where it ends (its loss, its distance from the minimum): docs/results.md's table."""
    rows = ["| surface | optimizer | rate | loss at the end | distance to the minimum |", "|---|---|---|---|---|"]
    for s, by_optimizer in found.items():
        surface = SURFACES[s]
        for name, (lr, points) in by_optimizer.items():
            end = points[-1]
            distance = float((end - torch.tensor(surface.minimum, dtype=end.dtype)).norm())
            rows.append(f"| {s} | `{name}` | {lr:.3g} | {float(surface.loss(end)):.3g} | {distance:.3g} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per path (default 300)")
    parser.add_argument("--frames", type=int, default=30, help="frames of the animation (default 30)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.frames < 2:
        parser.error("--steps must be at least 1 and --frames at least 2")
    found = paths(args.steps)
    for file in draw(found, args.out, args.frames):
        print(file)
    print(table(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
