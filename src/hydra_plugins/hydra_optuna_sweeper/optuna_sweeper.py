"""``hydra/sweeper=optuna``: a hyperparameter search on Optuna 5's ask-and-tell interface.

Each round asks the study for ``n_jobs`` trials and hands them to the configured launcher in one call (so joblib
runs them side by side and the fused launcher trains those of one shape as one stacked model), then tells the
study how each ended, read from the job's own record: its optimised metric, ``pruned`` or failed. The study lives
in a SQLite file in the sweep directory unless ``storage`` names another Optuna storage.

Its settings are ``hydra-optuna-sweeper``'s (the plugin this one replaces, which pins Optuna 2): the same config
group, the same sampler options (``hydra/sweeper/sampler=tpe|random|grid|cmaes|nsgaii|qmc``), the same search-space
grammar (``experiments.config.search_space``), plus ``pruner``. Everything a search is given is checked before
its first trial: a bad value is one line and nothing is written.

(No ``from __future__ import annotations``: Hydra's plugin scan executes this module before it is in
``sys.modules``, where ``dataclasses`` cannot resolve annotations given as strings.)
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig, OmegaConf

from experiments.config.search import plan_search
from experiments.errors import ExperimentError, exit_with
from experiments.sweep_dir import OPTUNA_SWEEPER, refuse_changed_code

log = logging.getLogger(__name__)


@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = None
    warn_independent_sampling: bool | None = None
    constant_liar: bool | None = None


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConfig:
    _target_: str = "optuna.samplers.GridSampler"
    search_space: Any | None = None  # null: every value of the searched choices and stepped ranges
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: Any | None = None
    sigma0: float | None = None
    seed: int | None = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: str | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False


@dataclass
class NSGAIISamplerConfig:
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    seed: int | None = None


@dataclass
class QMCSamplerConfig:
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False
    seed: int | None = None


@dataclass
class OptunaSweeperConf:
    _target_: str = OPTUNA_SWEEPER
    _recursive_: bool = False  # the sampler and pruner are built by the search, after its checks
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: Any = "minimize"  # or a list, one per objective
    storage: Any | None = None  # null: sqlite:///<sweep dir>/optuna.db
    study_name: str | None = None  # null: the sweep directory's name
    n_trials: int = 20
    n_jobs: int = 2  # trials asked at once and launched together
    max_failure_rate: float = 0.0  # the share of failed trials past which no more are asked
    pruner: Any = None  # none, median, hyperband, or {_target_: optuna.pruners..., ...}
    params: Any | None = None
    search_space: Any | None = None  # hydra-optuna-sweeper's older forms: refused with the way to write them
    custom_search_space: Any | None = None
    finishing: bool = False  # set by train.py finish=<sweep dir>: the study in that directory continues


store = ConfigStore.instance()
store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="experiments")
for name, node in {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "grid": GridSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "qmc": QMCSamplerConfig,
}.items():
    store.store(group="hydra/sweeper/sampler", name=name, node=node, provider="experiments")


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:  # every setting checked, and the study opened, before a trial runs
            if self.settings.get("finishing"):
                refuse_changed_code(sweep_dir, "search")
            plan = plan_search(self.config, arguments, sweep_dir)
            sweep_dir.mkdir(parents=True, exist_ok=True)  # the default storage's home
            study = plan.open_study()
            if self.settings.get("finishing"):  # a seeded sampler draws on from its trials, not again from the start
                plan = plan_search(self.config, arguments, sweep_dir, seed_offset=len(study.trials))
                study = plan.open_study()
        except ExperimentError as exc:
            exit_with(str(exc))
        if self.settings.get("finishing"):  # train.py finish=: trials a kill left running are settled first
            for line in plan.recover(study, sweep_dir, str(self.config.get("optimized_metric"))):
                log.info(line)
        else:
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info(f"Study {plan.study_name!r} in {plan.storage}: {plan.describe()}")
        returns = []
        while (left := plan.n_trials - plan.counted(study)) > 0 and not plan.grid_done:
            trials = [study.ask(plan.distributions) for _ in range(min(plan.n_jobs, left))]  # drawn here
            for run in consecutive(trials):  # a launch numbers its jobs from its first: each trial's own number
                done = self.launcher.launch([plan.overrides(t) for t in run], initial_job_idx=run[0].number)
                returns.append(done)
                for trial, job in zip(run, done):
                    plan.tell(study, trial, job)
            if plan.failure_rate(study) > plan.max_failure_rate:
                log.error(
                    f"{plan.failure_rate(study):.0%} of the trials failed, more than hydra.sweeper.max_failure_rate="
                    f"{plan.max_failure_rate}: the search stops here"
                )
                break
        plan.write_results(study, sweep_dir)
        return returns


def consecutive(trials: list[Any]) -> list[list[Any]]:
    """The trials in runs of consecutive numbers (a trial enqueued again may break the run)."""
    runs: list[list[Any]] = []
    for trial in trials:
        if runs and runs[-1][-1].number + 1 == trial.number:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs
