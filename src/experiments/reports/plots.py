"""The sweep report's pictures: what won, and why (dead units, gradient norms), as a reader compares them.

Each function takes the jobs and the configurations of ``table.py`` (seeds grouped, best first) and
writes one PNG into the sweep directory, or nothing where the sweep has no data for it:

- ``val_acc_per_epoch.png``: validation accuracy per epoch, one line per configuration;
- ``test_acc.png``: final test accuracy, bars from 0 with the chance level (0.1) marked, seed error bars;
- ``dead_units.png``: dead fraction of each hidden layer per epoch (0 = at initialisation), one panel per
  configuration, so the layers whose ReLUs died stand out;
- ``grad_norms.png``: gradient norm of each layer on a log scale, one line per configuration: the orders
  of magnitude between the first and the last layer of a vanishing-gradient network;
- ``dead_vs_lr.png``: where ``optimizer.lr`` is swept, each layer's final dead fraction against it.
"""

from __future__ import annotations

import io
import math
import re
import statistics
import textwrap
from pathlib import Path
from typing import Any

from experiments import names
from experiments.names import Status
from experiments.read_back import write_bytes
from experiments.reports.style import MIN_ACCURACY_SPAN, at_least, line_style, plain_log_labels
from experiments.reports.table import describe, short_keys

CHANCE = 0.1  # ten balanced classes
MAX_LAYERS = 128


def _figure(rows: int = 1, cols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A figure that belongs to no pyplot state: drawing a report neither needs nor changes the caller's
    matplotlib backend (a notebook keeps showing its own plots inline)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize"))
    return fig, fig.subplots(rows, cols, **kwargs)


def _wrap(label: str, width: int = 28) -> str:
    """A configuration label over several lines, broken at its commas."""
    return "\n".join(textwrap.wrap(label.replace(",", ", "), width, break_long_words=True)) or label


def _mean_curve(curves: list[list[float]]) -> list[float]:
    n = min(map(len, curves))
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]


def _layers(jobs: list[dict[str, Any]], prefix: str) -> list[str]:
    """``layer1``, ``layer2``, ... (and ``output``) found under ``prefix`` in the jobs' records, in order."""
    found = {k.removeprefix(prefix) for j in jobs for k in [*j.get("history", {}), *j] if k.startswith(prefix)}
    numbered = sorted((n for n in found if re.fullmatch(r"layer[0-9]{1,4}", n)), key=lambda n: int(n[5:]))
    # a record names as many layers as it likes: a picture shows the first MAX_LAYERS, as a reader could read them
    return numbered[:MAX_LAYERS] + (["output"] if "output" in found else [])


def _swept_order(job: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key of a job's swept values: numbers by value, the rest by name."""

    def key(value: str) -> tuple[int, Any]:
        try:
            return 0, float(value)
        except ValueError:
            return 1, value

    return tuple(key(v) for v in job.get("swept", {}).values())


def _save(fig: Any, path: Path) -> Path:
    """Written as every report file is: atomically, replacing a link planted at its name, never through it."""
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, image.getvalue())
    return path


def _legend(ax: Any, n: int) -> None:
    if n:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def val_acc_curves(groups: list[dict[str, Any]], path: Path) -> Path | None:
    fig, ax = _figure(figsize=(8, 4.5))
    longest = 0
    for g in groups:
        curves = [j["history"]["val/acc"] for j in g["members"] if j.get("history", {}).get("val/acc")]
        if curves:
            mean = _mean_curve(curves)
            longest = max(longest, len(mean))
            ax.plot(range(1, len(mean) + 1), mean, label=_wrap(g["config"], 40), **line_style(len(ax.lines)))
    if not longest:
        return None
    at_least(ax, MIN_ACCURACY_SPAN)
    ax.set_xticks(range(1, longest + 1) if longest <= 20 else range(1, longest + 1, math.ceil(longest / 10)))
    ax.set_xlim(0.5, longest + 0.5)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch (mean over seeds)")
    ax.grid(alpha=0.3)
    _legend(ax, len(ax.lines))
    return _save(fig, path)


def accuracy_bars(groups: list[dict[str, Any]], path: Path, rank_by: str = names.RANKED_BY) -> Path | None:
    done = [g for g in groups if math.isfinite(g["test/acc"][0])]
    if not done:
        return None
    labels = [_wrap(g["config"]) for g in done][::-1]
    height = sum(label.count("\n") + 1 for label in labels) * 0.28 + 1.4
    fig, ax = _figure(figsize=(8, max(2.5, height)))
    means, stds = [g["test/acc"][0] for g in done][::-1], [g["test/acc"][1] for g in done][::-1]
    bars = ax.barh(labels, means, xerr=stds if any(stds) else None, color="tab:blue", alpha=0.8, capsize=3)
    ax.bar_label(bars, labels=[f"{m:.3f}" for m in means], padding=4, fontsize=7)
    ax.axvline(CHANCE, color="tab:red", linestyle="--", linewidth=1, label=f"chance ({CHANCE})")
    ax.set_xlim(0, 1.08)
    order = "" if rank_by == names.RANKED_BY else f", ranked by {rank_by}"
    ax.set(xlabel="test accuracy (mean ± std over seeds)", title=f"Final test accuracy per configuration{order}")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def dead_units(groups: list[dict[str, Any]], path: Path, limit: int = 16) -> Path | None:
    members = [j for g in groups for j in g["members"]]
    layers = _layers(members, "diag/dead_frac/")
    layers = [n for n in layers if n != "output"]
    shown = [g for g in groups if any(j.get("history", {}).get("diag/dead_frac/layer1") for j in g["members"])]
    if not layers or not shown:
        return None
    shown = sorted(shown[:limit], key=lambda g: _swept_order(g["members"][0]))  # panels in the sweep's order
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = _figure(
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
                mean = _mean_curve(curves)
                ax.plot(
                    range(len(mean)),
                    mean,
                    marker="o",
                    markersize=3,
                    label=layer,
                    color=colours(i / max(1, len(layers) - 1)),
                )
        ax.set_title(_wrap(g["config"], 34), fontsize=8)
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
    return _save(fig, path)


def grad_norms(groups: list[dict[str, Any]], path: Path) -> Path | None:
    members = [j for g in groups for j in g["members"]]
    layers = _layers(members, "diag/grad_norm/")
    if not layers:
        return None
    fig, ax = _figure(figsize=(max(6, 0.6 * len(layers) + 3), 4.5))
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
            ax.plot(range(len(layers)), shown, label=_wrap(g["config"], 40), **line_style(len(ax.lines)))
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
    _legend(ax, len(ax.lines))
    return _save(fig, path)


def dead_vs_lr(jobs: list[dict[str, Any]], path: Path) -> Path | None:
    """Each hidden layer's final dead fraction against ``optimizer.lr``, a line per other swept setting."""
    swept = jobs[0].get("swept", {}) if jobs else {}
    if "optimizer.lr" not in swept:
        return None
    done = [j for j in jobs if j.get("status") == Status.COMPLETED]
    layers = [n for n in _layers(done, "diag/dead_frac/") if n != "output"]
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
    fig, axes = _figure(1, len(layers), figsize=(3.4 * len(layers) + 1.5, 3.6), sharey=True, squeeze=False)
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
    _legend(axes[0][-1], len(series))
    fig.suptitle("Dead units against the learning rate (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(
    jobs: list[dict[str, Any]], groups: list[dict[str, Any]], sweep_dir: Path, rank_by: str = names.RANKED_BY
) -> dict[str, Path]:
    """Every picture the sweep has data for; returns them by name."""
    made = {
        "curves": val_acc_curves(groups, sweep_dir / "val_acc_per_epoch.png"),
        "bars": accuracy_bars(groups, sweep_dir / "test_acc.png", rank_by),
        "dead_units": dead_units(groups, sweep_dir / "dead_units.png"),
        "grad_norms": grad_norms(groups, sweep_dir / "grad_norms.png"),
        "dead_vs_lr": dead_vs_lr(jobs, sweep_dir / "dead_vs_lr.png"),
    }
    return {name: p for name, p in made.items() if p is not None}
