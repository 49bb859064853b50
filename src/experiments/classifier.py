"""The LightningModule: network, loss and optimizer, each built from its own config group.

Hyperparameters are stored as plain dicts (``save_hyperparameters``), so a checkpoint rebuilds the
exact model with ``Classifier.load_from_checkpoint(path)`` under PyTorch's ``weights_only`` loading.
Metrics are torchmetrics objects accumulated on the device and read once per epoch.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from experiments.activations import activation_factory
from experiments.data import capped
from experiments.losses import check_output_activation
from experiments.model import MLP
from experiments.optimizers import build_optimizer, build_scheduler

Batch = tuple[torch.Tensor, torch.Tensor]


class Classifier(L.LightningModule):
    """Optimizes itself (Lightning's manual optimization): one optimizer step per mini-batch, and
    several mini-batches per ``training_step`` call when the loader groups them (``steps_per_execution``).

    Lightning's per-call bookkeeping (hooks of every callback, progress counters, logger checks) costs
    about 0.6 ms, a third of a whole step of this MLP on a laptop CPU; grouping pays it once per group.
    Everything counted in steps stays in optimizer steps: ``global_step``, logging and gradient-norm
    intervals, schedules, checkpoints, the TensorBoard x-axis.
    """

    def __init__(self, model: dict[str, Any], activation: dict[str, Any], loss: dict[str, Any],
                 optimizer: dict[str, Any], scheduler: dict[str, Any] | None = None,
                 input_size: int = 784, num_classes: int = 10, gradient_clip_val: float | None = None,
                 gradient_clip_algorithm: str = "norm") -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # the run logs them with final metrics (HParams tab)
        self.automatic_optimization = False
        self.net = MLP(input_size, num_classes, activation=activation_factory(activation), **model)
        self.loss_fn = instantiate(loss)
        verdict = check_output_activation(model.get("output_activation", "none"), self.loss_fn)
        if verdict and verdict.startswith("refuse"):
            raise ValueError(verdict.removeprefix("refuse: "))
        if verdict:
            warnings.warn(verdict.removeprefix("warn: "), UserWarning, stacklevel=2)
        # validate_args=False: the input checks cost a host sync per step on a GPU
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric(nan_strategy="disable")  # the divergence guard watches for NaN
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Batch | list[Batch], batch_idx: int) -> torch.Tensor | None:
        """One optimizer step per mini-batch; the loss is logged at the steps that are multiples of
        ``log_every_n_steps``, and metrics accumulate on the device (no host sync in between)."""
        trainer = self.trainer
        optimizer = self.optimizers()
        every = trainer.log_every_n_steps
        outs, targets, losses = [], [], []
        for x, y in [batch] if isinstance(batch, tuple) else batch:
            if 0 < trainer.max_steps <= trainer.global_step:
                break
            out = self.net(x)
            loss = self.loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            optimizer.step()  # Lightning's wrapper: counts global_step, calls on_before_optimizer_step
            self._step_schedulers("step", trainer.global_step)
            outs.append(out.detach())
            targets.append(y)
            losses.append(loss.detach())
            if trainer.global_step % every == 0:
                self._log_step_loss(losses[-1], trainer.global_step)
        if losses:
            self._update_train_metrics(outs, targets, losses)
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._step_schedulers("epoch", trainer.current_epoch + 1)
        # Lightning's logger x-axis counts calls; count optimizer steps, as global_step does
        trainer.fit_loop.epoch_loop._batches_that_stepped += max(len(losses) - 1, 0)
        return losses[-1] if losses else None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # where Lightning clips under automatic optimization: callbacks have seen the unclipped gradients
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, self.hparams.gradient_clip_algorithm)

    def _update_train_metrics(self, outs: list[torch.Tensor], targets: list[torch.Tensor],
                              losses: list[torch.Tensor]) -> None:
        """Once per call, not per step: a torchmetrics update costs as much as a tenth of a step."""
        self.train_acc.update(torch.cat(outs), torch.cat(targets))
        stacked = torch.stack(losses)
        # weights as device tensors: a Python number would be copied to the GPU, a sync per call
        weights = torch.full_like(stacked, len(targets[0]))
        if len(targets[-1]) != len(targets[0]):  # the epoch's last, shorter batch
            weights[-1].fill_(len(targets[-1]))
        self.train_loss.update(stacked, weights)

    def _log_step_loss(self, loss: torch.Tensor, step: int) -> None:
        # written here: Lightning writes step metrics only when a call ends on a logging step
        if self.logger is not None:
            self.logger.log_metrics({"train/loss": float(loss)}, step=step)
        # for the progress bar and callbacks, which read it from callback_metrics when they need it
        self.log("train/loss", loss, on_step=True, on_epoch=False, logger=False)

    def _step_schedulers(self, interval: str, count: int) -> None:
        """What Lightning does for ``lr_scheduler`` dicts under automatic optimization."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval and count % config.frequency == 0:
                config.scheduler.step()

    def on_train_epoch_end(self) -> None:
        sync = self.trainer.world_size > 1
        self.log("train/loss_epoch", self.train_loss.compute(), sync_dist=sync)
        self.log("train/acc", self.train_acc.compute(), sync_dist=sync)
        self.train_loss.reset()
        self.train_acc.reset()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, acc: MulticlassAccuracy) -> None:
        x, y = batch
        out = self.net(x)
        acc.update(out, y)  # argmax of outputs: the same class whatever the output activation
        sync = self.trainer.world_size > 1  # means over every rank's share
        self.log(f"{stage}/loss", self.loss_fn(out, y), on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=sync)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.hparams.optimizer, self.parameters())
        total = self._total_steps() if (self.hparams.scheduler or {}).get("_target_") else 0
        scheduler = build_scheduler(self.hparams.scheduler, optimizer, total)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _total_steps(self) -> int:
        """Optimizer steps in the whole run, for per-batch schedules.

        Not ``trainer.estimated_stepping_batches``: called here it builds the trainer's train loader
        before a checkpoint is restored, and a mid-epoch resume then loses the loader's position.
        """
        trainer = self.trainer
        loader = trainer.datamodule.train_dataloader()
        items = capped(len(loader), trainer.limit_train_batches)  # Lightning's limit counts items (groups)
        steps = min(loader.num_batches, items * loader.group) * max(trainer.max_epochs or 1, 1)
        return min(steps, trainer.max_steps) if trainer.max_steps > 0 else steps


class UnsafeCheckpoint(ValueError):
    """A checkpoint that would need arbitrary unpickling to load: refused, never executed."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpoint(
            f"{path}: refusing to load, the checkpoint holds objects that only arbitrary unpickling could "
            f"rebuild ({str(exc).splitlines()[0]}). Checkpoints written by this project contain only tensors and "
            f"plain containers; load this one only if you trust its source, outside this tool."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0]}); it may be truncated") from None


def load_classifier(path: str | Path) -> Classifier:
    """The model of a checkpoint, rebuilt from its saved hyperparameters, in one safe read."""
    checkpoint = read_checkpoint(path)
    module = Classifier(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module
