"""The sweep report's table: which configuration won, and by how much.

Jobs that differ only in ``seed`` form one configuration: its metrics are reported as mean and standard
deviation over the seeds that completed. Failed, diverged and unfinished jobs stay in the report with
their status, never silently dropped.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

import yaml

from experiments import names
from experiments.names import Status
from experiments.read_back import read_json, read_yaml, write_text

SUMMARY_DIAG = (
    "diag/dead_frac/total",
    "diag/inactive_frac/total",
    "diag/saturated_frac/total",
    "diag/born_dead_frac/total",
    "diag/grad_norm/layer1",
)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The sweep's own job directories (a link to another directory is none of them), in job order."""
    dirs = {p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")}
    dirs |= {p.parent for p in sweep_dir.glob("*/metrics.json")}
    number = re.compile(r"[0-9]+")  # ASCII digits only: int() reads other scripts' digits, or fails on '²'
    return sorted(
        (d for d in dirs if not d.is_symlink()),
        key=lambda d: (int(head) if number.fullmatch(head := d.name.split("_")[0]) else 1 << 30, d.name),
    )


def _overrides(value: Any) -> list[str]:
    return [o for o in value if isinstance(o, str)] if isinstance(value, list) else []


def _is_number(value: Any) -> bool:
    """A number the report can compute with: an integer past a float's range (``10**400``) is none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _numbers_only(metrics: dict[str, Any]) -> dict[str, Any]:
    """A record as the report reads it: a metric (a key with ``/``, or a time) that holds no number, and a
    history entry that is no list of numbers, count as missing, not as a crash (a record edited by hand)."""
    clean = {k: v for k, v in metrics.items() if not ("/" in k or k.endswith("_seconds")) or _is_number(v)}
    history = metrics.get("history")
    clean["history"] = (
        {k: [float(x) for x in v] for k, v in history.items() if isinstance(v, list) and all(_is_number(x) for x in v)}
        if isinstance(history, dict)
        else {}
    )
    return clean


def read_job(job_dir: Path) -> dict[str, Any]:
    """One job's record; a job without a finished ``metrics.json`` (killed while it ran, or a file that is
    not a record) is ``incomplete``."""
    try:
        overrides = _overrides(read_yaml(job_dir / ".hydra" / "overrides.yaml"))
    except (OSError, yaml.YAMLError):
        overrides = []
    metrics = _numbers_only(read_json(job_dir / "metrics.json"))
    if metrics.get("status") not in names.finished():
        metrics["status"] = Status.INCOMPLETE
    overrides = overrides or _overrides(metrics.get("overrides"))
    settings = dict(o.split("=", 1) for o in overrides if "=" in o)
    if epochs := metrics["history"].get("epoch_seconds"):  # its training alone: no start-up, set-up or test
        metrics["train_seconds"] = round(sum(epochs), 3)
    tags = metrics.get("tags")
    metrics["tags"] = ",".join(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ""
    # after the record's own keys: its "overrides" is a list, the report's a string
    return {
        **metrics,
        "job": job_dir.name,
        "seed": settings.get("seed", ""),
        "overrides": " ".join(overrides),
        "_overrides": settings,
    }


def _short(value: str) -> str:
    """A swept value as a label shows it: numbers to 3 significant digits, the rest as typed."""
    try:
        number = float(value)
    except ValueError:
        return value
    if number.is_integer() and "e" not in value.lower() and "." not in value:
        return value
    return f"{number:.3g}"


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each key by its last part (``optimizer.lr`` -> ``lr``) where no other of ``keys`` shares that part."""
    tails = [k.rpartition(".")[2] for k in keys]
    return {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails)}


def describe(settings: dict[str, str], names: dict[str, str]) -> str:
    """``lr=0.00587,width=32``: settings by their short names, numbers to 3 significant digits."""
    return ",".join(f"{names[k]}={_short(v)}" for k, v in settings.items())


def label_configs(jobs: list[dict[str, Any]]) -> list[str]:
    """Name each job's configuration by the overrides that vary across the sweep (seed excluded), as short as
    ``describe`` makes them, so labels stay readable in a plot; ``job["swept"]`` keeps the full keys and values
    (the CSV's columns). Returns the overrides common to every job, for the report's header."""
    keys = {k for j in jobs for k in j["_overrides"] if k != "seed"}
    varying = sorted(k for k in keys if len({j["_overrides"].get(k) for j in jobs}) > 1)
    names = short_keys(varying)
    for job in jobs:
        job["swept"] = {k: job["_overrides"].get(k, "(default)") for k in varying}
        job["config"] = describe(job["swept"], names) or "(all alike)"
    return sorted(f"{k}={v}" for k, v in jobs[0]["_overrides"].items() if k in keys and k not in varying)


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if _is_number(v) and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def group_configs(
    jobs: list[dict[str, Any]], rank_by: str = names.RANKED_BY, show: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Seeds aggregated per configuration, best first by ``rank_by`` (a loss: lowest first); ``show``: what
    else the sweep's config asks its summary to show."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        groups.setdefault(job["config"], []).append(job)
    rows = []
    for config, members in groups.items():
        done = [j for j in members if j["status"] == Status.COMPLETED]
        row: dict[str, Any] = {
            "config": config,
            "jobs": len(members),
            "completed": len(done),
            "statuses": ",".join(sorted({j["status"] for j in members})),
            "tags": ",".join(sorted({t for j in members for t in j.get("tags", "").split(",") if t})),
            "members": members,
        }
        for key in {*names.recorded(), *SUMMARY_DIAG, *show, rank_by, "train_seconds"}:
            row[key] = _mean_std([j[key] for j in done if key in j])
        rows.append(row)
    sign = 1 if "loss" in rank_by else -1
    return sorted(rows, key=lambda r: sign * r[rank_by][0] if math.isfinite(r[rank_by][0]) else math.inf)


def _number(value: float, digits: int = 4) -> str:
    """Fixed point, or scientific notation where fixed point would print a small value as 0.000."""
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def _fmt(mean_std: tuple[float, float], digits: int = 4) -> str:
    mean, std = mean_std
    if not math.isfinite(mean):
        return "-"
    return f"{_number(mean, digits)} ± {_number(std, digits)}" if std else _number(mean, digits)


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = read_yaml(path)
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def sweep_settings(sweep_dir: Path) -> dict[str, Any]:
    """What the sweep optimised: an optimizing sweeper (Optuna) ranks by ``optimized_metric``, a grid by
    test accuracy. Read from Hydra's ``multirun.yaml``, or (the Optuna sweeper writes none) from the
    first job's ``.hydra/hydra.yaml`` and ``.hydra/config.yaml``."""
    cfg = _yaml(sweep_dir / "multirun.yaml")
    hydra_cfg = cfg.get("hydra") or {}
    if not cfg:
        jobs = job_dirs(sweep_dir)
        hydra_cfg = _yaml(jobs[0] / ".hydra" / "hydra.yaml").get("hydra") or {} if jobs else {}
        cfg = _yaml(jobs[0] / ".hydra" / "config.yaml") if jobs else {}
    sweeper = str((hydra_cfg.get("sweeper") or {}).get("_target_", ""))
    metric = cfg.get("optimized_metric") if "optuna" in sweeper.lower() else None
    show = cfg.get("show") if isinstance(cfg.get("show"), list) else []  # read back: names it holds, a few
    return {
        "rank_by": metric if metric in names.recorded() else names.RANKED_BY,
        "optimizing": bool(metric),
        "show": tuple(dict.fromkeys(m for m in show[:16] if names.shown(m))),
    }


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``0-2, 5, 7-8``."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def write_markdown(
    jobs: list[dict[str, Any]],
    groups: list[dict[str, Any]],
    path: Path,
    title: str,
    common: list[str],
    rank_by: str,
    show: tuple[str, ...] = (),
) -> None:
    # a summarized metric no job recorded (a sweep from before it was defined) takes no column
    recorded = [m for m in names.summarized() if any(math.isfinite(g[m][0]) for g in groups)]
    metrics = list(dict.fromkeys([rank_by, *recorded, *show]))
    diag = [k for k in SUMMARY_DIAG if k not in metrics and any(math.isfinite(g[k][0]) for g in groups)]
    tagged = any(g["tags"] for g in groups)
    head = ["#", "configuration", "seeds ok", *metrics, *diag, "train s", *(["tags"] if tagged else []), "status"]
    why = (
        f"ranked by {rank_by}, the metric the search optimised (test accuracy beside it)"
        if rank_by != names.RANKED_BY
        else "best test accuracy first"
    )
    lines = [
        f"# Sweep report: {title}",
        "",
        f"{len(jobs)} jobs, {sum(j['status'] == 'completed' for j in jobs)} completed. "
        f"Mean ± standard deviation over the seeds that completed; {why}.",
        "",
        f"Common to every job: `{' '.join(common) or '(no overrides)'}`",
        "",
        "train s: seconds in the training epochs (start-up, set-up and test left out: the first job of a process "
        "is not charged for its imports); summary.csv has each job's whole `wall_seconds` too.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for rank, g in enumerate(groups, 1):
        cells = [
            str(rank),
            f"`{g['config']}`",
            f"{g['completed']}/{g['jobs']}",
            *(_fmt(g[m]) for m in metrics),
            *(_fmt(g[k], 3) for k in diag),
            _fmt(g["train_seconds"], 1),
            *([g["tags"] or "-"] if tagged else []),
            g["statuses"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    groups_of = [
        (j.get("fused_group") or {}).get("jobs") if isinstance(j.get("fused_group"), dict) else None for j in jobs
    ]
    fused = {tuple(g) for g in groups_of if isinstance(g, list) and g and all(type(n) is int for n in g)}
    if fused:  # hydra/launcher=fused: a member's epochs are its group's
        lines += [
            "",
            "Trained together as one stacked model (`hydra/launcher=fused`; a member's train s is its "
            "group's): " + "; ".join(f"jobs {_ranges(list(members))}" for members in sorted(fused)) + ".",
        ]
    if pruned := [j for j in jobs if j["status"] == Status.PRUNED]:  # a search's trials, untested: not in the table
        lines += ["", "## Trials the search pruned", ""]
        lines += [f"- `{j['job']}`: pruned after epoch {j.get('pruned_after_epoch', '?')}" for j in pruned]
    if bad := [j for j in jobs if j["status"] not in (Status.COMPLETED, Status.PRUNED)]:
        lines += ["", "## Jobs that did not complete", ""]
        lines += [f"- `{j['job']}`: **{j['status']}** {j.get('error', '')}".rstrip() for j in bad]
    write_text(path, "\n".join(lines) + "\n")
