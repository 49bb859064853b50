"""MNIST as a LightningDataModule: whole tensors on the training device, batched by index slices.

The course's MLP is so small that a torchvision ``Dataset`` with per-sample PIL transforms spends
far more time decoding images than training on them. Here the whole set is read once (``mnist.py``),
kept on the training device when it fits, and each batch is a single gather. The official test set is
only ever used by ``test_dataloader``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import lightning as L
import torch

from experiments.mnist import INPUT_SIZE, NUM_CLASSES, TRAIN_SIZE, load_mnist, normalize, split


def capped(n: int, limit: int | float | None) -> int:
    """``n`` batches capped as Lightning caps them: an int ``limit`` is a count, a float a fraction
    (at least one batch), ``None`` no cap."""
    if limit is None or (isinstance(limit, float) and limit >= 1.0):
        return n
    return min(n, limit) if isinstance(limit, int) else max(1, int(n * limit))


def batches_per_pass(rows: int, batch_size: int, drop_last: bool = False, limit: int | float | None = None) -> int:
    """Mini-batches in one pass over ``rows`` examples, ``capped`` by ``limit``."""
    return capped(rows // batch_size if drop_last else -(-rows // batch_size), limit)


class TensorBatches:
    """Batches of ``(x, y)`` as index slices of tensors that already sit on the training device.

    Shuffling draws a permutation from a generator seeded by ``(seed, epoch)``, so the order of every
    epoch is reproducible, and the iterator is resumable: Lightning saves ``state_dict()`` with each
    checkpoint and a resumed run continues mid-epoch with exactly the batches it had not seen.
    Under DDP each rank takes an interleaved share of the same permutation. Images may be stored as
    uint8 pixels and normalised batch by batch (``transform``), at a quarter of the memory.

    With ``group > 1`` each item is a list of up to ``group`` mini-batches, gathered and normalised in
    one operation: the classifier takes one optimizer step per mini-batch, and Lightning's per-batch
    bookkeeping runs once per group (``steps_per_execution``). ``limit`` caps the mini-batches per epoch
    (``trainer.limit_train_batches``: an int is a count, a float a fraction), whatever the grouping.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, group: int = 1,
                 limit: int | float | None = None) -> None:
        self.x, self.y, self.transform = x, y, transform
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.group = group
        self.num_batches = batches_per_pass(len(x) // world_size, batch_size, drop_last, limit)
        self.epoch, self.batches_done = -1, 0  # the pass in progress, and how many mini-batches it has given
        self._resume: tuple[int, int] | None = None

    def _indices(self, epoch: int) -> torch.Tensor | None:
        n = len(self.x)
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        order = order[: n - n % self.world_size][self.rank :: self.world_size]
        return order.to(self.x.device, non_blocking=True)

    def __len__(self) -> int:
        """Items per pass: groups of mini-batches (mini-batches when ``group`` is 1)."""
        return -(-self.num_batches // self.group)

    def _rows(self, order: torch.Tensor | None, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mini-batches ``first`` to ``last - 1`` in one gather (``index_select`` beats fancy indexing)."""
        lo, hi = first * self.batch_size, last * self.batch_size
        if order is None:
            xb, yb = self.x[lo:hi], self.y[lo:hi]
        else:
            idx = order[lo:hi]
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
        return (self.transform(xb) if self.transform else xb), yb

    def __iter__(self) -> Iterator[Any]:
        # A new pass starts when iter() is called (Lightning stops at len() and never exhausts us).
        epoch, start = self._resume or (self.epoch + 1, 0)
        self._resume = None
        if start >= self.num_batches:  # checkpointed at the very end of a pass: the next pass is due
            epoch, start = epoch + 1, 0
        self.epoch, self.batches_done = epoch, start
        order = self._indices(epoch)
        for first in range(start, self.num_batches, self.group):
            last = min(first + self.group, self.num_batches)
            xb, yb = self._rows(order, first, last)
            self.batches_done = last
            if self.group == 1:
                yield xb, yb
            else:
                yield list(zip(xb.split(self.batch_size), yb.split(self.batch_size)))

    # Lightning's resumable-loader protocol (``_Stateful``): saved in every checkpoint.
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "group": self.group}

    def load_state_dict(self, state: dict[str, int]) -> None:
        saved, done = int(state.get("group", 1)), int(state["batches_done"])
        if saved != self.group and 0 < done < self.num_batches:
            # Lightning counts its position in items (groups): another grouping would misplace it
            raise ValueError(f"the checkpoint was saved mid-epoch with steps_per_execution={saved}; "
                             f"resume with steps_per_execution={saved} (now {self.group})")
        self._resume = (int(state["epoch"]), int(state["batches_done"]))


class MNISTDataModule(L.LightningDataModule):
    """The official 60k/10k split, with ``val_size`` images carved from training by a seeded generator."""

    input_size, num_classes = INPUT_SIZE, NUM_CLASSES

    def __init__(self, root: str | None = None, batch_size: int | str = 256, eval_batch_size: int = 5000,
                 val_size: int = 5000, split_seed: int = 0, shuffle_seed: int = 0, on_device: bool = True,
                 download: bool = True, limit_train: int | None = None, steps_per_execution: int = 1,
                 limit_train_batches: int | float | None = None) -> None:
        super().__init__()
        # set by the run from the top-level config, not by data/*.yaml: how the loop consumes batches
        self.steps_per_execution, self.limit_train_batches = steps_per_execution, limit_train_batches
        self.root, self.download = root, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.on_device, self.limit_train = on_device, limit_train
        self.tensors: dict[str, torch.Tensor] | None = None

    def prepare_data(self) -> None:
        """Load and verify before the trainer starts, so a bad file fails in a second, not mid-run."""
        if self.tensors is None:
            # uint8 pixels, normalised per batch: the whole set takes 55 MB instead of 220 MB
            self.tensors = split(load_mnist(self.root, self.download, raw=True), self.val_size, self.split_seed,
                                 self.limit_train)

    @property
    def train_size(self) -> int:
        return TRAIN_SIZE - self.val_size if not self.limit_train else min(self.limit_train, TRAIN_SIZE - self.val_size)

    def resolved_batch_size(self) -> int:
        """``batch_size: full`` means the whole training split in one batch (full-batch gradient descent)."""
        return self.train_size if self.batch_size == "full" else int(self.batch_size)

    def train_batches_per_epoch(self) -> int:
        """Mini-batches (optimizer steps) per training epoch on one device, known before ``setup``."""
        return batches_per_pass(self.train_size, self.resolved_batch_size(), limit=self.limit_train_batches)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        assert self.tensors is not None
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.on_device and device.type != "cpu" and self._fits(device):
            self.tensors = {k: v.to(device) for k, v in self.tensors.items()}

    def _fits(self, device: torch.device) -> bool:
        if device.type != "cuda":
            return True
        need = sum(t.numel() * t.element_size() for t in self.tensors.values())  # type: ignore[union-attr]
        free, _ = torch.cuda.mem_get_info(device)
        return need < free // 2

    def _loader(self, part: str, batch_size: int, shuffle: bool, group: int = 1,
                limit: int | float | None = None) -> TensorBatches:
        assert self.tensors is not None
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return TensorBatches(self.tensors[f"{part}_x"], self.tensors[f"{part}_y"], batch_size, shuffle,
                             seed=self.shuffle_seed, rank=rank, world_size=world, transform=normalize,
                             group=group, limit=limit)

    def images(self, part: str, n: int | None = None) -> torch.Tensor:
        """The first ``n`` normalised images of ``train``, ``val`` or ``test``: probes for diagnostics."""
        assert self.tensors is not None
        return normalize(self.tensors[f"{part}_x"][:n])

    def train_dataloader(self) -> TensorBatches:
        # DDP synchronises gradients once per forward of the wrapped module: one step per call there
        world = self.trainer.world_size if self.trainer else 1
        group = self.steps_per_execution if world == 1 else 1
        return self._loader("train", self.resolved_batch_size(), shuffle=True, group=group,
                            limit=self.limit_train_batches)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", self.eval_batch_size, shuffle=False)
