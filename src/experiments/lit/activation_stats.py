"""Each hidden layer's activation mean and spread over training, on a fixed probe.

Glorot & Bengio (2010) watch a sigmoid network's top hidden layer driven to 0 within the first epoch, and He et
al. (2015) a deep ReLU network's signal shrinking layer by layer under Xavier's initialisation: both are these
two numbers per layer, read every few steps (``experiment=init_saturation``, ``experiment=init_depth``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from experiments import names
from experiments.lit.diagnostics import log_at_step, net_of
from experiments.nn.model import MLP


def activation_stats(net: MLP, probe: torch.Tensor) -> dict[str, float]:
    """Each hidden layer's activation mean and standard deviation over all its units and probe inputs, in
    evaluation mode (no dropout): a sigmoid layer driven to 0 shows a mean and spread near 0, a signal that
    shrinks with depth a spread falling layer by layer."""
    was_training = net.training
    net.eval()
    stats = []
    x = probe
    with torch.no_grad():
        for layer in net.hidden:
            x = layer(x)
            std, mean = torch.std_mean(x)
            stats += [mean, std]
    net.train(was_training)
    values = torch.stack(stats).tolist() if stats else []  # one read of the device, not two per layer
    out: dict[str, float] = {}
    for i in range(len(net.hidden)):
        out[f"{names.ACTIVATION_MEAN}/layer{i + 1}"] = values[2 * i]
        out[f"{names.ACTIVATION_STD}/layer{i + 1}"] = values[2 * i + 1]
    return out


class ActivationStatsMonitor(L.Callback):
    """Each hidden layer's activation mean and spread (``activation_stats``) on a fixed probe, at
    initialisation and every ``every_n_steps`` optimizer steps.

    Read by steps, not epochs: the saturation Glorot & Bengio show happens within the first epoch.
    ``history`` holds one entry per reading, with the readings' steps under ``names.ACTIVATION_STEPS``;
    ``latest`` the last reading. ``split`` picks the probe's images: ``val``, or ``test`` as the paper's
    figure does (the probe only watches; nothing is chosen by it).
    """

    def __init__(self, every_n_steps: int = 50, probe_size: int = 300, split: str = "val") -> None:
        if split not in ("val", "test"):
            raise ValueError(f"diagnostics.activation_stats.split={split!r}: must be val or test")
        self.every_n_steps, self.probe_size, self.split = every_n_steps, probe_size, split
        self.latest: dict[str, float] = {}
        self.history: dict[str, list[float]] = {}
        self.probe: torch.Tensor | None = None

    def _read(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = self.history.get(names.ACTIVATION_STEPS, [])
        if steps and steps[-1] == trainer.global_step:  # several batches per step (accumulate_grad_batches)
            return
        if self.probe is None:
            self.probe = trainer.datamodule.images(self.split, self.probe_size).to(pl_module.device)
        self.latest = activation_stats(net_of(pl_module), self.probe)
        log_at_step(trainer, self.latest)
        for key, value in {**self.latest, names.ACTIVATION_STEPS: trainer.global_step}.items():
            self.history.setdefault(key, []).append(value)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:  # at initialisation; a resumed run has this reading in its history
            self._read(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._read(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}, "latest": dict(self.latest)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: list(v) for k, v in state_dict["history"].items()}
        self.latest = dict(state_dict["latest"])
