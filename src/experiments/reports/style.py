"""How the report's pictures let a reader compare lines: each its own marker and line style, an accuracy axis
no narrower than its differences deserve, log axes labelled in plain numbers."""

from __future__ import annotations

import math
from typing import Any

# Curves that nearly coincide (two activations a hair apart) hide each other in colour alone: each line
# also gets its own marker, line style and marker fill, the combinations repeating only after 28 lines.
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINE_STYLES = ("-", "--", "-.", ":")
# An accuracy axis spans at least this much: two epochs 0.001 apart are drawn as close as they are.
MIN_ACCURACY_SPAN = 0.05


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
