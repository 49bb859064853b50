"""A fused group's members: each one's run, recorded as a separate run records it, by the same code.

Each member gets a separate run's own callbacks (``EpochHistory``, ``DivergenceGuard``, the monitors of its
``diagnostics`` group), built from its config by the recipe's own builders, and ``MemberRuns`` calls them at
the group loop's hooks with a ``MemberView`` (the group's trainer, seen with the member's own loggers and
metrics) and the member's own ``Classifier``, whose layers are views into the stacked weights. What they
record goes to the member's ``metrics.json`` through the run's record writer; its checkpoints are its own
``Classifier``'s, named by its checkpoint callbacks. Which jobs may fuse: ``grouping.py``.
"""

from __future__ import annotations

import json
import logging
import math
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
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from experiments.errors import ExperimentError
from experiments.fused.stacked import FusedClassifier, MembersData
from experiments.lit.callbacks import Diverged, DivergenceGuard, EpochHistory, Interrupts
from experiments.lit.checkpoint_io import AtomicCheckpointIO
from experiments.lit.classifier import Classifier
from experiments.names import Status
from experiments.run.cli import check_config, finish, quiet_lightning, user_error
from experiments.run.hparams import log_final, plain
from experiments.run.recipe import (
    build_entries,
    build_loggers,
    build_module,
    diverged,
    history_of,
    how_it_ran,
    set_threads,
    trained,
)
from experiments.run.record import Record, first_record, record_failure

log = logging.getLogger(__name__)


class MemberView:
    """What a separate run's callbacks read of their trainer, for one member: the group's loop (its step,
    epoch, data, batches), with the member's own loggers and epoch metrics."""

    def __init__(self, trainer: L.Trainer, loggers: list[Logger]) -> None:
        self.trainer, self.loggers = trainer, loggers
        self.callback_metrics: dict[str, torch.Tensor] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trainer, name)

    def log(self, metrics: dict[str, float]) -> None:
        """What the member's LightningModule would log: to its loggers, and for its callbacks to read."""
        self.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.trainer.global_step)


@dataclass
class Member:
    """One job of a fused group: its resolved config, where its results go, and its run's parts."""

    job: int
    cfg: DictConfig
    run_dir: Path
    choices: dict[str, str]
    overrides: list[str]
    record: Record | None = None
    loggers: list[Logger] = field(default_factory=list)
    checkpoints: list[ModelCheckpoint] = field(default_factory=list)
    history: EpochHistory = field(default_factory=EpochHistory)
    monitors: list[L.Callback] = field(default_factory=list)
    view: MemberView | None = None
    best: tuple[float, str, dict[str, torch.Tensor]] | None = None  # score, path, weights
    outcome: dict[str, Any] | None = None  # set once it stops training: diverged, or interrupted

    def callbacks(self) -> list[L.Callback]:
        """A separate run's own callbacks, in the order its trainer calls them."""
        return [*self.monitors, self.history, DivergenceGuard(int(self.cfg.trainer.log_every_n_steps))]


class MemberRuns(L.Callback):
    """Calls each member's own callbacks at the group's hooks, with its view and its own module; keeps its
    best and last checkpoints as its checkpoint callbacks name them; stops a member that diverged."""

    def __init__(self, members: list[Member], group: dict[str, Any]) -> None:
        self.members, self.group = members, group
        self.callbacks = [m.callbacks() for m in members]
        self.io = AtomicCheckpointIO()

    def _each(self, hook: str, trainer: L.Trainer, module: FusedClassifier, *args: Any) -> None:
        for k, member in enumerate(self.members):
            if member.outcome is None:
                for callback in self.callbacks[k]:
                    getattr(callback, hook)(member.view, module.member(k), *args)

    def setup(self, trainer: L.Trainer, pl_module: FusedClassifier, stage: str) -> None:
        for member in self.members:
            member.view = MemberView(trainer, member.loggers)
        self._each("setup", trainer, pl_module, stage)

    def on_train_start(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        self._each("on_train_start", trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        self._each("on_train_epoch_start", trainer, pl_module)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: FusedClassifier, optimizer: Any) -> None:
        pl_module.bind_grads()
        self._each("on_before_optimizer_step", trainer, pl_module, optimizer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: FusedClassifier, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert pl_module.last_losses is not None
        every = trainer.log_every_n_steps
        for k, (member, loss) in enumerate(zip(self.members, pl_module.last_losses)):
            if member.outcome is not None:
                continue
            if trainer.global_step % every == 0:  # as the classifier logs train/loss
                member.view.log({"train/loss": float(loss)})
            try:
                for callback in self.callbacks[k]:
                    callback.on_train_batch_end(member.view, pl_module.member(k), {"loss": loss}, batch, batch_idx)
            except Diverged as exc:  # this member stops where it is; the others train on
                pl_module.freeze(k)
                member.outcome = diverged(exc, history_of(member.history, member.monitors))
        if not pl_module.alive.any():
            trainer.should_stop = True

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        if trainer.sanity_checking:
            pl_module.sums.pop("val", None)
            return
        for k, (member, loss, acc) in enumerate(zip(self.members, *pl_module.epoch_means("val"))):
            if member.outcome is None:
                member.view.log({"val/loss": loss, "val/acc": acc})
                for ckpt in (c for c in member.checkpoints if c.monitor):
                    self._keep_best(trainer, pl_module, k, ckpt)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        for member, loss, acc in zip(self.members, *pl_module.epoch_means("train")):
            if member.outcome is None:
                member.view.log({"train/loss_epoch": loss, "train/acc": acc})
        self._each("on_train_epoch_end", trainer, pl_module)
        epoch = {"epoch": torch.tensor(trainer.current_epoch), "step": torch.tensor(trainer.global_step)}
        for k, member in enumerate(self.members):
            for ckpt in (c for c in member.checkpoints if not c.monitor and member.outcome is None):
                self._save(trainer, pl_module, k, ckpt.format_checkpoint_name(epoch))

    def on_train_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        self._each("on_train_end", trainer, pl_module)

    def _keep_best(self, trainer: L.Trainer, module: FusedClassifier, k: int, ckpt: ModelCheckpoint) -> None:
        """The best epoch by the checkpoint's monitor, as ``ModelCheckpoint(save_top_k=1)`` keeps it."""
        member, metrics = self.members[k], self.members[k].view.callback_metrics
        score = float(metrics[ckpt.monitor])
        if member.best is not None and not (score > member.best[0] if ckpt.mode == "max" else score < member.best[0]):
            return
        path = ckpt.format_checkpoint_name(
            {"epoch": torch.tensor(trainer.current_epoch), "step": torch.tensor(trainer.global_step), **metrics}
        )
        state = self._save(trainer, module, k, path)
        if member.best is not None and member.best[1] != path:
            Path(member.best[1]).unlink(missing_ok=True)
        member.best = (score, path, state)

    def _save(self, trainer: L.Trainer, module: FusedClassifier, k: int, path: str) -> dict[str, Any]:
        """The member's own classifier's weights and hyperparameters, in a checkpoint eval.py loads."""
        classifier, member = module.member(k), self.members[k]
        state = {n: t.detach().cpu().clone() for n, t in classifier.state_dict().items()}
        self.io.save_checkpoint(
            {
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
                "pytorch-lightning_version": L.__version__,
                "state_dict": state,
                "hyper_parameters": dict(classifier.hparams),
                "datamodule_hyper_parameters": {n: v for n, v in plain(member.cfg.data).items() if n != "_target_"},
                "fused_group": self.group,
            },
            path,
        )
        return state

    def interrupted(self, trainer: L.Trainer, ckpt: Path | None) -> None:
        """Ctrl-C or SIGTERM: every member still training saves its weights and says so."""
        for k, member in enumerate(self.members):
            if member.outcome is not None:
                continue
            path = member.run_dir / "checkpoints" / "interrupted.ckpt"
            self._save(trainer, trainer.lightning_module, k, str(path))
            member.outcome = {
                "status": Status.INTERRUPTED,
                "interrupted_ckpt": str(path),
                "global_step": trainer.global_step,
                "history": history_of(member.history, member.monitors),
                "error": "interrupted during fused training; eval.py loads the checkpoint, a fused run "
                "does not resume: train the job again",
            }
            member.record.update(**member.outcome)
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
        data = {**first_record(member.run_dir, member.choices, member.overrides), "fused_group": group}
        member.record = Record(member.run_dir / "metrics.json", data)
        member.record.update()
    set_threads(cfg.threads, 1)
    torch.use_deterministic_algorithms(bool(cfg.deterministic))
    data, classifiers = build_members(members)
    module = FusedClassifier(classifiers, opt_groups)
    for member in members:  # the parts of a separate run, built by the recipe's own builders
        member.loggers = build_loggers(member.cfg)
        member.monitors = build_entries(member.cfg, "diagnostics")
        member.checkpoints = [c for c in build_entries(member.cfg, "callbacks") if isinstance(c, ModelCheckpoint)]
    runs = MemberRuns(members, group)
    bars = [c for c in build_entries(cfg, "callbacks") if isinstance(c, ProgressBar)]
    interrupts = Interrupts(None, runs.interrupted)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[runs, interrupts, *bars],
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
                module.member(k).load_state_dict(member.best[2])
        trainer.test(module, datamodule=data, verbose=False)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C or SIGTERM: exit as a process they end does
        for member in members:  # those runs.interrupted did not reach: diverged, or stopped in the test
            if member.record.data["status"] == Status.RUNNING:
                history = history_of(member.history, member.monitors)
                stopped = {"status": Status.INTERRUPTED, "error": "interrupted after training, during the test"}
                member.record.update(**(member.outcome or {**stopped, "history": history}))
        by = interrupts.signal or (signal.SIGTERM if isinstance(exc, SIGTERMException) else signal.SIGINT)
        raise SystemExit(128 + by) from None
    test = dict(zip(("test/loss", "test/acc"), module.epoch_means("test")))
    seconds = round(time.perf_counter() - started, 3)
    results = {}
    for k, member in enumerate(members):
        outcome = member.outcome or trained(history_of(member.history, member.monitors))
        if outcome["status"] == Status.TRAINED:
            tested = {name: values[k] for name, values in test.items()}
            for logger in member.loggers:
                logger.log_metrics(tested, step=trainer.global_step)
            monitored = [c.monitor for c in member.checkpoints if c.monitor]
            best = member.best if member.best and monitored[0] == "val/acc" else None
            outcome.update(
                tested,
                status=Status.COMPLETED,
                best_ckpt=member.best[1] if member.best else None,
                best_val_acc=best[0] if best else None,
            )
        for monitor in (m for m in member.monitors if hasattr(m, "latest")):
            outcome.update(monitor.latest)
        result = member.record.update(**outcome, **how_it_ran(trainer), group_seconds=seconds)
        if result["status"] == Status.COMPLETED:
            log_final(member.loggers, trainer.global_step, member.cfg, member.choices, result, member.overrides)
        results[member.job] = result
    return results


def prepare_member(cfg: DictConfig) -> Any:
    """A fused launcher's job before it trains with others: ``train_main``'s checks, and the job's
    config resolved while its Hydra context is set. A job that fails them is recorded ``failed``."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = OmegaConf.to_container(hc.overrides.task, resolve=False)
    quiet_lightning()
    try:
        check_config(cfg, hc, multirun=True)
    except ExperimentError as exc:
        return user_error(exc, run_dir, overrides, multirun=True)
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
