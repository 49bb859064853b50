"""The LightningModule: network, loss and optimizer, each built from its own config group.

Hyperparameters are stored as plain dicts (``save_hyperparameters``), so a checkpoint rebuilds the
exact model with ``Classifier.load_from_checkpoint(path, weights_only=True)``; every class they name
is checked against the catalogue of ``conf/`` first (``catalogue.py``), so a crafted checkpoint cannot
make the rebuild call anything else. Metrics are torchmetrics objects, accumulated on the device.
"""

from __future__ import annotations

import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from experiments import catalogue
from experiments.activations import activation_factory
from experiments.errors import CheckpointError
from experiments.losses import check_output_activation
from experiments.optimizers import build_optimizer, build_scheduler

Batch = tuple[torch.Tensor, torch.Tensor]
GROUPS = ("model", "activation", "loss", "optimizer")


class Classifier(L.LightningModule):
    """The course's classifier under Lightning's automatic optimization: ``training_step`` returns the
    loss; Lightning steps the optimizer, clips gradients (``trainer.gradient_clip_val``) and steps the
    schedule as its ``interval`` says."""

    def __init__(self, model: dict[str, Any], activation: dict[str, Any], loss: dict[str, Any],
                 optimizer: dict[str, Any], scheduler: dict[str, Any] | None = None,
                 input_size: int = 784, num_classes: int = 10) -> None:
        super().__init__()
        for group, cfg in zip(GROUPS, (model, activation, loss, optimizer)):
            catalogue.check(group, cfg)
        if scheduler and scheduler.get("scheduler"):
            catalogue.check("scheduler", scheduler["scheduler"])
        self.save_hyperparameters(logger=False)  # the run logs them with final metrics (HParams tab)
        self.net = instantiate(model, _partial_=True)(input_size=input_size, num_classes=num_classes,
                                                       activation=activation_factory(activation))
        self.loss_fn = instantiate(loss)
        verdict = check_output_activation(model.get("output_activation", "none"), loss["_target_"])
        if verdict and verdict.startswith("warn: "):  # the refusals are config checks, made before this
            warnings.warn(verdict.removeprefix("warn: "), UserWarning, stacklevel=2)
        # No per-step input checks: they cost a host sync per step on a GPU (DivergenceGuard watches for NaN).
        # The running sums go into checkpoints (persistent), so an epoch interrupted and resumed ends with
        # the means over all its batches, as an uninterrupted one does.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss = MeanMetric(nan_strategy="disable")
        for metric in (self.train_acc, self.train_loss):
            metric.persistent(True)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

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
        # Only at the steps Lightning writes to the loggers (every trainer.log_every_n_steps): one self.log
        # costs about 0.8 ms in Lightning's result bookkeeping, half a training step of this MLP on a CPU.
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_train_epoch_end(self) -> None:
        # the epoch's means, logged once (logging the metric objects would cost a self.log every step)
        self.log("train/loss_epoch", self.train_loss.compute())
        self.log("train/acc", self.train_acc.compute())
        self.train_loss.reset()
        self.train_acc.reset()

    def _eval_step(self, batch: Batch, stage: str, acc: MulticlassAccuracy) -> None:
        x, y = batch
        out = self.net(x)
        acc.update(out, y)  # argmax of outputs: the same class whatever the output activation
        sync = self.trainer.world_size > 1  # means over every rank's share
        self.log(f"{stage}/loss", self.loss_fn(out, y), on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=sync)
        self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

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


def _names_objects(path: str | Path) -> bool:
    """Whether the file is a pickle (or a torch zip around one) that names Python callables to rebuild
    objects with: what ``weights_only`` refuses for safety, as opposed to bytes that are no pickle at all."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                raw = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        else:
            raw = Path(path).read_bytes()
        return any(op.name in _OBJECT_OPCODES for op, _, _ in pickletools.genops(raw))
    except Exception:  # not a pickle: nothing in it could run
        return False


_OBJECT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` (tensors and plain containers only), and a checkpoint's shape."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever the bytes are, reading them is refused with what they are
        if isinstance(exc, pickle.UnpicklingError) and _names_objects(path):
            raise CheckpointError(
                f"{path}: refusing to load, the file holds objects that only arbitrary unpickling could rebuild; "
                f"checkpoints written by this project contain only tensors and plain containers. Load it only if "
                f"you trust its source, outside this tool."
            ) from None
        detail = str(exc).splitlines()[0][:160] if str(exc).strip() else "no detail"
        raise CheckpointError(f"{path}: not a checkpoint, or a truncated one ({type(exc).__name__}: {detail})") from None
    missing = [k for k in ("state_dict", "hyper_parameters") if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        kind = "a dict" if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: not a checkpoint of this project ({kind} without {' or '.join(missing)})")
    hparams = checkpoint["hyper_parameters"]
    for group in GROUPS:
        catalogue.check(group, hparams.get(group), source=str(path))
    if (hparams.get("scheduler") or {}).get("scheduler"):
        catalogue.check("scheduler", hparams["scheduler"]["scheduler"], source=str(path))
    return checkpoint


def resume_mismatches(checkpoint: dict[str, Any], hparams: dict[str, Any]) -> list[str]:
    """What of the network, its optimizer or its input scaling differs between a checkpoint and the run that
    would resume it: the weights or the optimizer state would not fit, or would meet other inputs."""
    saved = checkpoint["hyper_parameters"]
    found = []
    for group in ("model", "activation"):
        for key in sorted(set(saved.get(group) or {}) | set(hparams.get(group) or {})):
            was, now = (saved.get(group) or {}).get(key), (hparams.get(group) or {}).get(key)
            if was != now and key not in ("init", "bias_init", "dropout"):  # these leave the weights' shapes
                found.append(f"{group}.{key}: {was!r} in the checkpoint, {now!r} in this run")
    for group in ("optimizer", "loss"):
        was, now = (saved.get(group) or {}).get("_target_"), (hparams.get(group) or {}).get("_target_")
        if was != now:
            found.append(f"{group}: {was} in the checkpoint, {now} in this run")
    # weights trained on pixels scaled one way do not continue on pixels scaled another
    was = (checkpoint.get("datamodule_hyper_parameters") or {}).get("normalize")
    now = (hparams.get("data") or {}).get("normalize")
    if was is not None and "data" in hparams and was != now:
        found.append(f"data.normalize: {was!r} in the checkpoint, {now!r} in this run")
    return found


def load_classifier(path: str | Path, checkpoint: dict[str, Any] | None = None) -> Classifier:
    """The model of a checkpoint, rebuilt from its saved hyperparameters once they pass the catalogue.

    ``checkpoint``: the file as ``read_checkpoint`` returned it, where the caller has read it already.
    """
    if checkpoint is None:
        read_checkpoint(path)
    try:
        return Classifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except RuntimeError as exc:  # weights of another shape than the hyperparameters describe
        raise CheckpointError(f"{path}: its weights do not fit the model its hyperparameters describe "
                              f"({str(exc).splitlines()[1].strip()[:200] if len(str(exc).splitlines()) > 1 else exc})") from None
