"""How pixels become a network's inputs: scaled to [0, 1], or standardised by the training set's statistics, as
its data set declares them or as measured."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from experiments.errors import DataError
from experiments.read_back import read_json

DECLARED_STATS = "normalization.json"  # beside the data: {"mean": m, "std": s} of the training pixels in [0, 1]
NORMALIZATIONS = ("standardize", "unit")


@dataclass(frozen=True)
class PixelStats:
    """Mean and standard deviation of the training pixels scaled to [0, 1]; ``declared`` beside the data or
    measured (where they came from, not part of their value)."""

    mean: float
    std: float
    declared: bool = field(default=False, compare=False)


_STATS: dict[str, PixelStats] = {}  # SHA-1 of the training images -> their measured statistics


def statistics(root: Path, train_images: torch.Tensor) -> PixelStats:
    """The training pixels' mean and standard deviation (in [0, 1]): as declared in ``normalization.json``
    beside the files (the bundled MNIST files declare the published 0.1307 and 0.3081), else measured on
    ``train_images`` (all of the training file, whatever the validation split), once per process."""
    path = Path(root) / DECLARED_STATS
    if path.is_file():
        declared = read_json(path)  # {} for a file that is no JSON object
        try:
            stats = PixelStats(float(declared["mean"]), float(declared["std"]), declared=True)
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise DataError(
                f'{path}: not {{"mean": <number>, "std": <number>}} ({exc!r}); fix it or remove it'
            ) from exc
        if not (math.isfinite(stats.mean) and math.isfinite(stats.std) and stats.std > 0):
            raise DataError(f"{path}: mean {stats.mean} and std {stats.std}: the std must be > 0 and both finite")
        return stats
    key = hashlib.sha1(train_images.numpy().tobytes()).hexdigest()
    if key not in _STATS:
        pixels = train_images.to(torch.float64) / 255
        _STATS[key] = PixelStats(pixels.mean().item(), max(pixels.std().item(), 1e-12))
    return _STATS[key]


def normalize(images: torch.Tensor, mode: str, stats: PixelStats | None = None) -> torch.Tensor:
    """uint8 pixels to float32: ``standardize`` with the training set's ``stats`` (mean 0, std 1 over the
    training set), or ``unit``, pixels in [0, 1] (as Keras examples and the SNN tutorial do).

    The scaling is part of an experiment, not a detail: with [0, 1] inputs every first-layer pre-activation
    is a sum of non-negative pixels times weights, and ReLUs die at a different rate than with standardised ones.
    """
    images = images.to(torch.float32, copy=True)
    if mode == "unit":
        return images.mul_(1 / 255)
    if mode != "standardize" or stats is None:
        raise ValueError(f"data.normalize={mode!r}: must be one of {', '.join(NORMALIZATIONS)}, with the data's stats")
    # one multiply-add after the conversion: a third of the time of divide, subtract, divide
    return images.mul_(1 / (255 * stats.std)).add_(-stats.mean / stats.std)
