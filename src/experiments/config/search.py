"""An Optuna search's settings, checked, and the study they name: what ``hydra/sweeper=optuna`` asks and tells.

``plan_search`` reads the sweeper's settings (``hydra.sweeper.*``) and the command line's search overrides into a
``SearchPlan``, refusing in one line whatever cannot work, before anything is written. The plan opens the study
(SQLite in the sweep directory unless ``storage`` names another), turns each asked trial into a job's overrides,
and tells the study how the job ended, from the job's own record.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from experiments.config.search_space import overrides_of, parse
from experiments.config.search_strategy import build_pruner, build_sampler, offset_seed
from experiments.errors import ExperimentError, first_line
from experiments.names import Status
from experiments.read_back import read_json, write_text
from experiments.sweep_dir import OPTUNA_SWEEPER, STUDY_FILE, TRIAL_ENV

DIRECTIONS = ("minimize", "maximize")
LOST = "lost"  # a trial's user attribute: a kill left it unfinished, and the search asked its parameters again


def storage_url(storage: Any, sweep_dir: Path) -> str:
    """The study's storage: ``storage`` as given, or a SQLite file in the sweep directory."""
    return str(storage) if storage else f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"


def study_name_of(study_name: Any, sweep_dir: Path) -> str:
    return str(study_name) if study_name else sweep_dir.resolve().name


@dataclass
class SearchPlan:
    """What the sweeper asks and tells, as its settings give it."""

    sweep_dir: Path
    storage: str
    study_name: str
    directions: list[str]
    distributions: dict[str, BaseDistribution]
    fixed: dict[str, str]
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    grid_done: bool = False  # the grid sampler has drawn every point

    def describe(self) -> str:
        searched = ", ".join(f"{k}: {type(d).__name__}" for k, d in self.distributions.items())
        return (
            f"{self.n_trials} trials, {self.n_jobs} at a time, {type(self.sampler).__name__}, "
            f"{type(self.pruner).__name__}; {' and '.join(self.directions)} over {searched or 'nothing'}"
        )

    def check_storage(self) -> None:
        """Before the sweep directory exists: a storage named elsewhere opens, and a study of this name there
        optimises in the same directions. (The default storage, in the sweep directory, is made with it.)"""
        if self.storage == storage_url(None, self.sweep_dir):
            return
        try:
            summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage=self.storage)}
        except Exception as exc:  # SQLAlchemy's and Optuna's refusals alike: the URL is the cause
            raise self._unopened(exc) from None
        if self.study_name in summaries:
            self._same_directions([d.name.lower() for d in summaries[self.study_name].directions])

    def _unopened(self, exc: BaseException) -> ExperimentError:
        return ExperimentError(f"hydra.sweeper.storage={self.storage!r} cannot be opened: {first_line(exc)}")

    def _same_directions(self, found: list[str]) -> None:
        if found != self.directions:
            raise ExperimentError(
                f"study {self.study_name!r} in {self.storage} already optimises {' and '.join(found)}, not "
                f"{' and '.join(self.directions)}: give another hydra.sweeper.study_name, or the same direction"
            )

    def open_study(self) -> optuna.Study:
        """The study, created or continued; one of that name must optimise in the same directions."""
        try:
            study = optuna.create_study(
                storage=self.storage,
                study_name=self.study_name,
                sampler=self.sampler,
                pruner=self.pruner,
                directions=self.directions,
                load_if_exists=True,
            )
        except Exception as exc:  # SQLAlchemy's and Optuna's refusals alike: the URL is the cause
            raise self._unopened(exc) from None
        self._same_directions([d.name.lower() for d in study.directions])
        return study

    def overrides(self, trial: optuna.trial.Trial) -> list[str]:
        """A trial's job: the fixed values, the trial's drawn ones, and its number for the job's pruning."""
        return [
            *(f"{k}={v}" for k, v in self.fixed.items()),
            *(f"{k}={trial.params[k]}" for k in self.distributions),  # drawn when the study asked it
            f"+hydra.job.env_set.{TRIAL_ENV}={trial.number}",
        ]

    def tell(self, study: optuna.Study, trial: optuna.trial.Trial, job: Any) -> None:
        """What the job's record says: its objective value(s), pruned, or failed."""
        job_dir = OmegaConf.select(job.hydra_cfg, "hydra.runtime.output_dir") if job.hydra_cfg else None
        record = read_json(Path(job_dir) / "metrics.json") if job_dir else {}
        status = record.get("status")
        values = job.return_value if status == Status.COMPLETED and job.status == JobStatus.COMPLETED else None
        values = values if isinstance(values, (list, tuple)) else [values]
        try:
            if status == Status.PRUNED:
                study.tell(trial, state=TrialState.PRUNED)
            elif status != Status.COMPLETED or len(values) != len(self.directions) or not all(map(_finite, values)):
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, values=[float(v) for v in values] if len(values) > 1 else float(values[0]))
        except RuntimeError:
            # the grid sampler stops its study after the grid's last point, which Optuna allows only inside
            # optimize(): the trial is stored all the same (optuna/optuna#5141); the search is over
            if not isinstance(self.sampler, optuna.samplers.GridSampler):
                raise
            self.grid_done = True

    def counted(self, study: optuna.Study) -> int:
        """The trials that count towards ``n_trials``: every finished one, but those a kill left unfinished
        (``recover``), which are asked again."""
        return len(_finished(study))

    def recover(self, study: optuna.Study, sweep_dir: Path, metric: str) -> list[str]:
        """Settle the trials a killed search left running, from their jobs' records: a job that finished is told
        as it ended; one that did not is recorded failed (``LOST``), its directory moved into
        ``earlier-<time>/`` and its parameters asked again. Returns what was done, a line each."""
        said, storage = [], optuna.storages.get_storage(self.storage)
        moved = sweep_dir / f"earlier-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            jobs = [p for p in sweep_dir.glob(f"{trial.number}_*") if p.is_dir() and not p.is_symlink()]
            record = read_json(jobs[0] / "metrics.json") if len(jobs) == 1 else {}
            status, value = record.get("status"), record.get(metric)
            if status == Status.PRUNED:
                study.tell(trial.number, state=TrialState.PRUNED)
            elif status == Status.COMPLETED and len(self.directions) == 1 and _finite(value):
                study.tell(trial.number, float(value))
            elif status in (Status.FAILED, Status.DIVERGED):
                study.tell(trial.number, state=TrialState.FAIL)
            else:  # killed while it trained: asked again, from the start
                trial_id = storage.get_trial_id_from_study_id_trial_number(
                    storage.get_study_id_from_name(self.study_name), trial.number
                )
                storage.set_trial_user_attr(trial_id, LOST, True)
                study.tell(trial.number, state=TrialState.FAIL)
                study.enqueue_trial(trial.params, skip_if_exists=False)
                for job in jobs:
                    moved.mkdir(exist_ok=True)
                    os.replace(job, moved / job.name)
                status = f"lost, asked again{f' (its files in {moved.name}/)' if jobs else ''}"
            said.append(f"trial {trial.number}, left running: {status}")
        return said

    def failure_rate(self, study: optuna.Study) -> float:
        trials = _finished(study)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        return failed / len(trials) if trials else 0.0

    def write_results(self, study: optuna.Study, sweep_dir: Path) -> None:
        """``optimization_results.yaml``: the best trial (or, for several objectives, the Pareto front)."""
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done:
            results: dict[str, Any] = {"name": "optuna", "best_params": None, "best_value": None}
        elif len(self.directions) == 1:
            results = {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}
        else:
            front = [{"number": t.number, "params": t.params, "values": t.values} for t in study.best_trials]
            results = {"name": "optuna", "solutions": front}
        write_text(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(results))


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's finished trials, but those a kill left unfinished (``LOST``), which are asked again."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return [t for t in done if not t.user_attrs.get(LOST)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plan_search(config: DictConfig, arguments: list[str], sweep_dir: Path, seed_offset: int = 0) -> SearchPlan:
    """The search the sweeper's settings and the command line describe, every part checked. ``seed_offset``: added
    to a seeded sampler's seed, for a search that continues (a sampler seeded as at its start would draw its
    first trials again)."""
    settings = config.hydra.sweeper
    for old in ("search_space", "custom_search_space"):
        if settings.get(old) is not None:
            raise ExperimentError(
                f"hydra.sweeper.{old} is hydra-optuna-sweeper's older form, not read here: write the search as "
                f"hydra.sweeper.params (e.g. optimizer.lr: tag(log, interval(1e-4, 1e-1)))"
            )
    distributions, fixed = parse([*overrides_of(settings.get("params")), *arguments])
    groups = set(OmegaConf.select(config, "hydra.runtime.choices", default=None) or {})
    for key in [*distributions, *fixed]:
        plain = key.lstrip("+~")
        if key.startswith(("+", "~")) or plain in groups or "/" in plain or plain.startswith("hydra."):
            continue  # a new key, a group's option, or Hydra's own setting: Hydra checks those itself
        if OmegaConf.select(config, plain, default=_ABSENT) is _ABSENT:
            raise ExperimentError(
                f"the search's parameter {key!r} is no key of the config: correct it, or add it with +{plain}"
            )
    direction = settings.get("direction")
    directions = list(direction) if OmegaConf.is_list(direction) else [direction]
    directions = [str(getattr(d, "name", d)).lower() for d in directions]
    if not directions or any(d not in DIRECTIONS for d in directions):
        raise ExperimentError(f"hydra.sweeper.direction={direction!r}: minimize or maximize, or a list of them")
    return SearchPlan(
        sweep_dir=sweep_dir,
        storage=storage_url(settings.get("storage"), sweep_dir),
        study_name=study_name_of(settings.get("study_name"), sweep_dir),
        directions=directions,
        distributions=distributions,
        fixed=fixed,
        sampler=build_sampler(offset_seed(settings.sampler, seed_offset), distributions),
        pruner=build_pruner(settings.get("pruner")),
        n_trials=int(settings.n_trials),
        n_jobs=int(settings.n_jobs),
        max_failure_rate=float(settings.max_failure_rate),
    )


_ABSENT = object()


def job_trial(hydra_cfg: Any) -> optuna.trial.Trial | None:
    """The trial a job of an Optuna search runs (the sweeper sets ``hydra.job.env_set`` to its number), opened
    from the study's storage so the job can report to it; None for any other job."""
    number = os.environ.get(TRIAL_ENV)
    if not number or OmegaConf.select(hydra_cfg, "sweeper._target_") != OPTUNA_SWEEPER:
        return None
    settings, sweep_dir = hydra_cfg.sweeper, Path(hydra_cfg.sweep.dir)
    storage = optuna.storages.get_storage(storage_url(settings.get("storage"), sweep_dir))
    name = study_name_of(settings.get("study_name"), sweep_dir)
    study = optuna.load_study(study_name=name, storage=storage, pruner=build_pruner(settings.get("pruner")))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), int(number))
    return optuna.trial.Trial(study, trial_id)
