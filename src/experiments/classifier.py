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
from experiments.losses import check_output_activation
from experiments.model import MLP
from experiments.optimizers import build_optimizer, build_scheduler


class Classifier(L.LightningModule):
    def __init__(self, model: dict[str, Any], activation: dict[str, Any], loss: dict[str, Any],
                 optimizer: dict[str, Any], scheduler: dict[str, Any] | None = None,
                 input_size: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # the run logs them with final metrics (HParams tab)
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

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Accumulates on the device; calls ``self.log`` only at the logging interval.

        ``self.log`` costs about a millisecond per call in Lightning's result bookkeeping, more than a
        whole step of this MLP, and the logger only writes every ``log_every_n_steps`` anyway.
        """
        x, y = batch
        out = self.net(x)
        loss = self.loss_fn(out, y)
        self.train_acc.update(out.detach(), y)
        # the weight as a device tensor: a Python int would be copied to the GPU, a sync per step
        self.train_loss.update(loss.detach(), torch.full_like(loss.detach(), len(y)))
        if (self.trainer.fit_loop.epoch_loop._batches_that_stepped + 1) % self.trainer.log_every_n_steps == 0:
            # not prog_bar=True: Lightning would read it back to the host after every step; the
            # progress bar reads it from callback_metrics when it redraws
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False)
        return loss

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
        batches = len(trainer.datamodule.train_dataloader())
        limit = trainer.limit_train_batches
        batches = min(batches, int(limit)) if isinstance(limit, int) else max(1, int(batches * limit))
        steps = batches // trainer.accumulate_grad_batches * max(trainer.max_epochs or 1, 1)
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
