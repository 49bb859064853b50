"""The four official MNIST IDX files: found, verified by MD5, decoded and normalised, with no framework.

Kept free of Lightning and Hydra so the plain reference loop (``scripts/plain_mnist.py``) loads the
data exactly as the framework does and pays none of the framework's import cost.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from experiments.errors import DataError

MEAN, STD = 0.1307, 0.3081
INPUT_SIZE, NUM_CLASSES = 28 * 28, 10
TRAIN_SIZE, TEST_SIZE = 60_000, 10_000

# MD5 of each decompressed file, as published with the data set (also in data/mnist/MD5SUMS.raw).
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# inside the package (in the repository a link to data/mnist/), so an installed package finds them
BUNDLED_ROOT = (Path(__file__).resolve().parent / "mnist_files").resolve()


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


_DECODED: dict[str, tuple[str, torch.Tensor]] = {}  # file name -> SHA-1 of its bytes, the verified tensor


def read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file after checking its MD5 against the published value.

    A process that runs many jobs (a sweep under the basic, joblib or fused launcher) unpacks and checks
    each file once, not once per job (unpacking and checking is most of the data's start-up): the last
    verified tensor of each file name is kept with a SHA-1 of the file's bytes, which are read every time
    (hashing is far cheaper than unpacking), so a file that changed in any byte is unpacked and checked
    again. Each call returns its own copy.
    """
    stored = path.read_bytes()
    digest = hashlib.sha1(stored).hexdigest()
    if _DECODED.get(path.name, ("", None))[0] != digest:
        _DECODED[path.name] = (digest, _decode(path, stored))
    return _DECODED[path.name][1].clone()


def _decode(path: Path, raw: bytes) -> torch.Tensor:
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # bad header, truncation, bad CRC or deflate data
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


NORMALIZATIONS = ("standardize", "unit")


def normalize(images: torch.Tensor, mode: str = "standardize") -> torch.Tensor:
    """uint8 pixels to float32: ``standardize`` with the published mean and standard deviation (mean 0,
    std 1 over the training set), or ``unit``, pixels in [0, 1] (as Keras examples and the SNN tutorial do).

    The scaling is part of an experiment, not a detail: with [0, 1] inputs every first-layer pre-activation
    is a sum of non-negative pixels times weights, and ReLUs die at a different rate than with standardised ones.
    """
    images = images.to(torch.float32, copy=True)
    if mode == "unit":
        return images.mul_(1 / 255)
    if mode != "standardize":
        raise ValueError(f"data.normalize={mode!r}: must be one of {', '.join(NORMALIZATIONS)}")
    # one multiply-add after the conversion: a third of the time of divide, subtract, divide
    return images.mul_(1 / (255 * STD)).add_(-MEAN / STD)


def load_mnist(root: str | Path | None = None, download: bool = True, raw: bool = False) -> dict[str, torch.Tensor]:
    """All four files as tensors: images (N, 784), normalised float32 or, with ``raw``, uint8 pixels
    (a quarter of the memory; ``normalize`` them per batch); labels int64 (N,)."""
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
        images = tensors[f"{prefix}-images-idx3-ubyte"].reshape(-1, INPUT_SIZE)
        out[f"{split}_x"] = images if raw else normalize(images)
        out[f"{split}_y"] = tensors[f"{prefix}-labels-idx1-ubyte"].long()
    return out


def split(
    data: dict[str, torch.Tensor], val_size: int, split_seed: int, limit_train: int | None = None
) -> dict[str, torch.Tensor]:
    """Train / validation / test: ``val_size`` images carved from the official training set by a
    seeded permutation; the official test set is passed through untouched."""
    order = torch.randperm(TRAIN_SIZE, generator=torch.Generator().manual_seed(split_seed))
    train_idx, val_idx = order[val_size:], order[:val_size]
    if limit_train:
        train_idx = train_idx[:limit_train]
    return {
        "train_x": data["train_x"][train_idx],
        "train_y": data["train_y"][train_idx],
        "val_x": data["train_x"][val_idx],
        "val_y": data["train_y"][val_idx],
        "test_x": data["test_x"],
        "test_y": data["test_y"],
    }
