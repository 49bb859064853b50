"""The report's pictures of each layer's diagnostics: why one configuration beat another.

Like ``plots.py``'s, each function writes one PNG into the sweep directory, or nothing where the sweep has no
data for it:

- ``dead_units.png``: dead fraction of each hidden layer per epoch (0 = at initialisation), one panel per
  configuration, so the layers whose ReLUs died stand out;
- ``grad_norms.png``: gradient norm of each layer on a log scale, one line per configuration: the orders
  of magnitude between the first and the last layer of a vanishing-gradient network;
- ``dead_vs_lr.png``: where ``optimizer.lr`` is swept, each layer's final dead fraction against it;
- ``activations.png``: each hidden layer's activation mean (line) and spread (band: ± one standard deviation)
  over training steps, one panel per configuration (Glorot & Bengio's saturation figure);
- ``activation_spread.png``: each layer's activation standard deviation at initialisation and after training,
  log scale, one line per configuration (He et al.'s signal shrinking with depth).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from experiments import names
from experiments.names import Status
from experiments.reports import style
from experiments.reports.style import (
    figure,
    layers_in,
    legend,
    line_style,
    mean_curve,
    plain_log_labels,
    swept_order,
    wrap,
)
from experiments.reports.table import describe, short_keys

BANDS_UP_TO = 10  # layers: a deeper network's bands hide each other, its spread is activation_spread.png's


def dead_units(groups: list[dict[str, Any]], path: Path, limit: int = 16) -> Path | None:
    members = [j for g in groups for j in g["members"]]
    layers = layers_in(members, "diag/dead_frac/")
    layers = [n for n in layers if n != "output"]
    shown = [g for g in groups if any(j.get("history", {}).get("diag/dead_frac/layer1") for j in g["members"])]
    if not layers or not shown:
        return None
    shown = sorted(shown[:limit], key=lambda g: swept_order(g["members"][0]))  # panels in the sweep's order
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = figure(
        rows, cols, figsize=(3.2 * cols + 1.5, 2.6 * rows + 0.6), sharex=True, sharey=True, squeeze=False
    )
    from matplotlib import colormaps

    colours = colormaps["viridis"]
    for ax, g in zip(axes.flat, shown):
        for i, layer in enumerate(layers):
            curves = []
            for job in g["members"]:
                history = job.get("history", {}).get(f"diag/dead_frac/{layer}")
                born = job.get(f"diag/born_dead_frac/{layer}")
                if history:
                    curves.append(([born] if born is not None else [math.nan]) + list(history))
            if curves:
                mean = mean_curve(curves)
                ax.plot(
                    range(len(mean)),
                    mean,
                    marker="o",
                    markersize=3,
                    label=layer,
                    color=colours(i / max(1, len(layers) - 1)),
                )
        ax.set_title(wrap(g["config"], 34), fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    epochs = max(len(line.get_xdata()) for ax in axes.flat for line in ax.lines)
    for ax in axes[-1]:
        ax.set_xlabel("epoch (0 = at initialisation)")
        ax.set_xticks(range(epochs) if epochs <= 12 else range(0, epochs, math.ceil(epochs / 8)))
    for ax in axes[:, 0]:
        ax.set_ylabel("dead fraction")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=8, title="hidden layer")
    more = f" (the first {limit} of {len(groups)})" if len(groups) > limit else ""
    fig.suptitle(f"Dead units per hidden layer: derivative 0 on every probe image{more}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 0.97))
    return style.save(fig, path)


def grad_norms(groups: list[dict[str, Any]], path: Path) -> Path | None:
    members = [j for g in groups for j in g["members"]]
    layers = layers_in(members, "diag/grad_norm/")
    if not layers:
        return None
    fig, ax = figure(figsize=(max(6, 0.6 * len(layers) + 3), 4.5))
    for g in groups:
        points = []
        for layer in layers:
            values = [
                j["history"][f"diag/grad_norm/{layer}"][-1]
                for j in g["members"]
                if j.get("history", {}).get(f"diag/grad_norm/{layer}")
            ]
            points.append(statistics.fmean(values) if values else math.nan)
        if any(math.isfinite(p) and p > 0 for p in points):
            shown = [p if p > 0 else math.nan for p in points]
            ax.plot(range(len(layers)), shown, label=wrap(g["config"], 40), **line_style(len(ax.lines)))
    if not ax.lines:
        return None
    ax.set_yscale("log")
    plain_log_labels(ax.yaxis)
    ax.set_xticks(range(len(layers)), [n.replace("layer", "") if n != "output" else "out" for n in layers])
    ax.set(
        xlabel="layer (1 = next to the input)",
        ylabel="L2 norm of the weight gradient (log scale)",
        title="Gradient norm per layer, last epoch's mean (mean over seeds)",
    )
    ax.grid(alpha=0.3, which="both")
    legend(ax, len(ax.lines))
    return style.save(fig, path)


def dead_vs_lr(jobs: list[dict[str, Any]], path: Path) -> Path | None:
    """Each hidden layer's final dead fraction against ``optimizer.lr``, a line per other swept setting."""
    swept = jobs[0].get("swept", {}) if jobs else {}
    if "optimizer.lr" not in swept:
        return None
    done = [j for j in jobs if j.get("status") == Status.COMPLETED]
    layers = [n for n in layers_in(done, "diag/dead_frac/") if n != "output"]
    if not layers:
        return None
    others = [k for k in swept if k != "optimizer.lr"]
    names = short_keys(others)
    series: dict[str, dict[float, list[dict[str, Any]]]] = {}
    for job in done:
        try:  # a job whose overrides lost optimizer.lr ("(default)") has no place on the axis
            lr = float(job["swept"]["optimizer.lr"])
        except ValueError:
            continue
        name = describe({k: job["swept"][k] for k in others}, names) or "all"
        series.setdefault(name, {}).setdefault(lr, []).append(job)
    if not series:
        return None
    fig, axes = figure(1, len(layers), figsize=(3.4 * len(layers) + 1.5, 3.6), sharey=True, squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for i, (name, by_lr) in enumerate(sorted(series.items())):
            lrs = sorted(by_lr)
            values = [[j["diag/dead_frac/" + layer] for j in by_lr[lr] if f"diag/dead_frac/{layer}" in j] for lr in lrs]
            means = [statistics.fmean(v) if v else math.nan for v in values]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.errorbar(lrs, means, yerr=stds, capsize=3, label=name, **line_style(i))
        ax.set_xscale("log")
        plain_log_labels(ax.xaxis)
        ax.set_ylim(-0.03, 1.03)
        ax.set(title=f"hidden layer {layer.removeprefix('layer')}", xlabel="learning rate (log scale)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("dead fraction after training")
    legend(axes[0][-1], len(series))
    fig.suptitle("Dead units against the learning rate (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return style.save(fig, path)


def _readings(job: dict[str, Any], layer: str) -> tuple[list[float], list[float], list[float]] | None:
    """A job's activation readings of ``layer``: steps, means and spreads, cut to the shortest (a record
    edited by hand), or None where it has none."""
    history = job.get("history", {})
    series = [history.get(key) for key in (names.ACTIVATION_STEPS, *_stat_keys(layer))]
    if not all(series):
        return None
    n = min(map(len, series))
    steps, means, stds = (list(s[:n]) for s in series)
    return steps, means, stds


def _stat_keys(layer: str) -> tuple[str, str]:
    return f"{names.ACTIVATION_MEAN}/{layer}", f"{names.ACTIVATION_STD}/{layer}"


def activations(groups: list[dict[str, Any]], path: Path, limit: int = 16) -> Path | None:
    """Each hidden layer's activation mean and spread over training, a panel per configuration (its first seed:
    readings are steps, not epochs, and seeds read alike)."""
    members = [j for g in groups for j in g["members"]]
    layers = [n for n in layers_in(members, names.ACTIVATION_MEAN + "/") if n != "output"]
    shown = [(g, next((j for j in g["members"] if _readings(j, "layer1")), None)) for g in groups]
    shown = [(g, job) for g, job in shown if job is not None]
    if not layers or not shown:
        return None
    shown = sorted(shown[:limit], key=lambda gj: swept_order(gj[1]))
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = figure(rows, cols, figsize=(3.8 * cols + 1.5, 2.8 * rows + 0.6), sharex=True, squeeze=False)
    from matplotlib import colormaps

    colours = colormaps["viridis"]
    for ax, (g, job) in zip(axes.flat, shown):
        for i, layer in enumerate(layers):
            readings = _readings(job, layer)
            if readings is None:
                continue
            steps, means, stds = readings
            colour = colours(i / max(1, len(layers) - 1))
            ax.plot(steps, means, color=colour, linewidth=1.2, label=layer)
            if len(layers) > BANDS_UP_TO:
                continue
            ax.fill_between(
                steps,
                [m - s for m, s in zip(means, stds)],
                [m + s for m, s in zip(means, stds)],
                color=colour,
                alpha=0.12,
            )
        ax.set_title(wrap(g["config"], 40), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step (0 = at initialisation)")
    for ax in axes[:, 0]:
        ax.set_ylabel("activation: mean ± std" if len(layers) <= BANDS_UP_TO else "activation: mean")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if len(handles) > 12:  # a deep network: every few layers named, the colour scale reads the rest
        keep = sorted({round(k * (len(handles) - 1) / 5) for k in range(6)})
        handles, labels = [handles[k] for k in keep], [labels[k] for k in keep]
    fig.legend(handles, labels, loc="upper right", fontsize=8, title="hidden layer")
    more = f" (the first {limit} of {len(groups)})" if len(groups) > limit else ""
    what = "mean ± std" if len(layers) <= BANDS_UP_TO else "mean (the spread: activation_spread.png)"
    fig.suptitle(f"Activations per hidden layer over training, on a fixed probe: {what}{more}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.88, 0.96))
    return style.save(fig, path)


def activation_spread(groups: list[dict[str, Any]], path: Path) -> Path | None:
    """Each hidden layer's activation standard deviation at the first reading and the last, a line per
    configuration (mean over seeds), log scale."""
    members = [j for g in groups for j in g["members"]]
    layers = [n for n in layers_in(members, names.ACTIVATION_STD + "/") if n != "output"]
    if not layers:
        return None
    fig, axes = figure(1, 2, figsize=(max(9, 0.25 * len(layers) + 7), 4.2), sharey=True, squeeze=False)
    for col, (ax, when) in enumerate(zip(axes[0], ("at initialisation", "after training"))):
        for g in groups:
            points = []
            for layer in layers:
                values = [r[2][0 if col == 0 else -1] for j in g["members"] if (r := _readings(j, layer))]
                values = [v for v in values if math.isfinite(v) and v > 0]
                points.append(statistics.fmean(values) if values else math.nan)
            if any(math.isfinite(p) for p in points):
                ax.plot(range(1, len(layers) + 1), points, label=wrap(g["config"], 40), **line_style(len(ax.lines)))
        ax.set_yscale("log")
        plain_log_labels(ax.yaxis)
        step = max(1, math.ceil(len(layers) / 15))
        ax.set_xticks(range(1, len(layers) + 1, step))
        ax.set(title=when, xlabel="hidden layer (1 = next to the input)")
        ax.grid(alpha=0.3, which="both")
    if not any(ax.lines for ax in axes[0]):
        return None
    axes[0][0].set_ylabel("activation std on the probe (log scale)")
    legend(axes[0][1], len(axes[0][0].lines), source=axes[0][0])  # every configuration: a diverged one has no end
    fig.suptitle("Activation spread per hidden layer (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return style.save(fig, path)
