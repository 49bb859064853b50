"""One training run from a composed config: validate, train, test the best checkpoint, write results.

``run`` is what ``train.py`` calls for each Hydra job. It never lets a failed job take a sweep down:
the outcome (completed, diverged, interrupted, failed) is written to ``metrics.json`` and returned,
and ``train.py`` turns a bad outcome into a non-zero exit for single runs.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from experiments.classifier import Classifier, read_checkpoint
from experiments.config_checks import validate
from experiments.data import MNISTDataModule
from experiments.faults import AtomicCheckpointIO, Diverged, DivergenceGuard, InterruptHandler, check_writable, is_main_process

FINAL_KEYS = ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "train/acc")


class EpochHistory(L.Callback):
    """Per-epoch wall time and metrics, kept for ``metrics.json`` (the sweep report plots them).

    Metrics are read when the next epoch starts (or training ends): Lightning runs the module's own
    ``on_train_epoch_end``, which logs the epoch's training metrics, after the callbacks' one.
    """

    KEYS = {"train/loss_epoch": "train/loss", "train/acc": "train/acc", "val/loss": "val/loss", "val/acc": "val/acc"}

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {"epoch_seconds": []}
        self._start, self._pending = 0.0, False

    def _snapshot(self, trainer: L.Trainer) -> None:
        if self._pending:
            for key, name in self.KEYS.items():
                if key in trainer.callback_metrics:
                    self.history.setdefault(name, []).append(float(trainer.callback_metrics[key]))
            self._pending = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # once per epoch, so the time is the GPU's too
        self.history["epoch_seconds"].append(round(time.perf_counter() - self._start, 4))
        self._pending = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer)


class ThrottledRichProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting mini-batches and redrawn every ``every_n_steps`` of them.

    The stock bar reads every logged metric (``.item()``, a host synchronisation on a GPU) and
    redraws after each batch; for this MLP that costs more than the batch itself. It would also count
    Lightning's calls, which are groups of mini-batches under ``steps_per_execution``.
    """

    def __init__(self, every_n_steps: int) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self._drawn = 0

    @property
    def total_train_batches(self) -> int | float:
        return getattr(self.trainer.train_dataloader, "num_batches", super().total_train_batches)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._drawn = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done = getattr(trainer.train_dataloader, "batches_done", batch_idx + 1)
        if done // self.every_n_steps > self._drawn // self.every_n_steps or done == self.total_train_batches:
            self._drawn = done
            super().on_train_batch_end(trainer, pl_module, outputs, batch, done - 1)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        if trainer.training and "train/loss" in trainer.callback_metrics:  # read only when the bar redraws
            items["train/loss"] = round(float(trainer.callback_metrics["train/loss"]), 4)
        return items


class StepCheckpoint(L.Callback):
    """``last.ckpt`` each time training passes a multiple of ``every_n_train_steps`` optimizer steps.

    Lightning's ``ModelCheckpoint(every_n_train_steps=N)`` saves only when ``global_step`` lands exactly
    on a multiple of N, and under ``steps_per_execution`` it moves several steps per call.
    """

    def __init__(self, path: Path, every_n_train_steps: int) -> None:
        self.path, self.every = path, every_n_train_steps
        self._saved = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved = trainer.global_step  # a resumed run counts on from its checkpoint

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step // self.every > self._saved // self.every:
            trainer.save_checkpoint(self.path)
            self._saved = step


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic: a killed run never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def set_threads(threads: int | str, parallel_jobs: int) -> int:
    """Torch threads per job: all cores shared evenly between the jobs that run at once."""
    n = max(1, (os.cpu_count() or 1) // max(1, parallel_jobs)) if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    return n


def plain(cfg: DictConfig | None) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if cfg is not None else None


def build_module(cfg: DictConfig, datamodule: MNISTDataModule) -> Classifier:
    # gradient clipping is the module's job: it steps its own optimizer (manual optimization)
    return Classifier(model=plain(cfg.model), activation=plain(cfg.activation), loss=plain(cfg.loss),
                      optimizer=plain(cfg.optimizer), scheduler=plain(cfg.get("scheduler")),
                      input_size=datamodule.input_size, num_classes=datamodule.num_classes,
                      gradient_clip_val=cfg.trainer.get("gradient_clip_val"),
                      gradient_clip_algorithm=cfg.trainer.get("gradient_clip_algorithm") or "norm")


def build_datamodule(cfg: DictConfig) -> MNISTDataModule:
    # the loader applies limit_train_batches in mini-batches, so it means the same at any grouping
    return MNISTDataModule(**plain(cfg.data), steps_per_execution=cfg.steps_per_execution,
                           limit_train_batches=cfg.trainer.get("limit_train_batches"))


def flat_hparams(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """The swept-over choices and the numbers inside them, flat, for TensorBoard's HParams tab."""
    out: dict[str, Any] = {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}
    for group in ("model", "activation", "loss", "optimizer", "data"):
        for key, value in (plain(cfg.get(group)) or {}).items():
            if not key.startswith("_") and isinstance(value, (int, float, str, bool)):
                out[f"{group}.{key}"] = value
            elif isinstance(value, list):
                out[f"{group}.{key}"] = str(value)
    out.update(seed=cfg.seed, max_epochs=cfg.trainer.max_epochs)
    return out


def run(cfg: DictConfig, run_dir: Path, choices: dict[str, str], overrides: list[str],
        parallel_jobs: int = 1) -> dict[str, Any]:
    """Train and test one configuration; returns what it writes to ``<run_dir>/metrics.json``."""
    started = time.perf_counter()
    validate(cfg)
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    resuming = cfg.ckpt_path is not None
    main_process = is_main_process()  # DDP's extra ranks train, but write no files of their own
    if main_process:
        if metrics_path.exists() and not resuming:
            raise FileExistsError(f"{metrics_path} exists: refusing to overwrite an earlier run; "
                                  f"choose a new hydra.run.dir")
        check_writable(run_dir)
    if resuming:
        read_checkpoint(cfg.ckpt_path)  # refuses unsafe or damaged checkpoints before anything is built
    result: dict[str, Any] = {"status": "running", "run_dir": str(run_dir), "overrides": overrides,
                              "choices": {k: v for k, v in choices.items() if not k.startswith("hydra")}}
    if resuming:
        result["resumed_from"] = str(cfg.ckpt_path)
        if metrics_path.exists():  # an interrupted run's way back stays on record until this one ends
            earlier = json.loads(metrics_path.read_text())
            result.update({k: earlier[k] for k in ("resume_command", "interrupted_ckpt") if k in earlier})
    if main_process:
        write_json(metrics_path, result)

    set_threads(cfg.threads, parallel_jobs)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))  # set both ways: loky workers are reused
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()  # checksum failures stop here, before any model is built
    module = build_module(cfg, datamodule)
    if cfg.compile:  # in place: the state_dict keeps its keys, so checkpoints load uncompiled too
        module.net.compile(mode=None if cfg.compile is True else cfg.compile)

    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best-epoch{epoch:02d}-acc{val/acc:.4f}",
                                 auto_insert_metric_name=False, monitor="val/acc", mode="max", save_top_k=1,
                                 save_last=True)

    def mark_interrupted(command: str, ckpt: Path) -> None:
        if main_process:
            write_json(metrics_path, {**result, "status": "interrupted", "resume_command": command,
                                      "interrupted_ckpt": str(ckpt), "wall_seconds": time.perf_counter() - started})

    history = EpochHistory()
    callbacks: list[L.Callback] = [
        checkpoint,
        history,
        DivergenceGuard(cfg.trainer.log_every_n_steps),
        InterruptHandler(ckpt_dir, run_dir, overrides, mark_interrupted),
    ]
    if cfg.checkpoint.every_n_train_steps:  # last.ckpt every N steps too, so a kill -9 loses at most N steps
        callbacks.append(StepCheckpoint(ckpt_dir / "last.ckpt", cfg.checkpoint.every_n_train_steps))
    if cfg.progress_bar:
        callbacks.append(ThrottledRichProgressBar(cfg.progress_bar_refresh))
    diagnostics = [instantiate(c) for c in (cfg.get("diagnostics") or {}).values() if c is not None]
    callbacks += diagnostics
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, limit_train_batches=None,
                                     gradient_clip_val=None, gradient_clip_algorithm=None,
                                     deterministic=cfg.deterministic, enable_progress_bar=bool(cfg.progress_bar),
                                     default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()])
    try:
        with warnings.catch_warnings():
            if datamodule.train_batches_per_epoch() >= trainer.log_every_n_steps:
                # Lightning compares its calls per epoch, not the steps in them, with the logging interval
                warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than")
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        fit_metrics = {name: float(trainer.callback_metrics[key]) for key, name in EpochHistory.KEYS.items()
                       if key in trainer.callback_metrics}
        best = checkpoint.best_model_path or None
        test = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)[0]
        result.update(fit_metrics)
        result.update({k: float(v) for k, v in test.items() if k in FINAL_KEYS})
        result.update(status="completed", best_ckpt=best, best_val_acc=float(checkpoint.best_model_score or 0))
    except Diverged as exc:
        result.update(status="diverged", error=str(exc), diverged_epoch=exc.epoch, diverged_step=exc.step)
    except SIGTERMException:  # the InterruptHandler has saved and recorded; exit as a terminated process does
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as exc:  # recorded, so metrics.json never says "running" for a run that stopped
        if main_process:
            error = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
            write_json(metrics_path, {**result, "status": "failed", "error": error,
                                      "wall_seconds": round(time.perf_counter() - started, 3)})
        raise
    result.update(epochs=trainer.current_epoch, global_step=trainer.global_step, history=history.history,
                  wall_seconds=round(time.perf_counter() - started, 3), threads=torch.get_num_threads(),
                  deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
                  device=str(trainer.strategy.root_device))
    for monitor in diagnostics:
        result.update(getattr(monitor, "latest", {}))
    if not trainer.is_global_zero:
        return result
    if result["status"] == "completed":  # the way back from an interruption is no longer needed
        result = {k: v for k, v in result.items() if k not in ("resume_command", "interrupted_ckpt")}
    write_json(metrics_path, result)
    if result["status"] == "completed":
        final = {f"final/{k.replace('/', '_')}": v for k, v in result.items() if k in FINAL_KEYS}
        logger.log_hyperparams(flat_hparams(cfg, choices), metrics=final)
        logger.finalize("success")
    return result
