"""The project's Lightning callbacks: per-epoch history, divergence, interrupts that resume exactly, and
Lightning's rich progress bar reading the metrics only when they can have changed.

Each keeps to Lightning's hooks and public state. What they record goes to ``metrics.json`` through
the run (``run/recipe.py``); their state travels in checkpoints, so a resumed run continues them.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import callbacks
from lightning.pytorch.utilities.exceptions import SIGTERMException

from experiments import names
from experiments.errors import BEFORE_TRAINING

log = logging.getLogger(__name__)
# Where Lightning logs "Received SIGTERM" when its graceful stop begins.
LIGHTNING_SIGNALS = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")


class EpochHistory(L.Callback):
    """Per-epoch wall time and metrics, for ``metrics.json`` (the sweep report plots them).

    Its state is saved in every checkpoint, so a resumed run's history has one entry per epoch, and
    an epoch that was interrupted counts its time before the interruption plus after. Metrics are read
    when the next epoch starts (or training ends, or a checkpoint is written): Lightning computes the
    epoch's training means after the callbacks' ``on_train_epoch_end``.
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {"epoch_seconds": []}
        self.trainer: L.Trainer | None = None
        self.elapsed = 0.0  # seconds of the current epoch spent before this process took it over
        self.started: float | None = None
        self.pending = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer = trainer

    def _snapshot(self) -> None:
        if self.pending and self.trainer is not None:
            metrics = self.trainer.callback_metrics
            for key, name in names.epoch_metrics().items():
                if key in metrics:
                    self.history.setdefault(name, []).append(float(metrics[key]))
            self.pending = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()  # a run resumed mid-epoch gets no on_train_epoch_start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot()
        self.elapsed, self.started = 0.0, time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # once per epoch, so the time is the GPU's too
        self.history["epoch_seconds"].append(round(self._running(), 4))
        self.elapsed, self.started, self.pending = 0.0, None, True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot()

    def _running(self) -> float:
        return self.elapsed + (time.perf_counter() - self.started if self.started is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        self._snapshot()
        return {"history": {k: list(v) for k, v in self.history.items()}, "elapsed": self._running()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
        self.elapsed, self.started = float(state_dict["elapsed"]), None


def epoch_label(trainer: L.Trainer) -> str:
    """The epoch in progress as the progress bar and every message a user reads count it: from 1, of the run's
    epochs (``2/2``, where Lightning's ``current_epoch`` is 1)."""
    shown = str(trainer.current_epoch + 1)
    return shown + (f"/{trainer.max_epochs}" if trainer.max_epochs is not None and trainer.max_epochs >= 0 else "")


class Diverged(RuntimeError):
    """``cause``: what made it, where something said more than the loss (torch's anomaly detection)."""

    def __init__(self, epoch: int, step: int, loss: float, cause: str | None = None) -> None:
        # ``epoch``: Lightning's index, as the record keeps it; the message counts from 1, as the progress bar
        super().__init__(f"diverged in epoch {epoch + 1}, step {step}: {cause or f'train loss is {loss}'}")
        self.epoch, self.step = epoch, step


def at_logging_step_or_epoch_end(trainer: L.Trainer, batch_idx: int, every: int) -> bool:
    """After training batch ``batch_idx``: whether it completed a logging interval (``every`` optimizer
    steps; 0: none) or its epoch. What the callbacks that watch the loss read it at."""
    return (every > 0 and trainer.global_step % every == 0) or batch_idx + 1 >= trainer.num_training_batches


class DivergenceGuard(L.Callback):
    """Stops training at the first logging step (or epoch end) whose loss is NaN or infinite.

    ``EarlyStopping(check_finite=True)`` checks only when it evaluates its monitor, at the end of an
    epoch or a validation; this checks every ``every_n_steps`` steps (the logging interval), when
    Lightning reads the loss anyway. A NaN in the weights persists, so it cannot slip past.
    """

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not at_logging_step_or_epoch_end(trainer, batch_idx, self.every_n_steps):
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(value := float(loss.detach())):
            raise Diverged(trainer.current_epoch, trainer.global_step, value)


class Interrupts(L.Callback):
    """Ctrl-C and SIGTERM end a run where a checkpoint is exact, with ``interrupted.ckpt`` and a record.

    Lightning stops on SIGTERM at the end of the training step in progress (after that step's
    validation, if one is due) and calls ``on_exception``. A first Ctrl-C is turned into the same
    graceful stop, so both end where weights, optimizer, loop counters, running epoch metrics and the
    loader's position all agree; a second Ctrl-C stops at once. ``on_exception`` saves the checkpoint
    and calls ``on_interrupt(trainer, checkpoint)``; ``signal`` says which signal stopped the run. Without a
    ``ckpt_dir`` (a fused sweep's members save their own) no checkpoint is written and ``checkpoint`` is None.

    Lightning ends a validation of more than one batch mid-way when its SIGTERM flag is up, so a Ctrl-C
    that lands inside a validation raises it only at the validation's end. A stop before training began
    (in fit's set-up, the optimizers not yet made) or inside a validation (a SIGTERM from outside, or a
    Ctrl-C in the step before) saves nothing: no checkpoint there could be resumed exactly. ``began`` and
    ``stopped_outside_training`` tell the caller which it was.
    """

    def __init__(self, ckpt_dir: Path | None, on_interrupt: Callable[[L.Trainer, Path | None], None]) -> None:
        self.ckpt_dir, self.on_interrupt = ckpt_dir, on_interrupt
        self.signal: signal.Signals | None = None
        self.previous: Any = None
        self.began = self.ended = False  # the training loop's start and end: where a stop fell
        self.validating = False  # a validation inside training, which a Ctrl-C lets end

    def _ctrl_c(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # the second Ctrl-C: now
            raise KeyboardInterrupt
        self.signal = signal.SIGINT
        after = "validation" if self.validating else "training step"
        log.warning(f"Ctrl-C: stopping after this {after} and saving interrupted.ckpt (Ctrl-C again: at once)")
        if not self.validating:
            signal.raise_signal(signal.SIGTERM)  # Lightning's graceful stop

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validating = self.began and not self.ended and not trainer.sanity_checking

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.validating and self.signal == signal.SIGINT:  # its training step's end is Lightning's next check
            signal.raise_signal(signal.SIGTERM)
        self.validating = False

    def filter(self, record: logging.LogRecord) -> bool:
        """Lightning's "Received SIGTERM" is not logged for a Ctrl-C that this callback turned into one."""
        return not (self.signal == signal.SIGINT and "Received SIGTERM" in record.getMessage())

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal, self.began, self.ended = None, True, False
        # only where Lightning handles SIGTERM (its handler is set from the main thread only)
        lightning_handles_sigterm = signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if threading.current_thread() is threading.main_thread() and lightning_handles_sigterm:
            self.previous = signal.signal(signal.SIGINT, self._ctrl_c)
            LIGHTNING_SIGNALS.addFilter(self)

    def _restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
            LIGHTNING_SIGNALS.removeFilter(self)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ended = True
        self._restore()

    def exit_status(self, exc: BaseException) -> int:
        """What a process that ``exc`` (Ctrl-C or SIGTERM) ended exits with: 128 + the signal, as a shell expects."""
        by = self.signal or (signal.SIGTERM if isinstance(exc, SIGTERMException) else signal.SIGINT)
        return 128 + by

    def stopped_outside_training(self) -> str:
        """The record's ``error`` for a stop that saved no checkpoint: before training began, inside a
        validation, or in the test after training."""
        if not self.began:
            return BEFORE_TRAINING
        if self.ended:
            return "interrupted after training, during the test"
        return "interrupted inside a validation, where no checkpoint is exact: run the job again"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
        if not isinstance(exception, (KeyboardInterrupt, SystemExit)) or not trainer.training or not self.began:
            return
        if self.signal is None:
            self.signal = signal.SIGINT if isinstance(exception, KeyboardInterrupt) else signal.SIGTERM
        ckpt = None
        if self.ckpt_dir is not None:
            ckpt = self.ckpt_dir / "interrupted.ckpt"
            trainer.save_checkpoint(ckpt, weights_only=False)  # the full state: resumable
        self.on_interrupt(trainer, ckpt)


class RichProgressBar(callbacks.RichProgressBar):
    """Lightning's rich bar, with the logged metrics read at the logging interval, not after every batch.

    Lightning 2.6's bar reads ``trainer.progress_bar_metrics`` after every training batch: a pass over
    the logged results and a ``.item()`` per metric, which for a model this small is a measurable share of
    the step (docs/performance-notes.md). Lightning's fix (PR #21032, in no release up to 2.6.6) reads them
    only when the bar refreshes. Here they are read every ``trainer.log_every_n_steps`` steps (when the classifier logs
    ``train/loss`` and the loggers write), at an epoch's last batch, and fresh at every other call
    (after validation, at an epoch's end); in between, the bar keeps showing the last values read.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown: dict[str, Any] | None = None
        self.between_logging_steps = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._count_epochs_from_one(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        new_bar = self.train_progress_bar_id is None  # Lightning adds it here when a run resumes mid-epoch
        self.between_logging_steps = not at_logging_step_or_epoch_end(trainer, batch_idx, trainer.log_every_n_steps)
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self.between_logging_steps = False
        if new_bar:
            self._count_epochs_from_one(trainer)

    def _count_epochs_from_one(self, trainer: L.Trainer) -> None:
        """Lightning's bar counts epochs from 0 ("Epoch 1/1" in a two-epoch run), the record and the
        checkpoints' ``epochs`` from 1; the bar is told to count as a student does: "Epoch 2/2"."""
        if self.progress is None or self.train_progress_bar_id is None:
            return
        text = f"Epoch {epoch_label(trainer)}"
        text = f"{text:{len(self.validation_description)}}"  # as long as the validation bar's: no flicker
        if self.theme.description:
            text = f"[{self.theme.description}]{text}"
        self.progress.update(self.train_progress_bar_id, description=text)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        if not self.between_logging_steps or self.shown is None:
            self.shown = super().get_metrics(trainer, pl_module)
        return self.shown
