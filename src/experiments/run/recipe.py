"""One training run from a composed config, as a recipe: build, fit, test, record.

``run`` is what ``train.py`` calls for each Hydra job (after the config passed its checks). Its outcome,
completed, diverged or interrupted, is written to ``<run_dir>/metrics.json`` and returned; a failure is
recorded by the caller (``run/cli.py``). The fused launcher builds its members with the same builders and
records them with the same outcome functions.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from experiments import names
from experiments.data.datamodule import MNISTDataModule
from experiments.lit.callbacks import Diverged, DivergenceGuard, EpochHistory, Interrupts, epoch_label
from experiments.lit.checkpoint_io import AtomicCheckpointIO
from experiments.lit.classifier import Classifier
from experiments.lit.pruning import TrialPruning
from experiments.lit.restored_state import OwnCheckpointPaths, confine
from experiments.names import Status
from experiments.read_back import read_json
from experiments.run.checkpoints import read_resumable
from experiments.run.hparams import labels, log_final, plain
from experiments.run.outcome import diverged, history_of, how_it_ran, latest_of, pruned, trained
from experiments.run.record import Record, first_record
from experiments.run_dir import finish_command, is_main_process, resume_command, sweep_dir_of_job


@dataclass
class Built:
    datamodule: MNISTDataModule
    module: Classifier
    trainer: L.Trainer
    history: EpochHistory
    interrupts: Interrupts
    monitors: list[L.Callback]
    pruning: TrialPruning | None = None  # a trial of an Optuna search, reporting to its study


def set_threads(threads: int | str, parallel_jobs: int) -> int:
    """Torch threads per job: ``auto`` takes the CPUs a scheduler gave the job's process (Ray and joblib say
    so in ``OMP_NUM_THREADS``), else all cores shared evenly between the jobs that run at once."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    shared = max(1, (os.cpu_count() or 1) // max(1, parallel_jobs))
    n = (int(given) if given.isdigit() and int(given) > 0 else shared) if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    return n


def build_datamodule(cfg: DictConfig) -> MNISTDataModule:
    return instantiate(cfg.data)


def build_module(cfg: DictConfig, datamodule: MNISTDataModule) -> Classifier:
    return Classifier(
        model=plain(cfg.model),
        activation=plain(cfg.activation),
        loss=plain(cfg.loss),
        optimizer=plain(cfg.optimizer),
        scheduler=plain(cfg.get("scheduler")),
        input_size=datamodule.input_size,
        num_classes=datamodule.num_classes,
    )


def build_loggers(cfg: DictConfig) -> list[Logger]:
    return build_entries(cfg, "logger")


def build_entries(cfg: DictConfig, group: str) -> list[Any]:
    """The entries of a group whose entries each build a class (``callbacks``, ``diagnostics``, ``logger``)."""
    return [instantiate(c) for c in (cfg.get(group) or {}).values() if c is not None]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The ``callbacks`` group (checkpoints, progress bar, early stopping) and the ``diagnostics`` group."""
    return [*build_entries(cfg, "callbacks"), *build_entries(cfg, "diagnostics")]


def build_trainer(cfg: DictConfig, callbacks: list[L.Callback], loggers: list[Logger], run_dir: Path) -> L.Trainer:
    """The ``trainer`` group's Trainer, writing checkpoints atomically; a fused group's trainer too."""
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        deterministic=cfg.deterministic,
        # on only where a checkpoint callback is configured: Lightning would otherwise add one of its own
        enable_checkpointing=cfg.trainer.get("enable_checkpointing", True)
        and any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )


def build(cfg: DictConfig, run_dir: Path, record: Record, trial: Any = None) -> Built:
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()  # checksum failures stop here, before any model is built
    module = build_module(cfg, datamodule)
    if cfg.compile:  # in place: the state_dict keeps its keys, so checkpoints load uncompiled too
        module.net.compile(mode=None if cfg.compile is True else cfg.compile)

    def interrupted(trainer: L.Trainer, ckpt: Path) -> None:
        command = resume_command(ckpt.resolve(), run_dir.resolve(), record.data["overrides"])
        record.update(
            status=Status.INTERRUPTED,
            resume_command=command,
            interrupted_ckpt=str(ckpt),
            global_step=trainer.global_step,
        )
        if trainer.is_global_zero:
            if sweep := sweep_dir_of_job():
                how = f"Finish the sweep (this job resumes) with:\n  {finish_command(sweep)}"
            else:
                how = f"Resume with:\n  {command}"
            print(
                f"\nInterrupted in epoch {epoch_label(trainer)}, step {trainer.global_step}; checkpoint saved "
                f"to {ckpt}.\n{how}",
                flush=True,
            )

    history, interrupts = EpochHistory(), Interrupts(run_dir / "checkpoints", interrupted)
    configured = build_callbacks(cfg)
    monitors = [c for c in configured if hasattr(c, "latest")]
    callbacks = [*configured, history, DivergenceGuard(cfg.trainer.log_every_n_steps), interrupts, OwnCheckpointPaths()]
    pruning = TrialPruning(trial, cfg.optimized_metric) if trial is not None else None
    trainer = build_trainer(cfg, [*callbacks, *([pruning] if pruning else [])], build_loggers(cfg), run_dir)
    return Built(datamodule, module, trainer, history, interrupts, monitors, pruning)


def fit(built: Built, ckpt_path: str | None) -> dict[str, Any]:
    """Train; the outcome's part of ``metrics.json``: ``trained`` with the history, or ``diverged``."""
    try:
        with warnings.catch_warnings():
            if ckpt_path is not None:  # a resume's directory holds the run's own checkpoints: as arranged
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            built.trainer.fit(built.module, datamodule=built.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except Diverged as exc:
        return diverged(exc, history_of(built.history, built.monitors))
    except RuntimeError as exc:  # debug=anomaly: torch stops the backward pass that made a NaN, naming it
        if "returned nan values" not in str(exc):
            raise
        trainer, cause = built.trainer, f"{str(exc).splitlines()[0]} (torch's anomaly detection)"
        stopped = Diverged(trainer.current_epoch, trainer.global_step, math.nan, cause)
        return diverged(stopped, history_of(built.history, built.monitors))
    if built.pruning is not None and built.pruning.pruned_after is not None:
        return pruned(built.pruning.pruned_after, history_of(built.history, built.monitors))
    return trained(history_of(built.history, built.monitors))


def best_checkpoint(callbacks: list[L.Callback]) -> dict[str, Any]:
    """The record's best checkpoint: the first monitoring ``ModelCheckpoint``'s choice (``None`` where none
    monitors), and its score where that is ``val/acc``."""
    best = next((c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
    score = best.best_model_score if best is not None and best.monitor == "val/acc" else None
    return {
        "best_ckpt": (best.best_model_path or None) if best is not None else None,
        "best_val_acc": float(score) if score is not None else None,
    }


def evaluate_best(built: Built) -> dict[str, Any]:
    """Test the best checkpoint by the monitored metric (the last weights where none is monitored)."""
    trainer, best = built.trainer, best_checkpoint(built.trainer.checkpoint_callbacks)
    result = trainer.test(
        built.module, datamodule=built.datamodule, ckpt_path=best["best_ckpt"], verbose=False, weights_only=True
    )[0]
    return {
        **{name: float(result[logged]) for logged, name in names.test_metrics().items() if logged in result},
        "status": Status.COMPLETED,
        **best,
    }


def run(
    cfg: DictConfig,
    run_dir: Path,
    choices: dict[str, str],
    overrides: list[str],
    parallel_jobs: int = 1,
    trial: Any = None,
) -> dict[str, Any]:
    """Train and test one configuration; returns what it writes to ``<run_dir>/metrics.json``. ``trial``: the
    Optuna trial the job is, which it reports to and which its pruner may stop."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)  # Hydra made it already, unless run() is called directly
    metrics_path = run_dir / "metrics.json"
    data = first_record(run_dir, choices, overrides, labels(cfg))
    checkpoint = None
    if cfg.ckpt_path is not None:  # unsafe, damaged or foreign checkpoints are refused before anything is built
        settings = {g: plain(cfg[g]) for g in (*names.group_names(network=True), "data")}
        checkpoint = read_resumable(cfg.ckpt_path, settings)
        earlier = read_json(metrics_path)  # an interrupted run's way back stays on record until this one ends
        data.update(
            {k: earlier[k] for k in ("resume_command", "interrupted_ckpt") if k in earlier},
            resumed_from=str(cfg.ckpt_path),
        )
    record = Record(metrics_path, data, writes=is_main_process())

    set_threads(cfg.threads, parallel_jobs)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))  # set both ways: loky workers are reused
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    built = build(cfg, run_dir, record, trial)  # writes nothing: a checkpoint refused below leaves the record as it was
    if checkpoint is not None:  # the files its callback states name: this run's own, or refused now
        confine(checkpoint, cfg.ckpt_path, built.trainer.checkpoint_callbacks)
    record.update()
    try:
        outcome = fit(built, cfg.ckpt_path)
        # training's last measurements: testing the best checkpoint restores the monitors' state from it
        measured = latest_of(built.monitors)
        if outcome["status"] == Status.TRAINED:
            record.data.update(outcome)  # kept should the test be interrupted
            outcome = evaluate_best(built)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C or SIGTERM: exit as a process they end does
        if not built.interrupts.began:  # in fit's set-up: the entry point records it, as a Ctrl-C before fit
            raise KeyboardInterrupt from None
        if record.data["status"] in (Status.RUNNING, Status.TRAINED):  # stopped where no checkpoint was saved
            record.update(status=Status.INTERRUPTED, error=built.interrupts.stopped_outside_training())
        raise SystemExit(built.interrupts.exit_status(exc)) from None
    trainer = built.trainer
    if outcome["status"] == Status.COMPLETED:  # the way back from an interruption is no longer needed
        for key in ("resume_command", "interrupted_ckpt", "error"):
            record.data.pop(key, None)
    record.data.update(outcome)  # the history came with fit's outcome, trained or diverged
    record.data.update({**latest_of(built.monitors), **measured})  # and what the test measured
    result = record.update(**how_it_ran(trainer))
    if result["status"] == Status.COMPLETED and trainer.is_global_zero:
        log_final(trainer.loggers, trainer.global_step, cfg, choices, result, overrides)
    return result
