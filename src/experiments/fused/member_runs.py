"""A fused group's members at the group loop's hooks: each one's run recorded by a separate run's own code.

Each member gets a separate run's own callbacks (``EpochHistory``, ``DivergenceGuard``, the monitors of its
``diagnostics`` group), and ``MemberRuns`` calls them at the hooks in ``FORWARDED_HOOKS`` with a ``MemberView``
(the group's trainer, seen with the member's own loggers and epoch metrics) and the member's own
``Classifier``, whose layers are views into the stacked weights. Its checkpoint callbacks are its own
``ModelCheckpoint``s, called at those hooks and at ``CHECKPOINT_HOOKS``: they name, choose and remove its
checkpoints, and write them through the view, which has the group's trainer save the member's own classifier
(``FusedClassifier.saving``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from experiments.fused.stacked import FusedClassifier
from experiments.lit.callbacks import Diverged, DivergenceGuard, EpochHistory, epoch_label
from experiments.lit.metrics import compute
from experiments.lit.pruning import TrialPruning
from experiments.names import Status
from experiments.run.hparams import plain
from experiments.run.outcome import diverged, history_of, pruned
from experiments.run.record import Record
from experiments.run_dir import finish_command, sweep_dir_of_job

# The hooks at which MemberRuns calls each member's own callbacks; a callback that uses another runs alone.
FORWARDED_HOOKS = frozenset(
    {
        "setup",
        "on_train_start",
        "on_train_epoch_start",
        "on_before_optimizer_step",
        "on_train_batch_end",
        "on_train_epoch_end",
        "on_train_end",
    }
)
# Called on the members' ModelCheckpoints only, which grouping.py lets fuse by their settings: other callbacks
# that use them (EarlyStopping sets trainer.should_stop, which a view cannot pass on to the group) run alone.
CHECKPOINT_HOOKS = frozenset({"on_validation_end", "on_exception"})


class MemberView:
    """What a separate run's callbacks read of their trainer, for one member: the group's loop (its step,
    epoch, data, batches), with the member's own loggers and epoch metrics, saving the member's checkpoints."""

    def __init__(self, trainer: L.Trainer, k: int, loggers: list[Logger], checkpoint_extra: dict[str, Any]) -> None:
        self.trainer, self.k, self.loggers, self.checkpoint_extra = trainer, k, loggers, checkpoint_extra
        self.callback_metrics: dict[str, torch.Tensor] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.trainer, name)

    def log(self, metrics: dict[str, float]) -> None:
        """What the member's LightningModule would log: to its loggers, and for its callbacks to read."""
        self.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.trainer.global_step)

    def save_checkpoint(self, filepath: str | Path, weights_only: bool = False, storage_options: Any = None) -> None:
        """Member ``k``'s checkpoint, by the group trainer's own checkpoint code: weights only, whatever the
        callback asks (a member's optimizer state is a slice of the group's, and a fused run does not resume)."""
        module: FusedClassifier = self.trainer.lightning_module
        module.saving = (self.k, self.checkpoint_extra)
        try:
            self.trainer.save_checkpoint(filepath, weights_only=True, storage_options=storage_options)
        finally:
            module.saving = None


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
    outcome: dict[str, Any] | None = None  # set once it stops training: diverged, pruned, or interrupted
    trial: Any = None  # a trial of an Optuna search (prepare_member opens it)
    pruning: TrialPruning | None = None  # that trial's reports to its study, which may prune it

    def callbacks(self) -> list[L.Callback]:
        """A separate run's own callbacks, in the order its trainer calls them (checkpoints last, as Lightning
        orders them)."""
        guard = DivergenceGuard(int(self.cfg.trainer.log_every_n_steps))
        return [*self.monitors, self.history, guard, *self.checkpoints]


class MemberRuns(L.Callback):
    """Calls each member's own callbacks at the group's hooks, with its view and its own module; logs its
    metrics; stops a member that diverged."""

    def __init__(self, members: list[Member], group: dict[str, Any]) -> None:
        self.members, self.group = members, group
        self.callbacks = [m.callbacks() for m in members]

    def _each(self, hook: str, trainer: L.Trainer, module: FusedClassifier, *args: Any) -> None:
        assert hook in FORWARDED_HOOKS | CHECKPOINT_HOOKS, hook  # what grouping.py lets fuse is what is called here
        for k, member in enumerate(self.members):
            if member.outcome is None:
                for callback in self.callbacks[k] if hook in FORWARDED_HOOKS else member.checkpoints:
                    getattr(callback, hook)(member.view, module.member(k), *args)

    def setup(self, trainer: L.Trainer, pl_module: FusedClassifier, stage: str) -> None:
        for k, member in enumerate(self.members):
            data = {n: v for n, v in plain(member.cfg.data).items() if n != "_target_"}
            extra = {"datamodule_hyper_parameters": data, "fused_group": self.group}
            member.view = MemberView(trainer, k, member.loggers, extra)
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
        measured = [compute("val", pl_module.member(k).measures["val"]) for k in range(len(self.members))]
        if trainer.sanity_checking:
            pl_module.sums.pop("val", None)
            return
        for member, loss, values in zip(self.members, pl_module.epoch_means("val")[0], measured):
            if member.outcome is None:
                member.view.log({"val/loss": loss, **values})

    def on_validation_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        self._each("on_validation_end", trainer, pl_module)
        for k, member in enumerate(self.members):  # each trial reports its own validation; its pruner decides
            if member.outcome is None and member.pruning is not None:
                member.pruning.on_validation_end(member.view, pl_module.member(k))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        for member, loss, acc in zip(self.members, *pl_module.epoch_means("train")):
            if member.outcome is None:
                member.view.log({"train/loss_epoch": loss, "train/acc": acc})
        self._each("on_train_epoch_end", trainer, pl_module)
        for k, member in enumerate(self.members):  # a pruned member stops after its epoch; the others train on
            if member.outcome is None and member.pruning is not None and member.pruning.pruned_after is not None:
                pl_module.freeze(k)
                member.history.on_train_end(member.view, pl_module.member(k))  # its training ends: its last epoch
                member.outcome = pruned(member.pruning.pruned_after, history_of(member.history, member.monitors))
        if not pl_module.alive.any():
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: FusedClassifier) -> None:
        self._each("on_train_end", trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: FusedClassifier, exception: BaseException) -> None:
        self._each("on_exception", trainer, pl_module, exception)

    def interrupted(self, trainer: L.Trainer, ckpt: Path | None) -> None:
        """Ctrl-C or SIGTERM: every member still training saves its weights and says so."""
        for member in self.members:
            if member.outcome is not None:
                continue
            path = member.run_dir / "checkpoints" / "interrupted.ckpt"
            member.view.save_checkpoint(path)
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
                f"\nInterrupted in epoch {epoch_label(trainer)}, step {trainer.global_step}; each member's "
                f"weights saved to <job>/checkpoints/interrupted.ckpt. Finish the sweep (these jobs run again) with:"
                f"\n  {finish_command(sweep_dir_of_job() or Path('<sweep_dir>'))}",
                flush=True,
            )
