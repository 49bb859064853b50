"""How the report's pictures are drawn, so that a reader can compare them: each line its own marker and line
style, an accuracy axis no narrower than its differences deserve, log axes labelled in plain numbers, labels
wrapped at their commas, figures outside pyplot's state, written atomically."""

from __future__ import annotations

import io
import math
import re
import statistics
import textwrap
from pathlib import Path
from typing import Any

from experiments.read_back import write_bytes

# Curves that nearly coincide (two activations a hair apart) hide each other in colour alone: each line
# also gets its own marker, line style and marker fill, the combinations repeating only after 28 lines.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINE_STYLES = ("-", "--", "-.", ":")
# An accuracy axis spans at least this much: two epochs 0.001 apart are drawn as close as they are.
MIN_ACCURACY_SPAN = 0.05
MAX_LAYERS = 128


def line_style(i: int) -> dict[str, Any]:
    return {
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINE_STYLES[i % len(LINE_STYLES)],
        "fillstyle": "full" if i % 2 == 0 else "none",
    }


def at_least(ax: Any, span: float, low: float = 0.0, high: float = 1.0) -> None:
    """Widen the y-axis to ``span`` around its data where the data span less, within [low, high]."""
    values = [y for line in ax.lines for y in line.get_ydata() if math.isfinite(y)]
    if not values or max(values) - min(values) >= span:
        return
    middle = (max(values) + min(values)) / 2
    bottom = min(max(low, middle - span / 2), high - span)
    ax.set_ylim(bottom, bottom + span)


def plain_log_labels(axis: Any) -> None:
    """Log-axis ticks as plain numbers (0.4, 2e-05), not matplotlib's 4x10^-1."""
    from matplotlib.ticker import Formatter

    class PlainLog(Formatter):
        """The minor ticks are labelled only where the axis, as drawn, spans under two decades."""

        def __init__(self, minor: bool) -> None:
            self.minor = minor

        def __call__(self, value: float, pos: int | None = None) -> str:
            if self.minor:
                low, high = self.axis.get_view_interval()
                if not (low > 0 and math.log10(high / low) < 2):
                    return ""
            return f"{value:.3g}"

    axis.set_major_formatter(PlainLog(minor=False))
    axis.set_minor_formatter(PlainLog(minor=True))


def figure(rows: int = 1, cols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A figure that belongs to no pyplot state: drawing a report neither needs nor changes the caller's
    matplotlib backend (a notebook keeps showing its own plots inline)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=kwargs.pop("figsize"))
    return fig, fig.subplots(rows, cols, **kwargs)


def wrap(label: str, width: int = 28) -> str:
    """A configuration label over several lines, broken at its commas."""
    return "\n".join(textwrap.wrap(label.replace(",", ", "), width, break_long_words=True)) or label


def mean_curve(curves: list[list[float]]) -> list[float]:
    n = min(map(len, curves))
    return [statistics.fmean(c[i] for c in curves) for i in range(n)]


def layers_in(jobs: list[dict[str, Any]], prefix: str) -> list[str]:
    """``layer1``, ``layer2``, ... (and ``output``) found under ``prefix`` in the jobs' records, in order."""
    found = {k.removeprefix(prefix) for j in jobs for k in [*j.get("history", {}), *j] if k.startswith(prefix)}
    numbered = sorted((n for n in found if re.fullmatch(r"layer[0-9]{1,4}", n)), key=lambda n: int(n[5:]))
    # a record names as many layers as it likes: a picture shows the first MAX_LAYERS, as a reader could read them
    return numbered[:MAX_LAYERS] + (["output"] if "output" in found else [])


def swept_order(job: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key of a job's swept values: numbers by value, the rest by name."""

    def key(value: str) -> tuple[int, Any]:
        try:
            return 0, float(value)
        except ValueError:
            return 1, value

    return tuple(key(v) for v in job.get("swept", {}).values())


def save(fig: Any, path: Path) -> Path:
    """Written as every report file is: atomically, replacing a link planted at its name, never through it."""
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, image.getvalue())
    return path


def legend(ax: Any, n: int, source: Any = None) -> None:
    """Right of ``ax``, naming the lines of ``source`` (another panel) or its own."""
    if n:
        handles, labels = (source or ax).get_legend_handles_labels()
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
