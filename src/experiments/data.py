"""MNIST as whole tensors, batched by index slices.

The course's MLP is so small that a torchvision ``Dataset`` with per-sample PIL transforms spends
far more time decoding images than training on them. Here the four official IDX files are read once,
verified by MD5, normalised in one vectorised step and (when it fits) kept on the training device;
each batch is then a single gather. The official test set is only ever used by ``test_dataloader``.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch

MEAN, STD = 0.1307, 0.3081
INPUT_SIZE, NUM_CLASSES = 28 * 28, 10
TRAIN_SIZE = 60_000

# MD5 of each decompressed file, as published with the data set (also in data/mnist/MD5SUMS.raw).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
BUNDLED_ROOT = Path(__file__).resolve().parents[2] / "data" / "mnist"


class DataError(ValueError):
    """A data file or directory is missing or damaged; the message says which and how to fix it."""


def _find(root: Path, name: str) -> Path | None:
    """The file as committed (``.gz``), as unpacked, or where torchvision's downloader puts it."""
    for candidate in (root / f"{name}.gz", root / name, root / "MNIST" / "raw" / name):
        if candidate.is_file():
            return candidate
    return None


def _download(root: Path) -> None:
    """Fallback for a ``data.root`` without the files: torchvision fetches and unpacks them."""
    from torchvision.datasets import MNIST

    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"data.root={root}: MNIST files are missing and torchvision could not download them ({exc}). "
            f"Copy the four IDX files there, or point data.root at a directory that has them "
            f"(the repository ships them in {BUNDLED_ROOT})."
        ) from exc


def read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file after checking its MD5 against the published value."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(_damaged(path, f"it is not a valid gzip file ({exc})")) from exc
    name = path.name.removesuffix(".gz")
    digest = hashlib.md5(raw).hexdigest()
    if digest != MD5[name]:
        raise DataError(_damaged(path, f"its MD5 is {digest}, expected {MD5[name]}"))
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return torch.from_numpy(data.reshape(shape).copy())


def _damaged(path: Path, why: str) -> str:
    return (
        f"{path}: checksum failed, {why}. The file is truncated or altered: restore it with "
        f"`git checkout -- {path.name}` in {path.parent} (or copy it from {BUNDLED_ROOT}), "
        f"or delete it and run with data.download=true."
    )


def load_mnist(root: str | Path | None = None, download: bool = True) -> dict[str, torch.Tensor]:
    """All four files as tensors: images normalised float32 (N, 784), labels int64 (N,)."""
    root = Path(root).expanduser() if root else BUNDLED_ROOT
    if not root.is_dir():
        raise DataError(
            f"data.root={root} does not exist. Create it (missing files are then downloaded), "
            f"or drop the override to use the bundled files in {BUNDLED_ROOT}."
        )
    if any(_find(root, name) is None for name in MD5):
        if not download:
            missing = [n for n in MD5 if _find(root, n) is None]
            raise DataError(f"data.root={root} lacks {', '.join(missing)}; set data.download=true or copy them there.")
        _download(root)
    tensors = {name: read_idx(_find(root, name)) for name in MD5}  # type: ignore[arg-type]
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = tensors[f"{prefix}-images-idx3-ubyte"].reshape(-1, INPUT_SIZE).float().div_(255)
        out[f"{split}_x"] = images.sub_(MEAN).div_(STD)
        out[f"{split}_y"] = tensors[f"{prefix}-labels-idx1-ubyte"].long()
    return out


class TensorBatches:
    """Batches of ``(x, y)`` as index slices of tensors that already sit on the training device.

    Shuffling draws a permutation from a generator seeded by ``(seed, epoch)``, so the order of every
    epoch is reproducible, and the iterator is resumable: Lightning saves ``state_dict()`` with each
    checkpoint and a resumed run continues mid-epoch with exactly the batches it had not seen.
    Under DDP each rank takes an interleaved share of the same permutation.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.batches_done = -1, 0  # the pass in progress, and how far it has got
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
        rows = len(self.x) // self.world_size
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A new pass starts when iter() is called (Lightning stops at len() and never exhausts us).
        epoch, start = self._resume or (self.epoch + 1, 0)
        self._resume = None
        if start >= len(self):  # checkpointed at the very end of a pass: the next pass is due
            epoch, start = epoch + 1, 0
        self.epoch, self.batches_done = epoch, start
        order, size = self._indices(epoch), self.batch_size
        for b in range(start, len(self)):
            if order is None:
                xb, yb = self.x[b * size : (b + 1) * size], self.y[b * size : (b + 1) * size]
            else:
                idx = order[b * size : (b + 1) * size]
                xb, yb = self.x[idx], self.y[idx]
            self.batches_done = b + 1
            yield xb, yb

    # Lightning's resumable-loader protocol (``_Stateful``): saved in every checkpoint.
    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches_done"]))


class MNISTDataModule(L.LightningDataModule):
    """The official 60k/10k split, with ``val_size`` images carved from training by a seeded generator."""

    input_size, num_classes = INPUT_SIZE, NUM_CLASSES

    def __init__(self, root: str | None = None, batch_size: int | str = 256, eval_batch_size: int = 5000,
                 val_size: int = 5000, split_seed: int = 0, shuffle_seed: int = 0, on_device: bool = True,
                 download: bool = True, limit_train: int | None = None) -> None:
        super().__init__()
        self.root, self.download = root, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.on_device, self.limit_train = on_device, limit_train
        self.tensors: dict[str, torch.Tensor] | None = None

    def prepare_data(self) -> None:
        """Load and verify before the trainer starts, so a bad file fails in a second, not mid-run."""
        if self.tensors is None:
            self.tensors = self._split(load_mnist(self.root, self.download))

    def _split(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        order = torch.randperm(TRAIN_SIZE, generator=torch.Generator().manual_seed(self.split_seed))
        train_idx, val_idx = order[self.val_size :], order[: self.val_size]
        if self.limit_train:
            train_idx = train_idx[: self.limit_train]
        return {
            "train_x": data["train_x"][train_idx], "train_y": data["train_y"][train_idx],
            "val_x": data["train_x"][val_idx], "val_y": data["train_y"][val_idx],
            "test_x": data["test_x"], "test_y": data["test_y"],
        }

    @property
    def train_size(self) -> int:
        return TRAIN_SIZE - self.val_size if not self.limit_train else min(self.limit_train, TRAIN_SIZE - self.val_size)

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

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> TensorBatches:
        assert self.tensors is not None
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        return TensorBatches(self.tensors[f"{split}_x"], self.tensors[f"{split}_y"], batch_size, shuffle,
                             seed=self.shuffle_seed, rank=rank, world_size=world)

    def train_dataloader(self) -> TensorBatches:
        return self._loader("train", self.resolved_batch_size(), shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._loader("test", self.eval_batch_size, shuffle=False)
