"""``reports/search_plots.py``: a search's own pictures, from the study in its sweep directory."""

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import experiments.reports.style as style
from experiments.reports.search_plots import write_search_plots


def a_study(sweep_dir: Path, name: str = "search", direction: str = "maximize") -> optuna.Study:
    """Trials of one learning rate and one width that does not matter: values 0.5, 0.9, 0.7, one pruned at 0.2."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=f"sqlite:///{sweep_dir / 'optuna.db'}", study_name=name, direction=direction)
    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    space["width"] = optuna.distributions.CategoricalDistribution((32, 64))
    for lr, width, value in ((0.3, 32, 0.5), (0.01, 64, 0.9), (0.03, 32, 0.7), (0.001, 64, 0.85), (0.5, 32, 0.2)):
        study.enqueue_trial({"lr": lr, "width": width})
        trial = study.ask(space)
        trial.report(value, step=0)
        study.tell(trial, state=TrialState.PRUNED) if lr == 0.5 else study.tell(trial, value)
    return study


@pytest.fixture
def drawn(monkeypatch):
    figures = {}
    monkeypatch.setattr(style, "save", lambda fig, path: figures.setdefault(path.name, fig) and path)
    return figures


def test_the_history_draws_each_trials_value_the_best_so_far_and_the_pruned_where_they_stopped(tmp_path, drawn):
    a_study(tmp_path / "sweep")
    made = write_search_plots(tmp_path / "sweep", "val/acc")
    assert set(made) == {"search_history", "search_importance"}
    completed, best, pruned = drawn["search_history.png"].axes[0].lines
    assert list(completed.get_ydata()) == [0.5, 0.9, 0.7, 0.85] and list(best.get_ydata()) == [0.5, 0.9, 0.9, 0.9]
    assert list(pruned.get_xdata()) == [4] and list(pruned.get_ydata()) == [0.2]


def test_a_minimising_search_draws_its_lowest_so_far(tmp_path, drawn):
    a_study(tmp_path / "sweep", direction="minimize")
    write_search_plots(tmp_path / "sweep", "val/loss")
    _, best, _ = drawn["search_history.png"].axes[0].lines
    assert list(best.get_ydata()) == [0.5, 0.5, 0.5, 0.5]


def test_importance_bars_name_every_searched_parameter_with_shares_summing_to_one(tmp_path, drawn):
    a_study(tmp_path / "sweep")
    write_search_plots(tmp_path / "sweep", "val/acc")
    ax = drawn["search_importance.png"].axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    widths = [bar.get_width() for bar in ax.patches]
    assert sorted(names) == ["lr", "width"] and sum(widths) == pytest.approx(1.0)


def test_only_the_sweeps_own_single_study_is_read(tmp_path, drawn):
    a_study(tmp_path / "two")
    a_study(tmp_path / "two", name="another")
    assert write_search_plots(tmp_path / "two", "val/acc") == {}  # which one would it be?
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "optuna.db").write_text("not a database")
    assert write_search_plots(tmp_path / "junk", "val/acc") == {}
    a_study(tmp_path / "elsewhere")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "optuna.db").symlink_to(tmp_path / "elsewhere" / "optuna.db")
    assert write_search_plots(tmp_path / "linked", "val/acc") == {}  # a link leads out of the sweep
    assert write_search_plots(tmp_path / "none", "val/acc") == {} and drawn == {}
