"""The sweep report, written into the sweep directory at the end of every multirun (``SweepReport``, a
Hydra callback) and rebuilt at any time, also for an interrupted sweep, with::

    python -m experiments.reports <sweep_dir>

It writes the table (``table.py``) and the pictures (``plots.py``, ``layer_plots.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.errors import ExperimentError, exit_with
from experiments.names import Status
from experiments.reports.summary_csv import write_csv
from experiments.reports.table import (
    group_configs,
    job_dirs,
    label_configs,
    read_job,
    sweep_settings,
    write_markdown,
)


def incomplete_summary(sweep_dir: str | Path) -> str | None:
    """``'2 of 3 jobs did not complete (1 failed, 1 diverged)'``, or ``None`` when every job completed."""
    statuses = [read_job(d)["status"] for d in job_dirs(Path(sweep_dir))]
    bad = [s for s in statuses if s not in (Status.COMPLETED, Status.PRUNED)]  # pruned: the search's own verdict
    if not bad:
        return None
    counts = ", ".join(f"{bad.count(s)} {s}" for s in sorted(set(bad)))
    return f"{len(bad)} of {len(statuses)} jobs did not complete ({counts})"


def build_report(sweep_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.csv``, ``summary.md`` and the plots into ``sweep_dir``; returns their paths."""
    from experiments.reports.plots import write_plots

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory: pass the sweep directory (outputs/multirun/...)")
    jobs = [read_job(d) for d in job_dirs(sweep_dir)]
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir} has no job directories (expected <n>_<overrides>/ with .hydra/ inside)")
    settings = sweep_settings(sweep_dir)
    rank_by, show = settings["rank_by"], settings["show"]
    common = label_configs(jobs)
    groups = group_configs([j for j in jobs if j["status"] != Status.PRUNED], rank_by, show)  # pruned: listed apart
    paths = {"csv": sweep_dir / "summary.csv", "md": sweep_dir / "summary.md"}
    write_csv(jobs, paths["csv"])
    write_markdown(jobs, groups, paths["md"], str(sweep_dir), common, rank_by, show)
    paths.update(write_plots(jobs, groups, sweep_dir, rank_by))
    if settings["optimizing"]:  # an Optuna search: its study's own pictures
        from experiments.reports.search_plots import write_search_plots

        paths.update(write_search_plots(sweep_dir, rank_by))
    return paths


class SweepReport(Callback):
    """Hydra callback: the report at the end of every multirun; a sweep with jobs that did not complete
    then exits 1, naming how many and why, so scripts and CI notice."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:  # Hydra would turn the exception into a warning, and the sweep would exit 0 without a report
            paths = build_report(config.hydra.sweep.dir)
        except (FileNotFoundError, ExperimentError) as exc:
            exit_with(f"no sweep report: {exc}")
        print(Path(paths["md"]).read_text(), flush=True)
        print(f"Sweep report: {paths['md']}", flush=True)
        if problem := incomplete_summary(config.hydra.sweep.dir):
            exit_with(f"{problem}: see {paths['md']}", code=1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Rebuild the report of a sweep directory.")
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args()
    try:
        paths = build_report(args.sweep_dir)
    except (FileNotFoundError, ExperimentError) as exc:
        exit_with(str(exc))
    print(paths["md"].read_text())
    for p in paths.values():
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
