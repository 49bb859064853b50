"""Files of a sweep directory: the code a sweep ran with, and what finishing it in place does with each job.

``python train.py finish=<sweep_dir>`` finishes a sweep that Ctrl-C, a reboot or a killed process stopped.
The sweep's overrides come from its ``multirun.yaml``; ``code.json`` (written when the sweep started) says
whether the code and configs are still those its finished jobs ran with, since a report that mixes two
versions of the code would compare what cannot be compared. Each job is then kept, resumed or run again
(``plan``). No torch and no Hydra here: the entry point answers a refused directory before either loads.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from experiments.errors import DamagedFile, RunDirectoryError
from experiments.names import CONF_DIR, Status
from experiments.read_back import own_file, read_json, read_yaml, write_json

CODE_FILE = "code.json"
SWEEP_FILE = "multirun.yaml"  # Hydra's record of a grid sweep's config and overrides
FINISH_SWEEPER = "hydra_plugins.finish_sweeper.finish_sweeper.FinishSweeper"
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"  # the project's own
STUDY_FILE = "optuna.db"  # a search's study, by default: sqlite:///<sweep dir>/optuna.db
TRIAL_ENV = "EXPERIMENTS_OPTUNA_TRIAL"  # a search's job: its trial's number, set through hydra.job.env_set
KEPT = (
    Status.COMPLETED,
    Status.DIVERGED,
    Status.PRUNED,
)  # a job's last word: finishing the sweep does not run it again


def code_files() -> dict[str, Path]:
    """What decides a job's numbers: the package, its Hydra plugins and the configs, named by their paths in
    the repository (``src/...``, ``conf/...``), installed or not."""
    package = Path(__file__).resolve().parent
    code = [*package.rglob("*.py"), *(package.parent / "hydra_plugins").rglob("*.py")]
    files = {f"src/{p.relative_to(package.parent)}": p for p in code}
    files |= {f"conf/{p.relative_to(CONF_DIR)}": p for p in CONF_DIR.rglob("*.yaml")}
    return {name: files[name] for name in sorted(files) if "__pycache__" not in files[name].parts}


def code_digests() -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in code_files().items()}


def write_code(sweep_dir: Path) -> None:
    """At a sweep's start: the digest of every file that decides its jobs' numbers."""
    write_json(sweep_dir / CODE_FILE, {"files": code_digests()})


def code_changes(sweep_dir: Path) -> list[str]:
    """The files whose content differs from the sweep's start (added and removed ones included); raises
    where the sweep recorded none."""
    recorded = read_json(sweep_dir / CODE_FILE).get("files")
    if not isinstance(recorded, dict):
        raise RunDirectoryError(
            f"{sweep_dir} has no {CODE_FILE} (a sweep started before sweeps recorded their code): it cannot be "
            f"known to match today's code, so it is not finished in place; run the sweep again"
        )
    now = code_digests()
    return sorted(name for name in {*recorded, *now} if recorded.get(name) != now.get(name))


def refuse_changed_code(sweep_dir: Path, kind: str = "sweep") -> None:
    """A sweep (``kind``: or a ``search``) finished in place runs the code and configs it began with, or not at
    all: one line naming what changed (``RunDirectoryError``, also where it recorded none)."""
    if changed := code_changes(sweep_dir):
        done, whole = ("searched", "study") if kind == "search" else ("swept", "report")
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise RunDirectoryError(
            f"{sweep_dir} was {done} with other code or configs ({', '.join(changed[:3])}{more} changed since): "
            f"finishing it would mix two versions in one {whole}; restore them, or run the {kind} again"
        )


class Action(str, Enum):
    KEEP = "kept"  # completed or diverged: untouched
    RESUME = "resumed"  # interrupted with a checkpoint to resume from, as a single run resumes
    RERUN = "run again"  # failed, left running by a killed process, or interrupted without a way back
    RUN = "run"  # never ran


@dataclass
class JobPlan:
    num: int
    job_dir: Path
    action: Action
    why: str
    ckpt: Path | None = None  # RESUME: the checkpoint
    moved_to: Path | None = None  # RERUN: where its earlier files went, once moved
    overrides: list[str] = field(default_factory=list)


def job_dir(config: Any) -> Path:
    """A sweep job's directory, from its composed config (with ``hydra.job.num`` set), resolved as Hydra's
    ``run_job`` resolves it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        return Path(str(config.hydra.sweep.dir)) / str(OmegaConf.select(config, "hydra.sweep.subdir"))
    finally:
        HydraConfig.instance().cfg = before


def own_job_dir(sweep_dir: Path, job_dir: Path, touched: bool = True) -> None:
    """Refuse, in one line, a job directory that is no plain directory of the sweep's own: a link (finishing
    would move or append to another directory's files), a path out of the sweep, or, where finishing will touch
    it (``touched``: run again or resumed), one holding links."""
    sweep = sweep_dir.resolve()
    if job_dir.is_symlink() or Path(os.path.abspath(job_dir)).parent != Path(os.path.abspath(sweep_dir)):
        where = "a link" if job_dir.is_symlink() else "not a directory of the sweep itself"
        raise RunDirectoryError(f"{job_dir} is {where}: finish= touches only {sweep}'s own job directories")
    if not job_dir.exists() or not touched:
        return
    if job_dir.resolve().parent != sweep:
        raise RunDirectoryError(f"{job_dir} lies outside {sweep}: finish= touches only the sweep's own directories")
    for root, dirs, files in os.walk(job_dir):
        if link := next((Path(root) / n for n in (*dirs, *files) if (Path(root) / n).is_symlink()), None):
            raise RunDirectoryError(
                f"{link} is a link: a finishing job would write or move through it, outside its directory; "
                f"remove it and finish again"
            )


def plan_job(num: int, job_dir: Path) -> JobPlan:
    """What finishing does with one job, from what its directory holds (``own_job_dir`` checked)."""
    if not job_dir.is_dir():
        return JobPlan(num, job_dir, Action.RUN, "never ran")
    if not any(job_dir.iterdir()):
        return JobPlan(num, job_dir, Action.RUN, "never ran (its directory is empty)")
    record = read_json(job_dir / "metrics.json")
    status = record.get("status")
    if status in KEPT:
        return JobPlan(num, job_dir, Action.KEEP, str(status))
    if status == Status.INTERRUPTED and record.get("resume_command") and record.get("interrupted_ckpt"):
        with suppress(DamagedFile):  # no checkpoint of its own to resume from: it runs again
            ckpt = own_file(job_dir / "checkpoints", record["interrupted_ckpt"], job_dir / "metrics.json", "")
            return JobPlan(num, job_dir, Action.RESUME, f"interrupted at step {record.get('global_step')}", ckpt)
    if status is None:
        why = "no record (stopped before it began)" if not (job_dir / "metrics.json").exists() else "unreadable record"
    elif status == Status.RUNNING:
        why = "left running by a process that was killed"
    else:
        why = str(status) + (": no checkpoint to resume from" if status == Status.INTERRUPTED else "")
    return JobPlan(num, job_dir, Action.RERUN, why)


def move_aside(plan: JobPlan, stamp: str) -> None:
    """A job run again starts in an empty directory; what the earlier attempt wrote is kept beside, in
    ``<job>/earlier-<stamp>/`` (the report reads only the job's own ``metrics.json``)."""
    target = plan.job_dir / f"earlier-{stamp}"
    target.mkdir()
    for path in list(plan.job_dir.iterdir()):
        if path != target and not path.name.startswith("earlier-"):
            os.replace(path, target / path.name)
    plan.moved_to = target


def summary(plans: list[JobPlan]) -> list[str]:
    """One line per kind of action, naming the jobs: the finishing sweep's first words."""
    lines = []
    for action in Action:
        chosen = [p for p in plans if p.action == action]
        if chosen:
            jobs = ", ".join(f"#{p.num} ({p.why})" for p in chosen)
            lines.append(f"{len(chosen)} {'job' if len(chosen) == 1 else 'jobs'} {action.value}: {jobs}")
    return lines


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The config Hydra saved for the sweep in ``multirun.yaml``: refused in one line where the directory is
    no grid sweep of this project's ``train.py``."""
    import yaml

    if not sweep_dir.is_dir():
        raise RunDirectoryError(f"finish={sweep_dir}: no such directory; name a sweep directory (outputs/multirun/...)")
    path = sweep_dir / SWEEP_FILE
    try:
        cfg = read_yaml(path)
    except FileNotFoundError:
        raise RunDirectoryError(
            f"finish={sweep_dir}: no {SWEEP_FILE} there, so it is no sweep (Hydra writes one into every sweep "
            f"directory, and so does an Optuna search)"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        reason = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise RunDirectoryError(
            f"finish={sweep_dir}: {path} cannot be read ({reason}); is it a sweep directory?"
        ) from None
    hydra_cfg = (cfg or {}).get("hydra") if isinstance(cfg, dict) else None
    job = (hydra_cfg or {}).get("job") or {}
    callbacks = (hydra_cfg or {}).get("callbacks") or {}
    if job.get("name") != "train" or "output_guard" not in callbacks:
        raise RunDirectoryError(
            f"finish={sweep_dir}: {path} is not from a sweep of this project's train.py; name one of its sweep "
            f"directories (outputs/multirun/...)"
        )
    return cfg
