"""The Hydra entry points behind ``train.py`` and ``eval.py``: config in, one line of outcome out.

Errors a user can fix (bad config values, damaged data files, unwritable directories) print as one
clean line and exit non-zero; ``HYDRA_FULL_ERROR=1`` shows the traceback instead. In a sweep a failing
job is recorded in its ``metrics.json`` and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("experiments")


def _run_id() -> str:
    """Distinguishes runs started in the same second: process id plus sub-second clock."""
    return f"{time.time_ns() // 1000 % 1_000_000:06d}-{os.getpid()}"


OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True, replace=True)
# ${repeat:64,3} -> [64, 64, 64]: lets a sweeper search width and depth as two numbers
OmegaConf.register_new_resolver("repeat", lambda width, depth: [int(width)] * int(depth), replace=True)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def _quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's logging only (console and ``<run_dir>/train.log``)."""
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


def _print_config(cfg: DictConfig) -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    Console(stderr=False).print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml", theme="ansi_dark"))


def _parallel_jobs(hc: Any) -> int:
    if hc.mode != RunMode.MULTIRUN:
        return 1
    n_jobs = hc.launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    return os.cpu_count() or 1 if n_jobs < 0 else int(n_jobs)


def _prepare_ddp_children(hc: Any, run_dir: Path) -> None:
    """Make Lightning's DDP launcher start each extra rank as *this job*, in *this job's* directory.

    Lightning re-runs ``sys.argv`` plus ``hydra.run.dir=<HydraConfig run.dir>`` for every extra rank.
    In a multirun that would relaunch the whole sweep (``-m`` and every swept value) into a fresh
    directory; here the command becomes this job's own overrides, and run.dir this job's directory.
    """
    sys.argv = [sys.argv[0], *hc.overrides.task]
    OmegaConf.set_readonly(hc, False)
    hc.run.dir = str(run_dir)
    OmegaConf.set_readonly(hc, True)


@contextlib.contextmanager
def _ddp_job_scope(enabled: bool):
    """Leave no DDP state behind for the next job of a sweep in this process.

    Lightning keeps the process group and sets LOCAL_RANK, MASTER_PORT, ... in ``os.environ``; the
    next job would then believe it was started by a launcher and wait for ranks that have exited.
    An extra rank destroys its group too: left to the interpreter's exit, the group's teardown can
    abort the process, and Lightning's child-process observer then kills the whole sweep.
    """
    before = dict(os.environ)
    try:
        yield
    finally:
        if enabled:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            for key in set(os.environ) - set(before):
                del os.environ[key]


def _fail(message: str, code: int = 2) -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def train_main(cfg: DictConfig) -> float:
    """Run one job; returns ``optimized_metric`` for sweepers (NaN when the job did not complete)."""
    from experiments.config_checks import ConfigError
    from experiments.mnist import DataError
    from experiments.faults import is_main_process
    from experiments.training import run, write_json

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    _quiet_lightning()
    main_process = is_main_process()
    if cfg.print_config and not multirun and main_process:
        _print_config(cfg)
    uses_ddp = str(cfg.trainer.strategy).startswith("ddp")
    if uses_ddp and main_process:
        _prepare_ddp_children(hc, run_dir)
    try:
        with _ddp_job_scope(uses_ddp):
            result = run(cfg, run_dir, dict(hc.runtime.choices), list(hc.overrides.task), _parallel_jobs(hc))
    except FileExistsError as exc:  # an earlier job's results: report, and do not touch them
        if multirun:
            log.error("job %s refused: %s", run_dir.name, exc)
            return math.nan
        _fail(str(exc))
    except (ConfigError, DataError, OSError, ValueError) as exc:
        if not multirun:
            _fail(str(exc))
        log.error("job %s failed: %s", run_dir.name, exc)  # the sweep goes on; its report shows the job
        error = str(exc)
    except Exception as exc:  # a bug or an environment problem: keep the traceback in the log
        if not multirun:
            raise
        log.error("job %s crashed:\n%s", run_dir.name, traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}"
    else:
        error = None
    if error is not None:
        path = run_dir / "metrics.json"  # a job's own directory: what run() recorded, if it got that far
        earlier = json.loads(path.read_text()) if path.exists() else {}
        write_json(path, {**earlier, "status": "failed", "error": error, "run_dir": str(run_dir),
                          "overrides": list(hc.overrides.task)})
        return math.nan
    status = result["status"]
    if not main_process:
        return float(result.get(cfg.optimized_metric, math.nan))
    if status == "completed":
        print(f"test/acc={result['test/acc']:.4f} test/loss={result['test/loss']:.4f} "
              f"epochs={result['epochs']} wall={result['wall_seconds']:.1f}s run_dir={run_dir}", flush=True)
        return float(result.get(cfg.optimized_metric, math.nan))
    message = f"{result.get('error', status)}; metrics.json status={status}; run_dir={run_dir}"
    if multirun:
        log.error(message)
        return math.nan
    print(f"Error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def eval_main(cfg: DictConfig) -> float:
    """Test one checkpoint; prints the metrics and writes them to ``<run_dir>/eval.json``."""
    import lightning as L

    from experiments.classifier import load_classifier
    from experiments.config_checks import ConfigError, existing_file, validate
    from experiments.data import MNISTDataModule
    from experiments.mnist import DataError
    from experiments.training import write_json

    _quiet_lightning()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate(cfg, extra={"ckpt_path": existing_file})
        module = load_classifier(cfg.ckpt_path)
        data = OmegaConf.to_container(cfg.data, resolve=True)
        datamodule = MNISTDataModule(**{**data, "shuffle_seed": cfg.seed})
        datamodule.prepare_data()
    except (ConfigError, DataError, ValueError, OSError) as exc:
        _fail(str(exc))
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=cfg.progress_bar, enable_model_summary=False)
    result = {k: float(v) for k, v in trainer.test(module, datamodule=datamodule, verbose=False)[0].items()}
    write_json(run_dir / "eval.json", {**result, "ckpt_path": str(Path(cfg.ckpt_path).resolve())})
    print(f"test/acc={result['test/acc']:.4f} test/loss={result['test/loss']:.4f} ckpt={cfg.ckpt_path}", flush=True)
    return result["test/acc"]
