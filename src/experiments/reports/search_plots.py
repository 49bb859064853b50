"""The report's pictures of an Optuna search, drawn from its study in the sweep directory's ``optuna.db``:

- ``search_history.png``: each finished trial's value in the order asked, the best so far as a line, pruned trials
  marked where their last validation left them;
- ``search_importance.png``: which parameters mattered, by Optuna's default importance evaluator.

Only the sweep's own ``optuna.db`` is read (a storage URL held in a sweep's record is not followed: a record
handed over by someone else would name any database), and only where it holds exactly one study.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from experiments.reports import style
from experiments.reports.style import figure
from experiments.sweep_dir import STUDY_FILE


def _study(sweep_dir: Path) -> Any | None:
    path = sweep_dir / STUDY_FILE
    if path.is_symlink() or not path.is_file():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path.resolve()}"
    try:
        summaries = optuna.get_all_study_summaries(storage=storage)
        if len(summaries) != 1 or len(summaries[0].directions) != 1:  # several objectives: their front is in the yaml
            return None
        return optuna.load_study(study_name=summaries[0].study_name, storage=storage)
    except Exception:  # a file that is no Optuna database: the report goes on without these pictures
        return None


def history(study: Any, path: Path, metric: str) -> Path | None:
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    maximize = study.direction.name == "MAXIMIZE"
    fig, ax = figure(figsize=(8, 4.5))
    ax.plot([t.number for t in done], [t.value for t in done], "o", color="tab:blue", label="completed trial")
    best, running = [], -math.inf if maximize else math.inf
    for t in done:
        running = max(running, t.value) if maximize else min(running, t.value)
        best.append(running)
    ax.step([t.number for t in done], best, where="post", color="tab:red", label="best so far")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.plot(
            [t.number for t in pruned],
            last,
            "x",
            color="tab:orange",
            markersize=9,
            mew=2,
            label="pruned (its last validation)",
        )
    ax.set(xlabel="trial (in the order asked)", ylabel=metric, title=f"The search's {metric} over its trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if maximize else "upper right")
    return style.save(fig, path)


def importance(study: Any, path: Path) -> Path | None:
    import optuna
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(done) < 3:  # an evaluator needs several trials to tell a parameter's effect from noise
        return None
    try:
        found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # a space with nothing varied, or too few trials for the evaluator
        return None
    if not found:
        return None
    names, values = list(found)[::-1], list(found.values())[::-1]
    fig, ax = figure(figsize=(7, 1.2 + 0.45 * len(names)))
    bars = ax.barh(names, values, color="tab:blue", alpha=0.8)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, max(1.0, max(values) * 1.15))
    ax.set(xlabel="importance (shares of the value's variation, summing to 1)", title="Which parameters mattered")
    return style.save(fig, path)


def write_search_plots(sweep_dir: Path, metric: str) -> dict[str, Path]:
    """The search's pictures, where the sweep directory holds its study; returns them by name."""
    study = _study(sweep_dir)
    if study is None:
        return {}
    made = {
        "search_history": history(study, sweep_dir / "search_history.png", metric),
        "search_importance": importance(study, sweep_dir / "search_importance.png"),
    }
    return {name: p for name, p in made.items() if p is not None}
