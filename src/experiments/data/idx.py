"""The IDX family of data sets (MNIST, Fashion-MNIST, KMNIST, a user's own): four files found, checked,
decoded and described, with no framework.

What a run must know about a data set is read from its files or declared beside them, never assumed: the
image size and the number of images from the IDX headers, the classes from the labels, the normalisation
statistics beside the files or measured (``normalization.py``), the checksums
from ``MD5SUMS`` beside the files where there is one (the bundled MNIST files have theirs).

Kept free of Lightning and Hydra so the plain reference loop (``scripts/plain_mnist.py``) loads the
data exactly as the framework does and pays none of the framework's import cost.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.data.normalization import normalize, statistics
from experiments.errors import DataError

# the four files every set of the family names alike, by the tensor each becomes
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
CHECKSUMS = "MD5SUMS"  # '<md5>  <file name>' lines, of the files as stored or as unpacked
UBYTE = 0x08  # the IDX type code of unsigned bytes, the one type images and labels of the family use
MAX_SUMS = 1 << 16  # bytes read of MD5SUMS: it is a few lines
# inside the package (in the repository a link to data/mnist/), so an installed package finds them
BUNDLED_ROOT = (Path(__file__).resolve().parent / "mnist_files").resolve()


@dataclass(frozen=True)
class Shape:
    """What a model and the config checks need to know about a data set, before its images are decoded."""

    train_size: int
    test_size: int
    image: tuple[int, ...]  # rows, columns (and more, for an IDX file of more dimensions)
    num_classes: int

    @property
    def input_size(self) -> int:
        return math.prod(self.image)


def root_of(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root else BUNDLED_ROOT


def find(root: Path, name: str) -> Path | None:
    """The file as committed (``.gz``), as unpacked, or where torchvision's downloader puts it."""
    for candidate in (root / f"{name}.gz", root / name, root / "MNIST" / "raw" / name):
        if candidate.is_file():
            return candidate
    return None


def _download(root: Path) -> None:
    """Fallback for a ``data.root`` without the files: torchvision fetches MNIST's and unpacks them."""
    from torchvision.datasets import MNIST

    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"data.root={root}: the IDX files are missing and torchvision could not download MNIST's ({exc}). "
            f"Copy the four IDX files there, or point data.root at a directory that has them "
            f"(the package ships MNIST's in {BUNDLED_ROOT})."
        ) from exc


def checksums(root: Path) -> dict[str, str]:
    """``MD5SUMS`` beside the files, as {file name: md5}; empty where there is none (the sums are optional)."""
    path, found = root / CHECKSUMS, {}
    if path.is_file() and path.stat().st_size > MAX_SUMS:
        raise DataError(f"{path} is {path.stat().st_size} bytes, not a few lines: remove it or restore it")
    for n, line in enumerate((path.read_text(errors="replace") if path.is_file() else "").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or len(parts[0]) != 32 or any(c not in "0123456789abcdef" for c in parts[0].lower()):
            raise DataError(
                f"{path}, line {n}: not '<md5>  <file name>' ({line[:80]!r}); fix the line or remove the file"
            )
        found[parts[1].lstrip("*")] = parts[0].lower()
    return found


_DECODED: dict[str, tuple[str, torch.Tensor]] = {}  # file path -> SHA-1 of its bytes, the verified tensor


def read_idx(path: Path, sums: dict[str, str] | None = None) -> torch.Tensor:
    """Read one IDX file after checking its MD5 where ``sums`` (``checksums``) lists it.

    A process that runs many jobs (a sweep under the basic, joblib or fused launcher) unpacks and checks
    each file once, not once per job (unpacking and checking is most of the data's start-up): the last
    verified tensor of each file is kept with a SHA-1 of the file's bytes, which are read every time
    (hashing is far cheaper than unpacking), so a file that changed in any byte is unpacked and checked
    again. Each call returns its own copy.
    """
    stored, sums = path.read_bytes(), sums or {}
    listed = [sums.get(name, "") for name in (path.name, path.name.removesuffix(".gz"))]
    digest, key = "/".join([hashlib.sha1(stored).hexdigest(), *listed]), str(path.resolve())
    if _DECODED.get(key, ("", None))[0] != digest:
        _DECODED[key] = (digest, _decode(path, stored, sums))
    return _DECODED[key][1].clone()


def _decode(path: Path, stored: bytes, sums: dict[str, str]) -> torch.Tensor:
    raw = _unpacked(path, stored)
    for name, data in ((path.name, stored), (path.name.removesuffix(".gz"), raw)):
        if name in sums and (digest := hashlib.md5(data).hexdigest()) != sums[name]:
            raise DataError(_damaged(path, f"its MD5 is {digest}, {path.parent / CHECKSUMS} says {sums[name]}"))
    shape = _header(path, raw)
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(shape)).reshape(shape).copy())


def _unpacked(path: Path, stored: bytes) -> bytes:
    if path.suffix != ".gz":
        return stored
    try:
        return gzip.decompress(stored)
    except (OSError, EOFError, zlib.error) as exc:  # bad header, truncation, bad CRC or deflate data
        raise DataError(_damaged(path, f"it is not a valid gzip file ({exc})")) from exc


def _header(path: Path, raw: bytes) -> tuple[int, ...]:
    """The dimensions an IDX file declares, once its header and length agree with them."""
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] != UBYTE or not 1 <= raw[3] <= 4:
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes with 1 to 4 dimensions (its first bytes are "
            f"{raw[:4].hex(' ')}, expected 00 00 08 and the dimension count): restore it, or use the set's own files"
        )
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != 4 + 4 * ndim + math.prod(shape):
        raise DataError(_damaged(path, f"its header declares {'x'.join(map(str, shape))} bytes of data"))
    return shape


def _damaged(path: Path, why: str) -> str:
    return (
        f"{path}: checksum failed, {why}. The file is truncated or altered: restore it "
        f"(the bundled MNIST files are in {BUNDLED_ROOT}), or delete it and run with data.download=true."
    )


def _files(root: Path, download: bool) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError(
            f"data.root={root} does not exist. Create it (MNIST's files are then downloaded), put four IDX "
            f"files there, or drop the override to use the bundled MNIST files in {BUNDLED_ROOT}."
        )
    if any(find(root, name) is None for name in FILES.values()):
        if not download:
            missing = [n for n in FILES.values() if find(root, n) is None]
            raise DataError(f"data.root={root} lacks {', '.join(missing)}; set data.download=true or copy them there.")
        _download(root)
    return {key: find(root, name) for key, name in FILES.items()}  # type: ignore[misc]


def load(root: str | Path | None = None, download: bool = True, raw: bool = False) -> dict[str, torch.Tensor]:
    """All four files as tensors: images (N, pixels), normalised float32 (``standardize``) or, with ``raw``,
    uint8 pixels (a quarter of the memory; ``normalize`` them per batch); labels int64 (N,)."""
    root = root_of(root)
    files, sums = _files(root, download), checksums(root)
    tensors = {key: read_idx(path, sums) for key, path in files.items()}
    shape_of(tensors, root)  # the files agree with each other
    out = {}
    for split in ("train", "test"):
        images = tensors[f"{split}_x"].reshape(len(tensors[f"{split}_x"]), -1)
        out[f"{split}_x"] = images if raw else normalize(images, "standardize", statistics(root, tensors["train_x"]))
        out[f"{split}_y"] = tensors[f"{split}_y"].long()
    return out


def shape_of(tensors: dict[str, torch.Tensor], root: Path) -> Shape:
    """The data set's shape, once its four files agree: as many labels as images, images of one size in
    both splits, one label per image, classes numbered from 0."""
    x, y, tx, ty = (tensors[k] for k in ("train_x", "train_y", "test_x", "test_y"))
    why = None
    if y.dim() != 1 or ty.dim() != 1 or len(x) != len(y) or len(tx) != len(ty):
        why = f"{len(x)} training images with {len(y)} labels, {len(tx)} test images with {len(ty)} labels"
    elif x.shape[1:] != tx.shape[1:] or x.dim() < 2:
        why = f"training images of {list(x.shape[1:])} and test images of {list(tx.shape[1:])}"
    elif len(x) < 2 or len(tx) < 1:
        why = f"{len(x)} training and {len(tx)} test images"
    if why:
        raise DataError(f"data.root={root}: the four IDX files do not make one data set ({why}); use one set's files")
    classes = int(max(y.max(), ty.max())) + 1
    if classes < 2:
        raise DataError(f"data.root={root}: every label is 0, so there is nothing to classify; check the label files")
    return Shape(len(x), len(tx), tuple(x.shape[1:]), classes)


def describe(root: str | Path | None, download: bool = False) -> Shape | None:
    """The shape of the data set in ``root``, or None where its files are not there yet (they are downloaded, or
    refused, when the run loads them); with ``download`` missing files are fetched first, as loading would. The
    files are checked and decoded as loading does, once per process (``read_idx``): the run then finds them ready."""
    root = root_of(root)
    if download:
        _files(root, download)
    files = {key: find(root, name) for key, name in FILES.items()} if root.is_dir() else {}
    if not files or None in files.values():
        return None
    # a sweep's checks ask for every job: the files are read again only when one changed (size or time stamp)
    present = [p for p in (*files.values(), root / CHECKSUMS) if p is not None and p.is_file()]
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in present)
    if stamp not in _SHAPES:
        sums = checksums(root)
        _SHAPES[stamp] = shape_of({key: read_idx(path, sums) for key, path in files.items()}, root)  # type: ignore[arg-type]
    return _SHAPES[stamp]


_SHAPES: dict[tuple[tuple[str, int, int], ...], Shape] = {}


def split(
    data: dict[str, torch.Tensor], val_size: int, split_seed: int, limit_train: int | None = None
) -> dict[str, torch.Tensor]:
    """Train / validation / test: ``val_size`` images carved from the official training set by a
    seeded permutation; the official test set is passed through untouched."""
    order = torch.randperm(len(data["train_x"]), generator=torch.Generator().manual_seed(split_seed))
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
