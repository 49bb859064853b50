"""``hydra/launcher=ray`` (``conf/hydra/launcher/ray.yaml``): each sweep job one Ray task, on whichever node of
the cluster has room, built on Ray's public API (``ray.init``, ``ray.remote``, ``ray.wait``, ``ray.cancel``).

Its settings are hydra-ray-launcher's (``ray.init``'s and ``ray.remote``'s arguments), so a config written for
that plugin works here. That plugin is not used: a sweep of this project needs what it lacks, and it pins
``cloudpickle<3``, which holds joblib back:

- the sweep directory made absolute before a job leaves the driver: a worker's working directory is the
  cluster's, not the driver's;
- a task whose worker process dies (SIGKILL, out of memory, a lost node) has its jobs recorded ``failed``
  and the sweep goes on; Ray does not retry it (``max_retries: 0``), since a retried job would train again
  over its own files;
- Ctrl-C on the driver cancels the sweep's tasks: a running job stops as Ctrl-C stops it, recording
  ``interrupted``, and the sweep can be finished in place (``train.py finish=``);
- ``object_store_memory`` is left to Ray (the plugin sets it, and Ray refuses it when joining a cluster).

The fused launcher hands its groups to Ray through the same ``run_on_ray`` (``hydra.launcher.on_ray``).
An address where no cluster answers is refused before the sweep starts (``config/rules.py``). Ray is
imported only when a sweep uses it: Hydra imports this module at every start.
(No ``from __future__ import annotations``: Hydra's plugin scan executes this module before it is in
``sys.modules``.)
"""

import logging
import math
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.errors import INTERRUPTED, exit_with, say
from experiments.names import Status, finished
from experiments.read_back import read_json
from experiments.run.record import record_failure
from experiments.run_dir import finish_command
from experiments.sweep_dir import job_dir

log = logging.getLogger(__name__)

Jobs = list[tuple[int, DictConfig]]  # a task's jobs: their numbers and composed configs


@dataclass
class Task:
    """One Ray task: ``function(*args)`` returns a JobReturn for each of ``jobs``, by job number."""

    function: Callable[..., dict[int, JobReturn]]
    args: tuple[Any, ...]
    jobs: Jobs


def start_ray(init: Any) -> None:
    """``ray.init`` with the launcher's ``ray.init`` settings (null ones left to Ray), once per process."""
    import ray

    if ray.is_initialized():
        return
    options = OmegaConf.to_container(init, resolve=True) if isinstance(init, DictConfig) else dict(init or {})
    try:
        ray.init(**{k: v for k, v in options.items() if v is not None})
    except (ConnectionError, RuntimeError) as exc:  # no cluster, or one that refuses this driver (its token)
        exit_with(f"hydra.launcher.ray.init.address={options.get('address')}: {next(iter(str(exc).splitlines()), exc)}")


def absolute_sweep_dir(config: DictConfig) -> None:
    with open_dict(config):
        config.hydra.sweep.dir = str(Path(str(config.hydra.sweep.dir)).resolve())


@contextmanager
def ctrl_c_reaches_the_job() -> Iterator[None]:
    """A Ray worker ignores SIGINT, and ``ray.cancel`` delivers a cancellation as a SIGINT: with Python's own
    handler restored, the job sees it as it sees a Ctrl-C (recorded ``interrupted`` wherever it lands)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: nothing to restore
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def run_job_in_task(
    hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction, singleton_state: dict[Any, Any]
) -> dict[int, JobReturn]:
    """In the worker: Hydra's own ``run_job`` for one job, as the basic launcher runs it."""
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(config)
    with ctrl_c_reaches_the_job():
        ret = run_job(
            hydra_context=hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    return {int(config.hydra.job.num): ret}


def _record(jobs: Jobs, status: Status, error: str) -> None:
    """The jobs a task left without a finished record (none, ``running``, or ``trained`` when it died in the final
    test) get ``status``."""
    for _, config in jobs:
        run_dir = job_dir(config)
        if read_json(run_dir / "metrics.json").get("status") not in finished():
            record_failure(run_dir, error, list(config.hydra.overrides.task), status)


def _lost(num: int, config: DictConfig) -> JobReturn:
    """A job whose task died: recorded ``failed``; to the sweeper a job without a result (NaN), as train.py
    returns for any job that did not complete, so the sweep goes on."""
    ret = JobReturn(overrides=list(config.hydra.overrides.task), status=JobStatus.COMPLETED)
    ret.return_value = math.nan
    return ret


def run_on_ray(tasks: list[Task], remote: Any) -> dict[int, JobReturn]:
    """Submit every task with the ``ray.remote`` options and collect their jobs' returns as they finish."""
    import ray

    options = {"max_retries": 0, **(OmegaConf.to_container(remote, resolve=True) if remote else {})}
    remote_of = {function: ray.remote(**options)(function) for function in {task.function for task in tasks}}
    refs = {remote_of[task.function].remote(*task.args): task for task in tasks}  # each function sent once
    returns: dict[int, JobReturn] = {}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    returns.update(ray.get(ref))
                except ray.exceptions.RayError as exc:  # the worker died, the node was lost, the task was killed
                    reason = f"{type(exc).__name__}: {next(iter(str(exc).splitlines()), '')}"
                    error = f"its Ray task ended without a result ({reason[:300]})"
                    log.error(f"jobs {', '.join(f'#{n}' for n, _ in refs[ref].jobs)}: {error}")
                    _record(refs[ref].jobs, Status.FAILED, error)
                    returns.update({num: _lost(num, config) for num, config in refs[ref].jobs})
    except KeyboardInterrupt:
        for ref in pending:  # a running job gets the Ctrl-C: it stops after its step and records it
            ray.cancel(ref)
        _, stuck = ray.wait(pending, num_returns=len(pending), timeout=120)
        for ref in stuck:  # still running two minutes on: its worker is ended
            ray.cancel(ref, force=True)
        jobs = [job for ref in pending for job in refs[ref].jobs]
        _record(jobs, Status.INTERRUPTED, "interrupted (Ctrl-C on the sweep's driver): its Ray task was cancelled")
        sweep_dir = job_dir(jobs[0][1]).parent if jobs else Path(".")
        say(
            f"Interrupted (Ctrl-C): {len(jobs)} jobs' Ray tasks cancelled and recorded; finish the sweep with "
            f"{finish_command(sweep_dir)}"
        )
        raise SystemExit(INTERRUPTED) from None
    return returns


class RayJobsLauncher(Launcher):
    def __init__(self, ray: DictConfig) -> None:
        self.ray_cfg = ray
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        start_ray(self.ray_cfg.init)
        log.info(f"Launching {len(job_overrides)} jobs as Ray tasks")
        tasks, state = [], Singleton.get_state()
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = idx
            absolute_sweep_dir(config)
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            args = (self.hydra_context, config, self.task_function, state)
            tasks.append(Task(run_job_in_task, args, [(idx, config)]))
        returns = run_on_ray(tasks, self.ray_cfg.remote)
        return [returns[i] for i in sorted(returns)]
