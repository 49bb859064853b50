"""The sweep report's pictures: what won, and why (dead units, gradient norms), as a reader compares them.

Each function takes the jobs and the configurations of ``table.py`` (seeds grouped, best first) and
writes one PNG into the sweep directory, or nothing where the sweep has no data for it:

- ``val_acc_per_epoch.png``: validation accuracy per epoch, one line per configuration;
- ``train_loss_per_epoch.png``: training loss per epoch on a log scale, one line per configuration (Kingma &
  Ba's comparison of optimizers);
- ``test_acc.png``: final test accuracy, bars from 0 with the chance level (0.1) marked, seed error bars;

and the pictures of each layer's diagnostics (``layer_plots.py``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from experiments import names
from experiments.reports import style
from experiments.reports.layer_plots import activation_spread, activations, dead_units, dead_vs_lr, grad_norms
from experiments.reports.style import (
    MIN_ACCURACY_SPAN,
    at_least,
    figure,
    legend,
    line_style,
    mean_curve,
    plain_log_labels,
    wrap,
)

CHANCE = 0.1  # ten balanced classes


def epoch_curves(groups: list[dict[str, Any]], path: Path, metric: str) -> Path | None:
    """``metric``'s history per epoch, one line per configuration (mean over seeds): an accuracy on an axis at
    least ``MIN_ACCURACY_SPAN`` wide, a loss on a log axis (the orders of magnitude between optimizers)."""
    loss = names.mode_of(metric) == "min"
    fig, ax = figure(figsize=(8, 4.5))
    longest = 0
    for g in groups:
        curves = [j["history"][metric] for j in g["members"] if j.get("history", {}).get(metric)]
        if curves:
            mean = mean_curve(curves)
            if loss:  # a log axis has no place for 0 or a diverged run's inf
                mean = [v if math.isfinite(v) and v > 0 else math.nan for v in mean]
            longest = max(longest, len(mean))
            ax.plot(range(1, len(mean) + 1), mean, label=wrap(g["config"], 40), **line_style(len(ax.lines)))
    if not longest:
        return None
    what = {"val/acc": "validation accuracy", "train/loss": "training loss"}.get(metric, metric)
    if loss:
        ax.set_yscale("log")
        plain_log_labels(ax.yaxis)
    else:
        at_least(ax, MIN_ACCURACY_SPAN)
    ax.set_xticks(range(1, longest + 1) if longest <= 20 else range(1, longest + 1, math.ceil(longest / 10)))
    ax.set_xlim(0.5, longest + 0.5)
    ylabel = f"{what} (log scale)" if loss else what
    ax.set(xlabel="epoch", ylabel=ylabel, title=f"{what.capitalize()} per epoch (mean over seeds)")
    ax.grid(alpha=0.3, which="both")
    legend(ax, len(ax.lines))
    return style.save(fig, path)


def accuracy_bars(groups: list[dict[str, Any]], path: Path, rank_by: str = names.RANKED_BY) -> Path | None:
    done = [g for g in groups if math.isfinite(g["test/acc"][0])]
    if not done:
        return None
    labels = [wrap(g["config"]) for g in done][::-1]
    height = sum(label.count("\n") + 1 for label in labels) * 0.28 + 1.4
    fig, ax = figure(figsize=(8, max(2.5, height)))
    means, stds = [g["test/acc"][0] for g in done][::-1], [g["test/acc"][1] for g in done][::-1]
    bars = ax.barh(labels, means, xerr=stds if any(stds) else None, color="tab:blue", alpha=0.8, capsize=3)
    ax.bar_label(bars, labels=[f"{m:.3f}" for m in means], padding=4, fontsize=7)
    ax.axvline(CHANCE, color="tab:red", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_xlim(0, 1.08)
    order = "" if rank_by == names.RANKED_BY else f", ranked by {rank_by}"
    ax.set(xlabel="test accuracy (mean ± std over seeds)", title=f"Final test accuracy per configuration{order}")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return style.save(fig, path)


def write_plots(
    jobs: list[dict[str, Any]], groups: list[dict[str, Any]], sweep_dir: Path, rank_by: str = names.RANKED_BY
) -> dict[str, Path]:
    """Every picture the sweep has data for; returns them by name."""
    made = {
        "curves": epoch_curves(groups, sweep_dir / "val_acc_per_epoch.png", "val/acc"),
        "train_loss": epoch_curves(groups, sweep_dir / "train_loss_per_epoch.png", "train/loss"),
        "bars": accuracy_bars(groups, sweep_dir / "test_acc.png", rank_by),
        "dead_units": dead_units(groups, sweep_dir / "dead_units.png"),
        "grad_norms": grad_norms(groups, sweep_dir / "grad_norms.png"),
        "dead_vs_lr": dead_vs_lr(jobs, sweep_dir / "dead_vs_lr.png"),
        "activations": activations(groups, sweep_dir / "activations.png"),
        "activation_spread": activation_spread(groups, sweep_dir / "activation_spread.png"),
    }
    return {name: p for name, p in made.items() if p is not None}
