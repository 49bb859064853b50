"""MNIST, or any set of the IDX family, as a LightningDataModule: whole tensors on the training device,
batched by index slices.

The course's MLP is so small that a torchvision ``Dataset`` with per-sample PIL transforms spends
far more time decoding images than training on them. Here the whole set is read once (``idx.py``),
kept on the training device when it fits, and each batch is a single gather. The official test set is
only ever used by ``test_dataloader``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import lightning as L
import torch

from experiments.data.idx import Shape, describe, load, root_of, split
from experiments.data.normalization import PixelStats, normalize, statistics


class EpochOrder:
    """Which rows an epoch visits, in which order: a permutation seeded by ``(seed, epoch)``.

    Like ``DistributedSampler`` it has ``set_epoch``, which Lightning calls at the start of every
    epoch (resumed ones included), so the order of epoch ``e`` is the same in any run that reaches
    it. Under DDP each rank takes an interleaved share of the same permutation.
    """

    def __init__(self, rows: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.rows, self.shuffle, self.seed = rows, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, device: torch.device) -> torch.Tensor | None:
        """``None`` means the rows in their stored order (no gather needed)."""
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            order = torch.randperm(self.rows, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.rows)
        order = order[: self.rows - self.rows % self.world_size][self.rank :: self.world_size]
        return order.to(device, non_blocking=True)


class TensorBatches:
    """Batches of ``(x, y)`` as index slices of tensors that already sit on the training device.

    Resumable (Lightning's stateful-loader protocol, ``state_dict``/``load_state_dict``): a checkpoint
    records the epoch and how many batches of it were given, and a run resumed in that epoch continues
    with exactly the batches it had not seen. Images may be stored as uint8 pixels and normalised
    batch by batch (``transform``), at a quarter of the memory.
    """

    batch_sampler = None  # DataLoader's attribute names, which Lightning inspects: batches come from ``sampler``

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.y, self.transform = x, y, transform
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = EpochOrder(len(x), shuffle, seed, rank, world_size)  # Lightning calls its set_epoch
        rows = len(x) // world_size
        self.num_batches = rows // batch_size if drop_last else -(-rows // batch_size)
        self.epoch, self.batches_done = 0, 0  # the epoch being given, and how many of its batches are out
        self._resume: dict[str, int] | None = None

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # a generator: its body runs at the first next(), after Lightning's set_epoch for this epoch
        epoch, resume, self._resume = self.sampler.epoch, self._resume, None
        start = resume["batches_done"] if resume is not None and resume["epoch"] == epoch else 0
        self.epoch, self.batches_done = epoch, start
        order = self.sampler.indices(self.x.device)
        for i in range(start, self.num_batches):
            lo, hi = i * self.batch_size, (i + 1) * self.batch_size
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:  # one gather per batch; index_select beats fancy indexing
                idx = order[lo:hi]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            self.batches_done = i + 1
            yield (self.transform(xb) if self.transform else xb), yb

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches_done": int(state["batches_done"])}


class MNISTDataModule(L.LightningDataModule):
    """The official training/test split of ``root``'s IDX files (the bundled MNIST files by default), with
    ``val_size`` images carved from training by a seeded generator. Image size, classes and normalisation
    come from the files (``idx.py``) when ``prepare_data`` reads them."""

    def __init__(
        self,
        root: str | None = None,
        batch_size: int | str = 256,
        eval_batch_size: int = 5000,
        val_size: int = 5000,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        on_device: bool = True,
        download: bool = True,
        limit_train: int | None = None,
        normalize: str = "standardize",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # in checkpoints: eval.py scales the pixels as training did
        self.root, self.download, self.normalize = root, download, normalize
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.on_device, self.limit_train = on_device, limit_train
        self.tensors: dict[str, torch.Tensor] | None = None
        self.shape: Shape | None = None
        self.stats: PixelStats | None = None

    def prepare_data(self) -> None:
        """Load and verify before the trainer starts, so a bad file fails in a second, not mid-run."""
        if self.tensors is None:
            # uint8 pixels, normalised per batch: MNIST takes 55 MB instead of 220 MB
            data = load(self.root, self.download, raw=True)
            self.shape, self.stats = describe(self.root), statistics(root_of(self.root), data["train_x"])
            self.tensors = split(data, self.val_size, self.split_seed, self.limit_train)

    def _shape(self) -> Shape:
        """Read from the files: a model sized by the data (``input_size``) reads them first."""
        self.prepare_data()
        assert self.shape is not None
        return self.shape

    def account(self) -> dict[str, Any]:
        """For the run's record: the data set the run read, as its files and its statistics say."""
        shape, stats = self._shape(), self.stats
        assert stats is not None
        return {
            "root": str(root_of(self.root)),
            "image": list(shape.image),
            "classes": shape.num_classes,
            "train_images": shape.train_size,
            "test_images": shape.test_size,
            "pixel_mean": stats.mean,
            "pixel_std": stats.std,
            "pixel_stats": "declared" if stats.declared else "measured",
        }

    @property
    def input_size(self) -> int:
        return self._shape().input_size

    @property
    def num_classes(self) -> int:
        return self._shape().num_classes

    @property
    def train_size(self) -> int:
        rows = self._shape().train_size - self.val_size
        return min(self.limit_train, rows) if self.limit_train else rows

    def resolved_batch_size(self) -> int:
        """``batch_size: full`` means the whole training split in one batch (full-batch gradient descent)."""
        return self.train_size if self.batch_size == "full" else int(self.batch_size)

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

    def _loader(self, part: str, batch_size: int, shuffle: bool) -> TensorBatches:
        assert self.tensors is not None
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return TensorBatches(
            self.tensors[f"{part}_x"],
            self.tensors[f"{part}_y"],
            batch_size,
            shuffle,
            seed=self.shuffle_seed,
            rank=rank,
            world_size=world,
            transform=partial(normalize, mode=self.normalize, stats=self.stats),
        )

    def images(self, part: str, n: int | None = None) -> torch.Tensor:
        """The first ``n`` normalised images of ``train``, ``val`` or ``test``: probes for diagnostics."""
        assert self.tensors is not None
        return normalize(self.tensors[f"{part}_x"][:n], self.normalize, self.stats)  # type: ignore[arg-type]

    def train_dataloader(self) -> TensorBatches:
        # Lightning's overfit_batches turns off a torch sampler's shuffling to repeat the same batches; these
        # batches come from no torch sampler, so the loader keeps its first order itself
        overfit = self.trainer is not None and self.trainer.overfit_batches > 0
        return self._loader("train", self.resolved_batch_size(), shuffle=not overfit)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", self.eval_batch_size, shuffle=False)
