"""The members' data: one split for all, and each member's batches in its own seed's order, stacked."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from experiments.data.datamodule import EpochOrder, MNISTDataModule
from experiments.data.normalization import normalize


class StackedBatches:
    """Every member's batch ``i`` at once: ``x`` of shape ``[members, batch, pixels]`` and ``y`` of
    ``[members, batch]``, each member's rows in its own seed's order (the order its own run's
    ``TensorBatches`` would give). ``x`` is normalised already: one gather per batch, nothing more."""

    batch_sampler = None

    class _Epochs:
        def __init__(self, orders: list[EpochOrder]) -> None:
            self.orders = orders

        def set_epoch(self, epoch: int) -> None:  # Lightning calls it at the start of every epoch
            for order in self.orders:
                order.set_epoch(epoch)

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seeds: list[int]) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.sampler = self._Epochs([EpochOrder(len(x), True, seed) for seed in seeds])
        self.num_batches = -(-len(x) // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.stack([o.indices(self.x.device) for o in self.sampler.orders])  # [members, rows]
        members = len(order)
        for i in range(self.num_batches):
            idx = order[:, i * self.batch_size : (i + 1) * self.batch_size].reshape(-1)
            yield (
                self.x.index_select(0, idx).view(members, -1, self.x.shape[1]),
                self.y.index_select(0, idx).view(members, -1),
            )


class MembersData(MNISTDataModule):
    """The members' data: one split for all (their data settings are equal), and per member its own
    training order (``shuffle_seeds``). The training images are normalised once, not per batch: the
    same values (one formula per pixel), gathered for many members at a time."""

    def __init__(self, shuffle_seeds: list[int], **settings: Any) -> None:
        super().__init__(**settings)
        self.shuffle_seeds = list(shuffle_seeds)
        self.train_x: torch.Tensor | None = None

    def train_dataloader(self) -> StackedBatches:  # type: ignore[override]
        assert self.tensors is not None
        if self.train_x is None or self.train_x.device != self.tensors["train_x"].device:
            self.train_x = normalize(self.tensors["train_x"], self.normalize, self.stats)  # type: ignore[arg-type]
        return StackedBatches(self.train_x, self.tensors["train_y"], self.resolved_batch_size(), self.shuffle_seeds)
