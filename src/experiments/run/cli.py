"""The Hydra entry points behind ``train.py`` and ``eval.py``: config in, one line of outcome out.

Errors a user can fix (the project's own ``ExperimentError`` types: bad config values, damaged data
files, refused checkpoints, unwritable directories) print as one line and exit 2, before any config
dump; ``HYDRA_FULL_ERROR=1`` shows the traceback instead. Anything else is a bug and keeps its
traceback. In a sweep a failing job is recorded in its ``metrics.json`` and the sweep goes on.
"""

from __future__ import annotations

import logging
import math
import os
import traceback
import warnings
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.errors import BEFORE_TRAINING, ConfigError, ExperimentError, ctrl_c_in_one_line, exit_with, tell
from experiments.names import Status
from experiments.run.record import record_failure

log = logging.getLogger("experiments")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's logging only (console and ``<run_dir>/train.log``).
    Called once Lightning is imported: where the root logger has no handler (``hydra/job_logging=disabled``)
    Lightning's import adds one of its own."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)  # filters act where a record is made, not on parents
        if not any(isinstance(f, _DropTips) for f in logger.filters):  # once, not once per sweep job
            logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*treespec.*LeafSpec.*")
    # said of any loader without a torch SequentialSampler; the project's keep a fixed order themselves
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled")


class WarningsSeen(logging.Handler):
    """The warnings a job printed, to repeat in its last lines: the config dump and the progress bar
    scroll the first ones out of sight. Python's ``warnings`` (Lightning's among them) are logged too."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = next(iter(record.getMessage().strip().splitlines()), "")
        if line and line not in self.lines:
            self.lines.append(line)

    def __enter__(self) -> WarningsSeen:
        logging.captureWarnings(True)
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)
        logging.captureWarnings(False)

    def repeat(self) -> None:
        if self.lines:
            print(f"{len(self.lines)} warning(s) above, repeated:", *(f"  {w}" for w in self.lines), sep="\n")


def print_config(cfg: DictConfig, console: Any = None) -> None:
    """The composed config, every value whole: a terminal gets it coloured and wrapped at its width, anything else
    (a log file, a pipe) its full lines. Rich would otherwise cut a line at the width, with no mark, and a
    student would copy a wrong path from it."""
    from rich.console import Console
    from rich.syntax import Syntax

    console = console or Console()
    text = OmegaConf.to_yaml(cfg, resolve=True)
    if console.is_terminal:
        console.print(Syntax(text, "yaml", theme="ansi_dark", word_wrap=True))
    else:
        print(text, end="", flush=True)


def _parallel_jobs(hc: Any) -> int:
    if hc.mode != RunMode.MULTIRUN:
        return 1
    n_jobs = hc.launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    return os.cpu_count() or 1 if n_jobs < 0 else int(n_jobs)


def check_config(cfg: DictConfig, hc: Any, multirun: bool) -> None:
    """The config checks (one line per problem, before anything is built) and the advice they give."""
    from experiments.config.rules import advice, misspelt_keys, validate

    if misspelt := misspelt_keys(cfg):
        raise ConfigError("\n".join(misspelt))
    validate(cfg, choices=dict(hc.runtime.choices), multirun=multirun)
    for warning in advice(cfg):
        log.warning(warning)


def user_error(exc: ExperimentError, run_dir: Path | None, overrides: list[str], multirun: bool) -> float:
    """The one way an error the user can fix ends a job (train.py's, a fused member's, eval.py's): recorded
    ``failed`` where the job keeps a record; with ``HYDRA_FULL_ERROR=1`` its traceback; otherwise one line and
    exit 2 for a single run, or a logged line and NaN for the sweeper, whose sweep goes on (its report shows
    the job). Called from the ``except`` that caught ``exc``."""
    if run_dir is not None:
        record_failure(run_dir, str(exc), overrides)
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise exc
    if not multirun:
        exit_with(str(exc))
    log.error("job %s failed: %s", run_dir.name if run_dir is not None else "", exc)
    return math.nan


def train_main(cfg: DictConfig) -> float:
    """Run one job; returns ``optimized_metric`` for sweepers (NaN when the job did not complete)."""
    from experiments.run_dir import is_main_process

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = OmegaConf.to_container(hc.overrides.task, resolve=False)  # as typed, ${...} included
    # training turns its own Ctrl-C into SystemExit: one that lands here came before training began
    stopped = partial(record_failure, run_dir, BEFORE_TRAINING, overrides, Status.INTERRUPTED)
    where = f"before training began; metrics.json status=interrupted; run_dir={run_dir}"
    with ctrl_c_in_one_line(where, stopped), WarningsSeen() as seen:
        result = _train(cfg, hc, run_dir, multirun, overrides)
    if result is None:
        return math.nan
    if not is_main_process():
        return float(result.get(cfg.optimized_metric, math.nan))
    seen.repeat()
    for report in profiler_reports(cfg):
        print(f"profiler report: {report}")
    return finish(cfg, result, run_dir, multirun)


def profiler_reports(cfg: DictConfig) -> list[Path]:
    """The files a profiler of ``trainer.profiler`` (``debug=profiler``) wrote: ``fit-<filename>.txt`` and the
    test's, where it was given a directory."""
    profiler = cfg.trainer.get("profiler")
    if not isinstance(profiler, DictConfig) or not profiler.get("dirpath"):
        return []
    return sorted(Path(profiler.dirpath).glob(f"*-{profiler.get('filename') or ''}*.txt"))


def _train(cfg: DictConfig, hc: Any, run_dir: Path, multirun: bool, overrides: list[str]) -> dict[str, Any] | None:
    """Check, print, build and run one job: its ``metrics.json`` content, or None where it failed in a
    sweep (a single run that fails exits here)."""
    from experiments.run_dir import is_main_process

    try:
        check_config(cfg, hc, multirun)
        if cfg.print_config and not multirun and is_main_process():
            print_config(cfg)
        from experiments.run.recipe import run  # Lightning's import takes seconds: not for a refused config

        quiet_lightning()
        from experiments.lit.pruning import search_trial

        trial = search_trial(hc) if multirun else None
        result = run(cfg, run_dir, dict(hc.runtime.choices), overrides, _parallel_jobs(hc), trial)
    except ExperimentError as exc:
        user_error(exc, run_dir, overrides, multirun)
        return None
    except Exception as exc:  # a bug or an environment problem: the traceback is kept
        record_failure(run_dir, f"{type(exc).__name__}: {exc}", overrides)
        if not multirun:
            raise
        log.error("job %s crashed:\n%s", run_dir.name, traceback.format_exc())
        return None
    return result


def finish(cfg: DictConfig, result: dict[str, Any], run_dir: Path, multirun: bool = True) -> float:
    """A job's one line of outcome; ``optimized_metric`` for a sweeper (NaN where it did not complete)."""
    status = result["status"]
    if status == Status.COMPLETED:
        shown = "".join(f"{m}={result[m]:.4g} " for m in cfg.get("show") or () if isinstance(result.get(m), float))
        tell(
            f"test/acc={result['test/acc']:.4f} test/loss={result['test/loss']:.4f} {shown}"
            f"epochs={result['epochs']} wall={result['wall_seconds']:.1f}s run_dir={run_dir}"
        )
        return float(result.get(cfg.optimized_metric, math.nan))
    if status == Status.PRUNED:  # a search's verdict on a trial, not a failure
        tell(f"pruned after epoch {result['pruned_after_epoch']} by the search's pruner; run_dir={run_dir}")
        return math.nan
    message = f"{result.get('error', status)}; metrics.json status={status}; run_dir={run_dir}"
    if multirun:
        log.error(message)
        return math.nan
    exit_with(message, code=1)


def eval_main(cfg: DictConfig) -> float:
    """Test one checkpoint; prints the metrics and writes them to ``<run_dir>/eval.json``."""
    from experiments.config.rules import RULES, boolean, checkpoint_or_run, validate
    from experiments.read_back import write_json
    from experiments.run_dir import checkpoint_in

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        if not OmegaConf.is_missing(cfg, "ckpt_path"):  # a run directory: the checkpoint its run tested
            cfg.ckpt_path = checkpoint_in(cfg.ckpt_path)
        validate(
            cfg,
            extra={
                "ckpt_path": checkpoint_or_run,
                "progress_bar": boolean,
                "accelerator": RULES["trainer.accelerator"],
            },
        )
        import lightning as L  # after the checks: its import takes seconds

        from experiments.run.checkpoints import model_and_data

        quiet_lightning()
        scaled = any(o.startswith("data.normalize=") for o in hc.overrides.task)
        module, datamodule = model_and_data(cfg.ckpt_path, cfg.data, keep_normalize=scaled)
        datamodule.prepare_data()
    except ExperimentError as exc:
        return user_error(exc, None, [], multirun=False)
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
    )
    result = {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, verbose=False)[0].items()}
    write_json(run_dir / "eval.json", {**result, "ckpt_path": str(Path(cfg.ckpt_path).resolve())})
    tell(
        f"test/acc={result['test/acc']:.4f} test/loss={result['test/loss']:.4f} ckpt={cfg.ckpt_path} "
        f"written to {run_dir / 'eval.json'}"
    )
    return result["test/acc"]


def _hydra_entry(task: Any, config_name: str) -> None:
    from experiments.names import CONF_DIR
    from experiments.run.command_line import hydra_main
    from experiments.run.resolvers import register_resolvers

    with ctrl_c_in_one_line():
        register_resolvers()
        hydra_main(str(CONF_DIR), config_name, task)()


def train() -> None:
    """Console script ``mlp-train``: ``python train.py`` under another name, the same arguments."""
    _hydra_entry(train_main, "config")


def evaluate() -> None:
    """Console script ``mlp-eval``: ``python eval.py`` under another name, the same arguments."""
    _hydra_entry(eval_main, "eval")
