"""A fused group's runs: which sweep jobs may train as one stacked model, and each member's record.

``fusion_problem`` names what leaves a job to a separate run: dropout and RReLU (random numbers drawn
in another order than a separate run draws them), in-place activations, batch norm, gradient clipping
(a norm over the whole stack), early stopping, step checkpoints, ``compile``, DDP and resuming.
``fusion_key`` is equal for jobs that may share a loop. ``train_members`` trains a group
(``fused.FusedClassifier``) and writes each member's run directory through ``MemberRecords`` as a
separate run would: ``metrics.json``, logger events, diagnostics, and best / last checkpoints that
``eval.py`` loads like any other.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from experiments.fused.grouping import CHECKPOINT, PROGRESS_BARS
from experiments.fused.stacked import FusedClassifier, MembersData
from experiments.lit.callbacks import Interrupts, at_logging_step_or_epoch_end
from experiments.lit.checkpoint_io import AtomicCheckpointIO
from experiments.lit.classifier import Classifier
from experiments.lit.diagnostics import log_histograms, unit_stats
from experiments.run.cli import check_config, finish, quiet_lightning
from experiments.run.hparams import log_final
from experiments.run.recipe import build_loggers, build_module, plain, set_threads
from experiments.run.record import Record, first_record, how_it_ran, record_failure

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One job of a fused group: its resolved config and where its results go."""

    job: int
    cfg: DictConfig
    run_dir: Path
    choices: dict[str, str]
    overrides: list[str]
    record: Record | None = None
    loggers: list[Logger] = field(default_factory=list)
    checkpoints: list[ModelCheckpoint] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=lambda: {"epoch_seconds": []})
    latest: dict[str, float] = field(default_factory=dict)
    best: tuple[float, str, dict[str, torch.Tensor]] | None = None  # score, path, weights
    best_monitor: str | None = None
    grad_readings: dict[str, list[float]] = field(default_factory=dict)
    status: str = "running"


class MemberRecords(L.Callback):
    """Each member's run, as a separate run would record it: epoch history, diagnostics, logger events,
    best and last checkpoints, divergence and interruption in ``metrics.json``."""

    def __init__(self, members: list[Member], group: dict[str, Any]) -> None:
        self.members, self.group = members, group
        cfg = members[0].cfg
        diagnostics = cfg.get("diagnostics") or {}
        self.dead = diagnostics.get("dead_units")
        self.grads = diagnostics.get("grad_norms")
        self.histograms = diagnostics.get("histograms")
        self.log_every = int(cfg.trainer.log_every_n_steps)
        self.probes: dict[int, torch.Tensor] = {}
        self.epoch_started = time.perf_counter()
        self.io = AtomicCheckpointIO()

    def _log(self, member: Member, metrics: dict[str, float], step: int) -> None:
        for logger in member.loggers:
            logger.log_metrics(metrics, step=step)

    def _probe(self, trainer: L.Trainer, pl_module: FusedClassifier, size: int) -> torch.Tensor:
        if size not in self.probes:  # the first ``size`` validation images, as the monitors' probe
            self.probes[size] = trainer.datamodule.images("val", size).to(pl_module.device)
        return self.probes[size]

    def _diagnose(self, trainer: L.Trainer, module: FusedClassifier, prefix: str = "") -> list[dict[str, float]]:
        if not self.dead:
            return [{} for _ in self.members]
        probe = self._probe(trainer, module, int(self.dead.probe_size))
        out: list[dict[str, float]] = []
        for k, member in enumerate(self.members):
            if member.status != "running":  # a diverged member's frozen weights tell nothing new
                out.append({})
                continue
            stats = unit_stats(module.member(k).net, probe, float(self.dead.saturation_threshold))
            stats = {key.replace("diag/", f"diag/{prefix}"): v for key, v in stats.items()}
            self._log(member, stats, trainer.global_step)
            out.append(stats)
        return out

    def on_train_start(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        for member, born in zip(self.members, self._diagnose(trainer, pl_module, prefix="born_")):
            member.latest.update({k: v for k, v in born.items() if "/total" in k or "dead" in k})
        self.epoch_started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        self.epoch_started = time.perf_counter()

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: FusedClassifier, optimizer: Any) -> None:
        if not self.grads or trainer.global_step % int(self.grads.every_n_steps):
            return
        layers, totals = pl_module.member_grad_norms()
        names = [f"layer{i}" for i in range(1, pl_module.n_layers)] + ["output"]
        for member, norms, total, alive in zip(
            self.members, layers.tolist(), totals.tolist(), pl_module.alive.tolist()
        ):
            if not alive:
                continue
            stats = {f"grad_norm/{name}": v for name, v in zip(names, norms)}
            stats["grad_norm/total"] = total
            member.latest.update({f"diag/{k}": v for k, v in stats.items()})
            for key, value in stats.items():
                member.grad_readings.setdefault(f"diag/{key}", []).append(value)
            self._log(member, stats, trainer.global_step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: FusedClassifier, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """At the logging interval and each epoch's end (as ``DivergenceGuard``): log, and stop a member
        whose loss is no longer finite."""
        if not at_logging_step_or_epoch_end(trainer, batch_idx, self.log_every):
            return
        assert pl_module.last_losses is not None
        for k, (member, loss) in enumerate(zip(self.members, pl_module.last_losses.tolist())):
            if member.status != "running":
                continue
            if not math.isfinite(loss):
                pl_module.freeze(k)
                member.status = "diverged"
                member.record.data.update(
                    error=f"diverged at epoch {trainer.current_epoch}, step "
                    f"{trainer.global_step}: train loss is {loss}",
                    diverged_epoch=trainer.current_epoch,
                    diverged_step=trainer.global_step,
                )
            elif trainer.global_step % self.log_every == 0:
                self._log(member, {"train/loss": loss}, trainer.global_step)
        if not pl_module.alive.any():
            trainer.should_stop = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        if trainer.sanity_checking:
            pl_module.sums.pop("val", None)
            return
        losses, accs = pl_module.epoch_means("val")
        for k, (member, loss, acc) in enumerate(zip(self.members, losses, accs)):
            if member.status != "running":
                continue
            member.latest.update({"val/loss": loss, "val/acc": acc})
            self._log(member, {"val/loss": loss, "val/acc": acc}, trainer.global_step)
            for ckpt in member.checkpoints:
                if ckpt.monitor:
                    self._keep_best(trainer, pl_module, k, member, ckpt, {"val/loss": loss, "val/acc": acc})

    def _keep_best(
        self,
        trainer: L.Trainer,
        module: FusedClassifier,
        k: int,
        member: Member,
        ckpt: ModelCheckpoint,
        metrics: dict[str, float],
    ) -> None:
        score = metrics[ckpt.monitor]
        if member.best is not None and not (score > member.best[0] if ckpt.mode == "max" else score < member.best[0]):
            return
        names = {"epoch": trainer.current_epoch, "step": trainer.global_step, **metrics}
        path = ckpt.format_checkpoint_name({n: torch.tensor(v) for n, v in names.items()})
        state = self._save(trainer, module, k, member, path)
        if member.best is not None and member.best[1] != path:
            Path(member.best[1]).unlink(missing_ok=True)
        member.best, member.best_monitor = (score, path, state), ckpt.monitor

    def _save(self, trainer: L.Trainer, module: FusedClassifier, k: int, member: Member, path: str) -> dict[str, Any]:
        classifier = module.member(k)
        state = {n: t.detach().cpu().clone() for n, t in classifier.state_dict().items()}
        self.io.save_checkpoint(
            {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "pytorch-lightning_version": L.__version__,
                "state_dict": state,
                "hyper_parameters": dict(classifier.hparams),
                "datamodule_hyper_parameters": {k2: v for k2, v in plain(member.cfg.data).items() if k2 != "_target_"},
                "fused_group": self.group,
            },
            path,
        )
        return state

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        seconds = round(time.perf_counter() - self.epoch_started, 4)
        losses, accs = pl_module.epoch_means("train")
        stats = self._diagnose(trainer, pl_module)
        for k, member in enumerate(self.members):
            if member.status != "running":
                continue
            epoch = {"train/loss": losses[k], "train/acc": accs[k]}
            self._log(member, {"train/loss_epoch": losses[k], "train/acc": accs[k]}, trainer.global_step)
            member.history["epoch_seconds"].append(seconds)
            for name, value in {
                **epoch,
                "val/loss": member.latest.get("val/loss"),
                "val/acc": member.latest.get("val/acc"),
                **stats[k],
            }.items():
                if value is not None:
                    member.history.setdefault(name, []).append(value)
            member.latest.update(stats[k])
            for key, values in member.grad_readings.items():
                member.history.setdefault(key, []).append(sum(values) / len(values))
            member.grad_readings = {}
            if self.histograms and trainer.current_epoch % int(self.histograms.every_n_epochs) == 0:
                writers = [lg.experiment for lg in member.loggers if isinstance(lg, TensorBoardLogger)]
                if writers:
                    probe = self._probe(trainer, pl_module, int(self.histograms.probe_size))
                    log_histograms(
                        writers[0], pl_module.member(k).net, probe, trainer.global_step, int(self.histograms.bins)
                    )
            for ckpt in member.checkpoints:
                if not ckpt.monitor:
                    self._save(
                        trainer,
                        pl_module,
                        k,
                        member,
                        ckpt.format_checkpoint_name(
                            {"epoch": torch.tensor(trainer.current_epoch), "step": torch.tensor(trainer.global_step)}
                        ),
                    )

    def interrupted(self, trainer: L.Trainer, ckpt: Path | None) -> None:
        """Ctrl-C or SIGTERM: every member still training saves its weights and says so."""
        module = trainer.lightning_module
        for k, member in enumerate(self.members):
            if member.status != "running":
                continue
            path = member.run_dir / "checkpoints" / "interrupted.ckpt"
            self._save(trainer, module, k, member, str(path))
            member.status = "interrupted"
            member.record.update(
                status="interrupted",
                interrupted_ckpt=str(path),
                global_step=trainer.global_step,
                error="interrupted during fused training; eval.py loads the checkpoint, a fused run "
                "does not resume: train the job again",
                history=member.history,
            )
        if trainer.is_global_zero:
            print(
                f"\nInterrupted at epoch {trainer.current_epoch}, step {trainer.global_step}; each member's "
                f"weights saved to <job>/checkpoints/interrupted.ckpt",
                flush=True,
            )


def build_members(members: list[Member]) -> tuple[MembersData, list[Classifier]]:
    """The shared data and each member's classifier, seeded as its own run seeds it."""
    first = members[0].cfg
    settings = {k: v for k, v in plain(first.data).items() if k not in ("_target_", "shuffle_seed")}
    data = MembersData([int(m.cfg.data.shuffle_seed) for m in members], **settings)
    data.prepare_data()
    classifiers = []
    for member in members:
        L.seed_everything(member.cfg.seed, workers=True, verbose=False)
        classifiers.append(build_module(member.cfg, data))
    return data, classifiers


def order_members(members: list[Member]) -> tuple[list[Member], list[range]]:
    """Members sorted so that equal optimizer settings are consecutive (one parameter group each),
    and within them equal activations (one call each)."""

    def key(m: Member) -> tuple[str, str]:
        return (json.dumps(plain(m.cfg.optimizer), sort_keys=True), json.dumps(plain(m.cfg.activation), sort_keys=True))

    ordered = sorted(members, key=key)
    groups: list[range] = []
    for i, member in enumerate(ordered):
        if groups and key(ordered[groups[-1].start])[0] == key(member)[0]:
            groups[-1] = range(groups[-1].start, i + 1)
        else:
            groups.append(range(i, i + 1))
    return ordered, groups


def train_members(members: list[Member], group_name: str) -> dict[int, dict[str, Any]]:
    """Train the members as one stacked model and write each one's run directory; returns each
    member's ``metrics.json`` by job number. A Ctrl-C or SIGTERM ends the process as a run's does."""
    members, opt_groups = order_members(members)
    cfg = members[0].cfg
    group = {"name": group_name, "members": len(members), "jobs": [m.job for m in members]}
    for member in members:
        member.record = Record(
            member.run_dir / "metrics.json",
            {**first_record(member.run_dir, member.choices, member.overrides), "fused_group": group},
        )
        member.record.update()
    set_threads(cfg.threads, 1)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))
    data, classifiers = build_members(members)
    module = FusedClassifier(classifiers, opt_groups)
    for member in members:
        member.loggers = build_loggers(member.cfg)
        member.checkpoints = [
            instantiate(c)
            for c in (member.cfg.get("callbacks") or {}).values()
            if c is not None and c.get("_target_") == CHECKPOINT
        ]
    records = MemberRecords(members, group)
    bars = [
        instantiate(c)
        for c in (cfg.get("callbacks") or {}).values()
        if c is not None and c.get("_target_") in PROGRESS_BARS
    ]
    interrupts = Interrupts(None, records.interrupted)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[records, interrupts, *bars],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=bool(bars),
        deterministic=cfg.deterministic,
        default_root_dir=str(members[0].run_dir),
    )
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data)
        for k, member in enumerate(members):  # the test is of each member's best epoch
            if member.best is not None:
                module.load_member(k, member.best[2])
        trainer.test(module, datamodule=data, verbose=False)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C or SIGTERM: exit as a process they end does
        for member in members:  # those records.interrupted did not reach: diverged, or stopped in the test
            if member.record.data["status"] == "running":
                member.record.update(
                    status="diverged" if member.status == "diverged" else "interrupted",
                    history=member.history,
                    **({} if member.status == "diverged" else {"error": "interrupted after training, during the test"}),
                )
        by = interrupts.signal or (signal.SIGTERM if isinstance(exc, SIGTERMException) else signal.SIGINT)
        raise SystemExit(128 + by) from None
    test_losses, test_accs = module.epoch_means("test")
    seconds = round(time.perf_counter() - started, 3)
    results = {}
    for k, member in enumerate(members):
        data_out: dict[str, Any] = {
            "history": member.history,
            **member.latest,
            **how_it_ran(trainer),
            "group_seconds": seconds,
        }
        for name in ("train/loss", "train/acc", "val/loss", "val/acc"):
            if member.history.get(name):
                data_out[name] = member.history[name][-1]
        if member.status == "diverged":
            data_out["status"] = "diverged"
        else:
            data_out.update(
                {
                    "status": "completed",
                    "test/loss": test_losses[k],
                    "test/acc": test_accs[k],
                    "best_ckpt": member.best[1] if member.best else None,
                    "best_val_acc": member.best[0] if member.best and member.best_monitor == "val/acc" else None,
                }
            )
            for logger in member.loggers:
                logger.log_metrics({"test/loss": test_losses[k], "test/acc": test_accs[k]}, step=trainer.global_step)
        result = member.record.update(**data_out)
        if result["status"] == "completed":
            log_final(member.loggers, trainer.global_step, member.cfg, member.choices, result, member.overrides)
        results[member.job] = result
    return results


def prepare_member(cfg: DictConfig) -> Any:
    """A fused launcher's job before it trains with others: ``train_main``'s checks, and the job's
    config resolved while its Hydra context is set. A job that fails them is recorded ``failed``."""
    from experiments.errors import ExperimentError

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = OmegaConf.to_container(hc.overrides.task, resolve=False)
    quiet_lightning()
    try:
        check_config(cfg, hc, multirun=True)
    except ExperimentError as exc:
        record_failure(run_dir, str(exc), overrides)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("job %s failed: %s", run_dir.name, exc)
        return math.nan
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    return Member(
        job=int(hc.job.num), cfg=resolved, run_dir=run_dir, choices=dict(hc.runtime.choices), overrides=overrides
    )


def train_group(group: list[Member], name: str) -> dict[int, float]:
    """Train one fused group; each member's ``optimized_metric`` for the sweeper, by job (NaN where the
    member did not complete). A crash is a bug: every member records it, and the sweep goes on."""
    try:
        results = train_members(group, name)
    except Exception as exc:
        for member in group:
            record_failure(member.run_dir, f"{type(exc).__name__}: {exc}", member.overrides)
        log.error("%s crashed:\n%s", name, traceback.format_exc())
        return {member.job: math.nan for member in group}
    return {member.job: finish(member.cfg, results[member.job], member.run_dir) for member in group}
