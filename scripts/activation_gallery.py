"""Every activation of the catalogue (``conf/activation/*.yaml``) with its derivative, in one PNG grid.

Each function is built from its YAML exactly as a run builds it (``activation_factory``), evaluated on
[-4, 4], and differentiated by autograd, as the course's slides draw them: f solid, f' dashed, the zero
lines drawn. Leaky ReLU's and ALReLU's negative side (slope 0.01 and -0.01) get a zoomed inset, where
the difference between leaking down and reflecting up shows. RReLU is drawn in eval mode (its mean slope).

    python scripts/activation_gallery.py                       # writes docs/activations.png
    python scripts/activation_gallery.py --out /tmp/gallery.png --dpi 120
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import yaml

from experiments.names import CONF_DIR
from experiments.nn.activations import activation_factory

ZOOMED = {"leaky_relu", "alrelu"}  # negative slopes too small to see at full scale


def curves(cfg: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) by autograd, for the activation a config builds (one unit wide)."""
    module = activation_factory(cfg)(1).eval()
    x = x.clone().requires_grad_(True)
    y = module(x.unsqueeze(1)).squeeze(1)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy.detach()


def draw(out: Path, dpi: int = 90) -> list[str]:
    """Write the grid to ``out``; returns the activations drawn, in order."""
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((CONF_DIR / "activation").glob("*.yaml"))}
    x = torch.linspace(-4, 4, 801)
    cols = 4
    rows = math.ceil(len(configs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.5 * rows), squeeze=False)
    for ax, (name, cfg) in zip(axes.flat, configs.items()):
        y, dy = curves(cfg, x)
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.axvline(0, color="grey", linewidth=0.6)
        ax.plot(x, y, color="tab:blue", linewidth=1.8, label="f(x)")
        ax.plot(x, dy, color="tab:orange", linewidth=1.4, linestyle="--", label="f'(x)")
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in cfg.items()
            if not k.startswith("_") and k != "inplace"
        )
        ax.set_title(f"{name}" + (f" ({params})" if params else ""), fontsize=9)
        ax.set_xlim(-4, 4)
        ax.set_ylim(max(-4.5, float(min(y.min(), dy.min())) - 0.3), min(4.5, float(max(y.max(), dy.max())) + 0.3))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
        if name == "selu":
            ax.annotate(
                "f' = λ = 1.0507",
                xy=(2.0, 1.0507),
                xytext=(0.3, 2.6),
                fontsize=7,
                arrowprops={"arrowstyle": "->", "linewidth": 0.6},
            )
        if name in ZOOMED:
            inset = ax.inset_axes((0.17, 0.47, 0.42, 0.42))
            inset.axhline(0, color="grey", linewidth=0.5)
            inset.plot(x, y, color="tab:blue", linewidth=1.2)
            inset.plot(x, dy, color="tab:orange", linewidth=1.0, linestyle="--")
            inset.set_xlim(-4, 0.5)
            inset.set_ylim(-0.05, 0.05)
            inset.set_xticks([-4, -2, 0])
            inset.set_yticks([-0.04, 0, 0.04])
            inset.tick_params(labelsize=6)
            inset.set_title("x < 0, zoomed", fontsize=7)
    for ax in axes.flat[len(configs) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=9)
    fig.suptitle(
        "The activation catalogue: f (solid) and its derivative f' by autograd (dashed), on [-4, 4]", fontsize=11
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return list(configs)


IMAGE_SUFFIXES = (".png", ".svg", ".pdf")  # what the picture is written as, by its name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "activations.png")
    parser.add_argument("--dpi", type=int, default=90)
    args = parser.parse_args()
    if not 30 <= args.dpi <= 600:
        parser.error("--dpi must be in [30, 600]")
    if args.out.suffix.lower() not in IMAGE_SUFFIXES:
        parser.error(f"--out {args.out}: the file name must end in one of {', '.join(IMAGE_SUFFIXES)}")
    names = draw(args.out, args.dpi)
    print(f"{len(names)} activations drawn to {args.out}")


if __name__ == "__main__":
    main()
