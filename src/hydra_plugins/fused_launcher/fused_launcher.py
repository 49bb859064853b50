"""``hydra/launcher=fused``: a sweep's compatible jobs trained together as one stacked model.

Hydra finds this plugin in its ``hydra_plugins`` namespace. For each job the launcher composes the
config as the basic launcher does. Jobs whose configs agree in all but seed, activation, weight
initialisation and optimizer hyper-parameters (``experiments.fused.grouping.fusion_key``) form a group; Hydra's
own ``run_job`` prepares each member (its directory, ``.hydra/`` files, logging, job callbacks, the
config checks) and the group then trains in one loop (``experiments.fused.members.train_members``). A job
that cannot fuse (``fusion_problem`` says why, in the log) runs exactly as under the basic launcher.
Groups larger than ``max_members``, or than ``memory_fraction`` of the free memory allows, are split.
With ``on_ray=true`` each group (and each job alone) is one Ray task instead, spread over a cluster's nodes
(``ray.init``, ``ray.remote`` as ``hydra/launcher=ray`` takes them; ``hydra_plugins/ray_jobs``).

(No ``from __future__ import annotations`` here: Hydra's plugin scan executes this module before it is
in ``sys.modules``, where ``dataclasses`` cannot resolve annotations given as strings.)
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def _ray_defaults() -> dict[str, Any]:
    return {"init": {"address": None}, "remote": {"num_cpus": 1, "num_gpus": 0}}


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.fused_launcher.fused_launcher.FusedLauncher"
    max_members: int = 64  # members per stacked model at most
    memory_fraction: float = 0.5  # of the free accelerator memory (or RAM) a group may take
    on_ray: bool = False  # each group (and each job that runs alone) one Ray task, instead of one after another here
    ray: dict[str, Any] = field(default_factory=_ray_defaults)  # as hydra/launcher=ray's: ray.init, ray.remote


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="experiments")


class FusedLauncher(Launcher):
    def __init__(
        self, max_members: int = 64, memory_fraction: float = 0.5, on_ray: bool = False, ray: Any = None
    ) -> None:
        if not isinstance(max_members, int) or max_members < 1:
            raise ValueError(f"hydra.launcher.max_members={max_members!r} is invalid: must be an integer >= 1")
        if not isinstance(memory_fraction, (int, float)) or not 0 < memory_fraction <= 1:
            raise ValueError(
                f"hydra.launcher.memory_fraction={memory_fraction!r} is invalid: must be a number in (0, 1]"
            )
        self.max_members, self.memory_fraction = max_members, memory_fraction
        self.on_ray, self.ray = on_ray, ray
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _run(self, config: DictConfig, task: TaskFunction) -> JobReturn:
        assert self.hydra_context is not None and self.config is not None
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=task,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from experiments.fused.grouping import fusion_key, fusion_problem

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs, fused where they can share a training loop")
        groups: dict[str, list[tuple[int, DictConfig]]] = {}
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = idx
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            try:
                with _as_job(config) as task:  # measured as the job would be built: its own search path
                    problem = fusion_problem(task)
                key = fusion_key(task) if problem is None else f"alone-{idx}"
            except Exception as exc:  # a config that cannot even be read: its own run reports the error
                problem, key = f"its config does not resolve ({type(exc).__name__})", f"alone-{idx}"
            if problem:
                log.info(f"\t#{idx} runs on its own: {problem}")
            groups.setdefault(key, []).append((idx, config))
        try:
            if self.on_ray:
                returns = self._on_ray(list(groups.values()))
            else:
                returns = {}
                for jobs in groups.values():
                    if len(jobs) == 1:  # nothing to fuse with: as under the basic launcher
                        idx, config = jobs[0]
                        returns[idx] = self._run(config, self.task_function)
                    else:
                        returns.update(self._fused(jobs))
        except KeyboardInterrupt:  # outside training, which records its own: while jobs were prepared or built
            from experiments.fused.members import stopped_before_training

            stopped_before_training(Path(str(self.config.hydra.sweep.dir)))
        return [returns[i] for i in sorted(returns)]

    def _on_ray(self, groups: list[list[tuple[int, DictConfig]]]) -> dict[int, JobReturn]:
        """Each group one Ray task that trains it as ``_fused`` does here; a job alone, as ``hydra/launcher=ray``
        runs it."""
        from hydra.core.singleton import Singleton

        from hydra_plugins.ray_jobs.ray_jobs import Task, absolute_sweep_dir, run_job_in_task, run_on_ray, start_ray

        start_ray(self.ray["init"])
        tasks, state = [], Singleton.get_state()
        for jobs in groups:
            for _, config in jobs:
                absolute_sweep_dir(config)  # a worker's working directory is the cluster's
            if len(jobs) == 1:
                tasks.append(Task(run_job_in_task, (self.hydra_context, jobs[0][1], self.task_function, state), jobs))
            else:
                settings = (self.max_members, self.memory_fraction)
                args = (settings, self.hydra_context, self.config, self.task_function, state, jobs)
                tasks.append(Task(_fused_in_task, args, jobs))
        return run_on_ray(tasks, self.ray["remote"])

    def _fused(self, jobs: list[tuple[int, DictConfig]]) -> dict[int, JobReturn]:
        from experiments.fused.grouping import group_device, member_bytes, memory_budget, split_group
        from experiments.fused.members import Member, prepare_member, train_group

        returns, members = {}, []
        for idx, config in jobs:
            ret = self._run(config, prepare_member)
            returns[idx] = ret
            if ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, Member):
                members.append(ret.return_value)
        if not members:
            return returns
        cfg = members[0].cfg
        chunks = split_group(
            len(members), member_bytes(cfg), memory_budget(group_device(cfg), self.memory_fraction), self.max_members
        )
        for chunk in chunks:
            group = [members[i] for i in chunk]
            name = f"fused-{group[0].job}"  # by its first job: unique across the sweeper's batches
            log.info(f"{name}: training jobs {', '.join(f'#{m.job}' for m in group)} as one stacked model")
            with _hydra_config(jobs[0][1]):  # the sweep's own search path: which classes its members may build
                trained = train_group(group, name)
            for job, value in trained.items():
                returns[job].return_value = value
        return returns


def _fused_in_task(
    settings: tuple[int, float],
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
    jobs: list[tuple[int, DictConfig]],
) -> dict[int, JobReturn]:
    """In a Ray worker: the group trained exactly as the launcher trains it in the sweep's own process."""
    from hydra.core.singleton import Singleton

    from hydra_plugins.ray_jobs.ray_jobs import ctrl_c_reaches_the_job

    setup_globals()
    Singleton.set_state(singleton_state)
    launcher = FusedLauncher(*settings)
    launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)
    with ctrl_c_reaches_the_job():
        return launcher._fused(jobs)


@contextmanager
def _hydra_config(config: DictConfig) -> Iterator[None]:
    """Hydra's runtime config is ``config``'s while the block runs: a job's search path says what it may build."""
    from hydra.core.hydra_config import HydraConfig

    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = before


@contextmanager
def _as_job(config: DictConfig) -> Iterator[dict[str, Any]]:
    """The job's own config, resolved (so ``${repeat:...}`` widths compare by value), without Hydra's node,
    looked at as the job (``_hydra_config``); its directory is not chosen yet, so paths under it resolve to one
    placeholder for all jobs."""
    from omegaconf import OmegaConf

    probe = config.copy()
    with open_dict(probe):
        probe.hydra.runtime.output_dir = "<job dir>"
    with _hydra_config(probe):
        task = OmegaConf.to_container(probe, resolve=True)
        task.pop("hydra", None)
        yield task
