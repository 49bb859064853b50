"""Hydra callbacks: the one place that refuses to write into a directory holding earlier results (and
records the code a sweep starts with), and the check of a sweep's launcher and sweeper settings.

They run before Hydra writes its own ``.hydra/`` files, so a refused run touches nothing. Hydra turns
exceptions raised in callbacks into warnings, so a refusal prints one line and exits itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from experiments.errors import ExperimentError, RunDirectoryError, exit_with, say
from experiments.names import Status
from experiments.read_back import read_json
from experiments.run_dir import check_writable, hydra_value, is_main_process, stamp
from experiments.sweep_dir import FINISH_SWEEPER, OPTUNA_SWEEPER, write_code

RESULTS = (".hydra/config.yaml", "metrics.json", "eval.json")


def earlier_results(run_dir: Path) -> list[str]:
    """What in ``run_dir`` belongs to an earlier run: its config, its records, its checkpoints."""
    found = [name for name in RESULTS if (run_dir / name).exists()]
    found += [f"checkpoints/{p.name}" for p in sorted((run_dir / "checkpoints").glob("*.ckpt"))]
    return found


class OutputGuard(Callback):
    """Refuse to start in a run or sweep directory that already holds results.

    ``allow_resume``: a training run given ``ckpt_path`` may continue in its own directory, unless that
    run completed (its record would be overwritten).
    """

    def __init__(self, allow_resume: bool = True) -> None:
        self.allow_resume = allow_resume

    def _writable(self, path: Path, key: str) -> None:
        try:
            check_writable(path, key)
        except RunDirectoryError as exc:
            exit_with(str(exc))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_main_process():  # a DDP rank started by Lightning, into its job's own directory
            return
        added = any(str(o).startswith("+") for o in config.hydra.overrides.task)
        if self.allow_resume and added:  # train.py given a new key: a misspelt one answered before Hydra writes
            from experiments.config.rules import typo_problems  # imports torch, and the classes the config names

            app = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
            if found := typo_problems(app):
                exit_with(found[0])
        run_dir = Path(config.hydra.run.dir)
        links = sorted(p.name for p in run_dir.iterdir() if p.is_symlink()) if run_dir.is_dir() else []
        if links:  # Hydra's log file, metrics.json, ... would be written through it, outside the run
            exit_with(
                f"hydra.run.dir={run_dir} holds symbolic links ({', '.join(links[:3])}): a run never "
                f"writes through links; remove them or choose another directory"
            )
        found = earlier_results(run_dir)
        resuming = self.allow_resume and config.get("ckpt_path") is not None
        if found and not resuming:
            exit_with(
                f"hydra.run.dir={run_dir} already holds a run ({', '.join(found[:3])}): refusing to "
                f"overwrite it; drop the override for a fresh directory{self._way_on(run_dir)}"
            )
        if resuming and read_json(run_dir / "metrics.json").get("status") == Status.COMPLETED:
            exit_with(
                f"hydra.run.dir={run_dir} holds a completed run: refusing to resume into it and "
                f"overwrite its record; drop hydra.run.dir to continue from ckpt_path in a new directory"
            )
        subdir = config.hydra.output_subdir
        if subdir is not None and (run_dir / subdir / "config.yaml").exists():
            # resuming in place: the first run's Hydra config stays, this run's goes beside it
            resumed = f"{subdir}/resumed-{stamp()}"
            with read_write(config.hydra):
                config.hydra.output_subdir = resumed
            say(f"{run_dir / subdir} holds the first run's config; this run's goes to {run_dir / resumed}")
        self._writable(run_dir, "hydra.run.dir")

    def _way_on(self, run_dir: Path) -> str:
        """The advice that, followed, works: resume an interrupted run in place; train on from a finished one's
        last checkpoint in a fresh directory; nothing more where neither can be (eval.py, a failed run)."""
        if not self.allow_resume:
            return ""
        record, checkpoints = read_json(run_dir / "metrics.json"), run_dir / "checkpoints"
        if record.get("status") == Status.INTERRUPTED and (checkpoints / "interrupted.ckpt").is_file():
            return f", or resume it there: add ckpt_path={hydra_value(str(checkpoints / 'interrupted.ckpt'))}"
        if record.get("status") == Status.COMPLETED and (checkpoints / "last.ckpt").is_file():
            return f" (to train on from this run there, add ckpt_path={hydra_value(str(checkpoints / 'last.ckpt'))})"
        return ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") == FINISH_SWEEPER or sweeper.get("finishing"):  # train.py finish=: job by job
            self._writable(sweep_dir, "hydra.sweep.dir")
            return
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            exit_with(
                f"hydra.sweep.dir={sweep_dir} is not empty: refusing to overwrite an earlier sweep; "
                f"drop the override for a fresh directory, or finish a stopped sweep with "
                f"python train.py finish={sweep_dir}"
            )
        self._writable(sweep_dir, "hydra.sweep.dir")
        write_code(sweep_dir)  # what finishing it later checks against


class SweepSettings(Callback):
    """Refuse launcher and sweeper settings that would fail only once the sweep has started (joblib's
    ``n_jobs=0``, Optuna's ``n_trials=0``, a search space or storage that cannot work): one line naming the key,
    before the plugins are built."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from experiments.config.rules import sweep_problems

        if found := sweep_problems(config.hydra):
            exit_with("\n".join(found))
        if config.hydra.sweeper.get("_target_") == OPTUNA_SWEEPER:  # the search, read as the sweeper will read it
            from experiments.config.search import plan_search

            try:
                plan_search(config, list(config.hydra.overrides.task), Path(config.hydra.sweep.dir)).check_storage()
            except ExperimentError as exc:
                exit_with(str(exc))
