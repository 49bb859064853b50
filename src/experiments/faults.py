"""What happens when a run goes wrong: divergence, Ctrl-C and SIGTERM end in a known, recoverable state.

Both callbacks leave ``metrics.json`` with a ``status`` that says what happened, and an interrupted
run leaves a checkpoint and the exact command that resumes it.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from hydra.experimental.callback import Callback
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, read_write


class Diverged(RuntimeError):
    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"diverged at epoch {epoch}, step {step}: train loss is {loss}")
        self.epoch, self.step = epoch, step


class DivergenceGuard(L.Callback):
    """Stops training within one logging interval of a NaN or infinite loss.

    It reads the loss only every ``every_n_steps`` steps (the logging interval), because reading a value
    on the GPU forces a host synchronisation; a NaN in the weights persists, so it cannot slip past.
    """

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps
        self._checked = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._checked = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # a call may take several optimizer steps (steps_per_execution): check once an interval has passed
        step = trainer.global_step
        if step - self._checked < self.every_n_steps and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self._checked = step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Diverged(trainer.current_epoch, step, value)


def resume_command(ckpt: Path, run_dir: Path, overrides: list[str]) -> str:
    """The same run, continued in the same directory; Hydra's copy of the resumed config goes beside
    the original (``.hydra/resumed-<time>``), so the first one is kept."""
    kept = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir=", "hydra.output_subdir="))]
    args = ["python", sys.argv[0] or "train.py", *kept, f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}",
            f"hydra.output_subdir=.hydra/resumed-{time.strftime('%Y%m%d-%H%M%S')}"]
    return " ".join(shlex.quote(a) for a in args)


def is_main_process() -> bool:
    """False in the processes Lightning's DDP launcher starts (they get LOCAL_RANK / NODE_RANK > 0)."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def check_writable(run_dir: Path) -> None:
    """Fail at start, naming the path, where an output directory cannot be created or written."""
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0" * 65536)  # a full disk fails here rather than after an hour of training
        probe.unlink()
    except OSError as exc:
        raise OSError(f"run directory {run_dir} is not writable ({exc.strerror}); "
                      f"free space there or set hydra.run.dir to a writable path") from exc


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file and renamed: a kill -9 mid-save leaves the previous one whole."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class OutputGuard(Callback):
    """Hydra callback: refuse to start in a run or sweep directory that already holds results.

    It runs before Hydra writes its own ``.hydra/`` files, so nothing of the earlier run is touched.
    Resuming (``ckpt_path=...``) into its own run directory is the one allowed re-entry. Hydra turns
    exceptions in callbacks into warnings, so the refusal exits the process itself.
    """

    @staticmethod
    def _refuse(message: str) -> None:
        print(f"Error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)

    def _check_writable(self, path: Path, key: str) -> None:
        try:
            check_writable(path)
        except OSError as exc:
            self._refuse(f"{key}={path}: {exc}")

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not is_main_process():  # a DDP rank started by Lightning, into its job's own directory
            return
        run_dir = Path(config.hydra.run.dir)
        if (run_dir / "metrics.json").exists() and config.get("ckpt_path") is None:
            self._refuse(f"hydra.run.dir={run_dir} already holds a run (metrics.json): refusing to overwrite it; "
                         f"drop the override for a fresh directory, or add ckpt_path=... to resume it")
        subdir = config.hydra.output_subdir
        if subdir is not None and (run_dir / subdir / "config.yaml").exists():
            # resuming in place: the first run's Hydra config stays, this run's goes beside it
            resumed = f"{subdir}/resumed-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            with read_write(config.hydra):
                config.hydra.output_subdir = resumed
            print(f"{run_dir / subdir} holds the first run's config; this run's goes to {run_dir / resumed}",
                  file=sys.stderr, flush=True)
        self._check_writable(run_dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            self._refuse(f"hydra.sweep.dir={sweep_dir} is not empty: refusing to overwrite an earlier sweep; "
                         f"drop the override for a fresh directory")
        self._check_writable(sweep_dir, "hydra.sweep.dir")


class InterruptHandler(L.Callback):
    """On Ctrl-C or SIGTERM: save ``interrupted.ckpt``, mark the run, print how to resume."""

    def __init__(self, ckpt_dir: Path, run_dir: Path, overrides: list[str],
                 on_interrupt: Callable[[str, Path], None]) -> None:
        self.ckpt_dir, self.run_dir, self.overrides = ckpt_dir, run_dir, overrides
        self.on_interrupt = on_interrupt

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SystemExit)) or not trainer.training:
            return
        ckpt = self.ckpt_dir / "interrupted.ckpt"
        trainer.save_checkpoint(ckpt)
        command = resume_command(ckpt.resolve(), self.run_dir.resolve(), self.overrides)
        self.on_interrupt(command, ckpt)
        if trainer.is_global_zero:
            print(f"\nInterrupted at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                  f"checkpoint saved to {ckpt}.\nResume with:\n  {command}", file=sys.stderr, flush=True)

