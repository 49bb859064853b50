"""The LightningModule: network, loss and optimizer, each built from its own config group.

Hyperparameters are stored as plain dicts (``save_hyperparameters``), so a checkpoint rebuilds the exact
model with ``Classifier.load_from_checkpoint(path, weights_only=True)``; every class they name is checked
against the catalogue of ``conf/`` (``config/catalogue.py``) when it is built. Metrics are torchmetrics
objects, accumulated on the device.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from experiments import names
from experiments.config import catalogue
from experiments.lit.metrics import build_measures, logged, update
from experiments.nn.activations import activation_factory
from experiments.nn.losses import check_output_activation
from experiments.nn.optimizers import build_optimizer, build_scheduler

Batch = tuple[torch.Tensor, torch.Tensor]


class Classifier(L.LightningModule):
    """The course's classifier under Lightning's automatic optimization: ``training_step`` returns the
    loss; Lightning steps the optimizer, clips gradients (``trainer.gradient_clip_val``) and steps the
    schedule as its ``interval`` says."""

    def __init__(
        self,
        model: dict[str, Any],
        activation: dict[str, Any],
        loss: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        input_size: int = 784,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        sections = {"model": model, "activation": activation, "loss": loss, "optimizer": optimizer}
        for group in names.group_names(network=True):  # what a checkpoint rebuilds: each class from conf/
            cfg = sections[group]
            catalogue.check(group, cfg)
        if scheduler and scheduler.get("scheduler"):
            catalogue.check("scheduler", scheduler["scheduler"])
        self.save_hyperparameters(logger=False)  # the run logs them with final metrics (HParams tab)
        self.net = instantiate(model, _partial_=True)(
            input_size=input_size, num_classes=num_classes, activation=activation_factory(activation)
        )
        self.loss_fn = instantiate(loss)
        verdict = check_output_activation(model.get("output_activation", "none"), loss["_target_"])
        if verdict and not verdict.refuse:  # the refusals are config checks, made before this
            warnings.warn(verdict.message, UserWarning, stacklevel=2)
        # No per-step input checks: they cost a host sync per step on a GPU (DivergenceGuard watches for NaN).
        # The running sums go into checkpoints (persistent), so an epoch interrupted and resumed ends with
        # the means over all its batches, as an uninterrupted one does.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric(nan_strategy="disable")
        for metric in (self.train_acc, self.train_loss):
            metric.persistent(True)
        # the validation and test measures (accuracy, macro F1): names.METRICS defines them, for the fused path too
        self.measures = nn.ModuleDict({stage: build_measures(stage, num_classes) for stage in ("val", "test")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self.net(x)
        loss = self.loss_fn(out, y)
        self.train_acc.update(out.detach(), y)
        # the batch mean once per example, so the epoch's mean is per example (MeanMetric ignores its
        # weight argument under nan_strategy="disable", the setting without a NaN check's host sync)
        self.train_loss.update(loss.detach().expand(len(y)))
        # Only at the steps Lightning writes to the loggers (every trainer.log_every_n_steps): each self.log
        # goes through Lightning's result bookkeeping, a cost of the order of this small MLP's whole step.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # the epoch's means, logged once (logging the metric objects would cost a self.log every step)
        self.log("train/loss_epoch", self.train_loss.compute())
        self.log("train/acc", self.train_acc.compute())
        self.train_loss.reset()
        self.train_acc.reset()

    def _eval_step(self, batch: Batch, stage: str) -> None:
        x, y = batch
        out = self.net(x)
        update(self.measures[stage], out, y)  # argmax of outputs: the same class whatever the output activation
        sync = self.trainer.world_size > 1  # means over every rank's share
        bar = {m.logged for m in names.METRICS if m.bar}
        loss = self.loss_fn(out, y)
        self.log(
            f"{stage}/loss", loss, on_epoch=True, prog_bar=f"{stage}/loss" in bar, batch_size=len(y), sync_dist=sync
        )
        for name, metric in logged(stage, self.measures[stage]).items():  # torchmetrics syncs the ranks itself
            self.log(name, metric, on_epoch=True, prog_bar=name in bar)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.hparams.optimizer, self.parameters())
        scheduler = build_scheduler(self.hparams.scheduler, optimizer, *run_length(self.trainer))
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}


def run_length(trainer: L.Trainer) -> tuple[int, int]:
    """Optimizer steps and epochs in the whole run, for schedules that span it.

    Not ``trainer.estimated_stepping_batches``: called from ``configure_optimizers`` it builds the
    trainer's train loader before a checkpoint is restored, and a mid-epoch resume then loses the
    loader's position.
    """
    per_epoch, limit = len(trainer.datamodule.train_dataloader()), trainer.limit_train_batches
    if isinstance(limit, int):
        per_epoch = min(per_epoch, limit)
    elif limit is not None and limit < 1.0:
        per_epoch = max(1, int(per_epoch * limit))
    epochs = max(trainer.max_epochs or 1, 1)
    steps = per_epoch * epochs
    return (min(steps, trainer.max_steps) if trainer.max_steps > 0 else steps), epochs
