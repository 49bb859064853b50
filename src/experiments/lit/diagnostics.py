"""Why one variant beats another: dead units, saturation, gradient norms and histograms, per layer.

Each monitor is a Lightning callback switched on by the ``diagnostics`` config group. Unit statistics
are measured on a fixed probe set (the first ``probe_size`` validation images), so epochs compare:

- dead: the activation's derivative is 0 for every probe input (a dead ReLU never recovers; a Leaky
  ReLU or ALReLU unit is never dead by this definition),
- inactive: the pre-activation is <= 0 for every probe input,
- saturated (sigmoid/tanh-like activations): |derivative| < threshold for every probe input.

Beside them, gradient norms and histograms per layer; each layer's activation mean and spread over training
is ``activation_stats.py``'s.

The derivative is taken by autograd through the layer's own activation module, so the definition is
the same for every activation, including ones added later.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from torch import nn

from experiments.nn.model import MLP, collapse_linear
from experiments.nn.traits import saturates


def net_of(pl_module: L.LightningModule) -> MLP:
    return pl_module.net  # compiled in place (``nn.Module.compile``): still the MLP


def log_at_step(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


def _probe(trainer: L.Trainer, pl_module: L.LightningModule, size: int) -> torch.Tensor:
    """The first ``size`` normalised validation images on the module's device: the monitors' fixed inputs."""
    return trainer.datamodule.images("val", size).to(pl_module.device)


def unit_stats(net: MLP, probe: torch.Tensor, saturation_threshold: float = 1e-2) -> dict[str, float]:
    """Per-layer and total dead / inactive / saturated fractions of the hidden units on ``probe``."""
    was_training = net.training
    net.eval()
    out: dict[str, float] = {}
    counts: dict[str, int] = {}  # per kind measured: "saturated" only where a layer saturates
    total_units = 0
    x = probe
    with torch.enable_grad():
        for i, layer in enumerate(net.hidden, start=1):
            z = layer.pre(x.detach()).detach().requires_grad_(True)
            a = layer.activation(z.clone())  # a copy: an in-place activation (inplace=true) may not overwrite a leaf
            (deriv,) = torch.autograd.grad(a.sum(), z)
            stats = {"dead": (deriv == 0).all(0), "inactive": (z <= 0).all(0)}
            if saturates(layer.activation, z.shape[1], saturation_threshold):  # measured, or declared by its class
                stats["saturated"] = (deriv.abs() < saturation_threshold).all(0)
            for name, mask in stats.items():
                out[f"diag/{name}_frac/layer{i}"] = mask.float().mean().item()
                counts[name] = counts.get(name, 0) + int(mask.sum())
            total_units += z.shape[1]
            x = layer.dropout(a.detach())
    for name, count in counts.items():
        out[f"diag/{name}_frac/total"] = count / total_units
    net.train(was_training)
    return out


def born_dead(net: MLP, probe: torch.Tensor) -> bool:
    """True when some hidden layer has every unit dead on the probe: the network's output is constant."""
    with torch.no_grad():
        stats = unit_stats(net, probe)
    return any(v == 1.0 for k, v in stats.items() if k.startswith("diag/dead_frac/layer"))


class DeadUnitMonitor(L.Callback):
    """Dead / inactive / saturated fractions at the start of training (born dead) and after every epoch.

    ``latest`` holds the last measurement, ``history`` one entry per epoch of each fraction (for
    ``metrics.json`` and the sweep report's plots); both travel in checkpoints, so a resumed run records
    what an uninterrupted one does.
    """

    def __init__(self, probe_size: int = 1000, saturation_threshold: float = 1e-2) -> None:
        self.probe_size, self.saturation_threshold = probe_size, saturation_threshold
        self.latest: dict[str, float] = {}
        self.history: dict[str, list[float]] = {}
        self.probe: torch.Tensor | None = None

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str = "") -> dict[str, float]:
        if self.probe is None:
            self.probe = _probe(trainer, pl_module, self.probe_size)
        stats = unit_stats(net_of(pl_module), self.probe, self.saturation_threshold)
        stats = {k.replace("diag/", f"diag/{prefix}"): v for k, v in stats.items()}
        log_at_step(trainer, stats)
        return stats

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            born = self._measure(trainer, pl_module, prefix="born_")
            self.latest.update({k: v for k, v in born.items() if "/total" in k or "dead" in k})

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        stats = self._measure(trainer, pl_module)
        self.latest.update(stats)
        for key, value in stats.items():
            self.history.setdefault(key, []).append(value)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}, "latest": dict(self.latest)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
        self.latest = dict(state_dict.get("latest", {}))  # absent from checkpoints older than it


class GradNormMonitor(L.Callback):
    """Per-layer L2 norms of the weight gradients every ``every_n_steps`` (Lightning's ``grad_norm``).

    Read only at the interval: each read of a GPU value costs a host synchronisation. ``history`` has,
    per epoch, the mean of each norm over the epoch's readings.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self.latest: dict[str, float] = {}
        self.history: dict[str, list[float]] = {}
        self.epoch_readings: dict[str, list[float]] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for key, values in self.epoch_readings.items():
            self.history.setdefault(key, []).append(sum(values) / len(values))
        self.epoch_readings = {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": {k: list(v) for k, v in self.history.items()},
            "epoch_readings": {k: list(v) for k, v in self.epoch_readings.items()},
            "latest": dict(self.latest),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
        self.epoch_readings = {k: list(v) for k, v in state_dict["epoch_readings"].items()}
        self.latest = dict(state_dict.get("latest", {}))

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        net = net_of(pl_module)
        norms = grad_norm(net, norm_type=2)
        names = {f"hidden.{i}.linear.weight": f"layer{i + 1}" for i in range(len(net.hidden))}
        names["output.weight"] = "output"
        stats = {f"grad_norm/{name}": float(norms[f"grad_2.0_norm/{param}"]) for param, name in names.items()}
        stats["grad_norm/total"] = float(norms["grad_2.0_norm_total"])
        self.latest = {f"diag/{k}": v for k, v in stats.items()}
        for key, value in self.latest.items():
            self.epoch_readings.setdefault(key, []).append(value)
        log_at_step(trainer, stats)


def add_histogram(writer: Any, tag: str, values: torch.Tensor, step: int, bins: int) -> None:
    """``SummaryWriter.add_histogram`` with the counting done by ``torch.histc`` on the values' device.

    TensorBoard's own ``add_histogram`` copies the values to NumPy and bins them there: slower by an order
    of magnitude, and a visible share of an epoch for the whole network (docs/performance-notes.md).
    """
    v = values.detach().flatten().float()
    low, high = (float(t) for t in v.aminmax())
    counts = torch.histc(v, bins, low, high)
    limits = torch.linspace(low, high, bins + 1)[1:]
    writer.add_histogram_raw(
        tag,
        min=low,
        max=high,
        num=v.numel(),
        sum=float(v.sum()),
        sum_squares=float(v.square().sum()),
        bucket_limits=limits.tolist(),
        bucket_counts=counts.tolist(),
        global_step=step,
    )


class HistogramMonitor(L.Callback):
    """Weight and activation histograms per layer in TensorBoard, every ``every_n_epochs`` epochs."""

    def __init__(self, every_n_epochs: int = 1, probe_size: int = 1000, bins: int = 64) -> None:
        self.every_n_epochs, self.probe_size, self.bins = every_n_epochs, probe_size, bins
        self.probe: torch.Tensor | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers or trainer.current_epoch % self.every_n_epochs:
            return
        if self.probe is None:  # built once, not every epoch
            self.probe = _probe(trainer, pl_module, self.probe_size)
        log_histograms(writers[0], net_of(pl_module), self.probe, trainer.global_step, self.bins)


@torch.no_grad()
def log_histograms(writer: Any, net: MLP, probe: torch.Tensor, step: int, bins: int) -> None:
    """Each layer's weights, and its activations on ``probe``, as TensorBoard histograms."""
    x = probe
    for i, layer in enumerate(net.hidden, start=1):
        add_histogram(writer, f"weights/layer{i}", layer.linear.weight, step, bins)
        x = layer(x)
        add_histogram(writer, f"activations/layer{i}", x, step, bins)
    add_histogram(writer, "weights/output", net.output.weight, step, bins)


class LinearCollapseCheck(L.Callback):
    """For ``activation=identity``: collapse the trained net to one ``Linear`` and test that too."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = net_of(pl_module)
        if not all(isinstance(h.activation, nn.Identity) for h in net.hidden):
            return
        x, y = trainer.datamodule.images("test"), trainer.datamodule.tensors["test_y"]
        single = collapse_linear(net.eval())
        with torch.no_grad():
            deep, flat = net(x.to(pl_module.device)), single(x.to(pl_module.device))
        self.latest = {
            "collapse/max_abs_diff": (deep - flat).abs().max().item(),
            "collapse/test_acc": (flat.argmax(1).cpu() == y.cpu()).float().mean().item(),
            "collapse/parameters_single": sum(p.numel() for p in single.parameters()),
        }
