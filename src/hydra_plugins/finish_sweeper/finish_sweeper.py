"""``hydra/sweeper=finish``: a grid sweep finished in place, as ``python train.py finish=<sweep_dir>`` asks.

Its jobs are those the basic sweeper makes of the same overrides (every combination, in the order they are
given), with the same numbers, so each finds its own directory. What a job's directory holds decides what
becomes of it (``experiments.sweep_dir.plan_job``): a completed or diverged job is never launched, so nothing
of it is touched; an interrupted one resumes from its checkpoint (``ckpt_path``, its Hydra files beside the
first run's), exactly as a single run resumes; the others run, a job run again only after what it wrote is
moved into ``earlier-<time>/``. Launching is the configured launcher's: consecutive jobs go to it together,
with their numbers, so joblib runs them in parallel and the fused launcher fuses them.

(No ``from __future__ import annotations``: Hydra's plugin scan executes this module before it is in
``sys.modules``, where ``dataclasses`` cannot resolve annotations given as strings.)
"""

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.errors import ExperimentError, exit_with
from experiments.run_dir import hydra_value, stamp
from experiments.sweep_dir import (
    FINISH_SWEEPER,
    Action,
    JobPlan,
    job_dir,
    move_aside,
    own_job_dir,
    plan_job,
    refuse_changed_code,
    summary,
)

log = logging.getLogger(__name__)


@dataclass
class FinishSweeperConf:
    _target_: str = FINISH_SWEEPER
    max_batch_size: int | None = None  # the basic sweeper's settings, read the same way
    params: dict[str, str] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="finish", node=FinishSweeperConf, provider="experiments")


class FinishSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        self.max_batch_size, self.params = max_batch_size, params or {}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            refuse_changed_code(sweep_dir)
        except ExperimentError as exc:
            exit_with(str(exc))
        jobs = self._jobs(arguments)
        dirs = [self._job_dir(num, overrides) for num, overrides in enumerate(jobs)]
        plans = [plan_job(num, directory) for num, directory in enumerate(dirs)]
        try:  # before anything is moved or launched
            for plan in plans:
                own_job_dir(sweep_dir, plan.job_dir, touched=plan.action != Action.KEEP)
        except ExperimentError as exc:
            exit_with(str(exc))
        when = stamp()
        log.info(f"Finishing {sweep_dir}: {len(jobs)} jobs")
        for line in summary(plans):
            log.info(f"\t{line}")
        OmegaConf.save(self.config, sweep_dir / f"finish-{when}.yaml")  # beside Hydra's multirun.yaml, kept
        returns = []
        for chunk in self._chunks([p for p in plans if p.action != Action.KEEP]):
            batch = [[*jobs[plan.num], *self._prepare(plan, when)] for plan in chunk]
            returns.append(self.launcher.launch(batch, initial_job_idx=chunk[0].num))
        return returns

    def _jobs(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides, as the basic sweeper makes them: the product of the swept values."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        values: dict[str, list[str]] = {}
        for override in parser.parse_overrides([*(f"{k}={v}" for k, v in self.params.items()), *arguments]):
            key = override.get_key_element()
            if not override.is_sweep_override():
                values[key] = [f"{key}={override.get_value_element_as_str()}"]
            elif override.is_discrete_sweep():
                values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
            else:
                exit_with(f"{key}: a {override.value_type.name.lower()} sweep is no grid; finish= finishes grid sweeps")
        return [list(job) for job in itertools.product(*values.values())]

    def _job_dir(self, num: int, overrides: Sequence[str]) -> Path:
        """The job's directory, as the launcher will make it."""
        assert self.hydra_context is not None and self.config is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = num
        return job_dir(config)

    def _chunks(self, plans: list[JobPlan]) -> list[list[JobPlan]]:
        """Runs of consecutive job numbers (a launch numbers its jobs from its first), within max_batch_size."""
        chunks: list[list[JobPlan]] = []
        limit = self.max_batch_size if self.max_batch_size and self.max_batch_size > 0 else len(plans)
        for plan in plans:
            last = chunks[-1] if chunks else None
            if last and last[-1].num == plan.num - 1 and len(last) < limit:
                last.append(plan)
            else:
                chunks.append([plan])
        return chunks

    @staticmethod
    def _prepare(plan: JobPlan, when: str) -> list[str]:
        """Clear the way for a job to run again, or name its checkpoint to resume from: its extra overrides."""
        if plan.action == Action.RERUN:
            move_aside(plan, when)
            log.info(f"\t#{plan.num} runs again; what it wrote before is in {plan.moved_to}")
        if plan.action != Action.RESUME:
            return []
        return [f"ckpt_path={hydra_value(str(plan.ckpt.resolve()))}", f"hydra.output_subdir=.hydra/resumed-{when}"]
