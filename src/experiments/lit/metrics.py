"""The measures of a stage's outputs (accuracy, macro F1, ...), built from their one definition in ``names.py``.

The single run's ``Classifier`` and the fused path's members hold the same objects and feed them the same outputs,
so a measure added to ``names.MEASURES`` and ``names.METRICS`` reaches both paths, the record, the report and the
loggers with no other edit.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from experiments import names


def build_measures(stage: str, num_classes: int) -> nn.ModuleDict:
    """A torchmetrics object per measured metric of ``stage`` (``val``, ``test``), keyed by its measure."""
    built = {}
    for metric in names.measured(stage).values():
        target, options = names.MEASURES[metric.measure]
        module, _, cls = target.rpartition(".")
        built[metric.measure] = getattr(importlib.import_module(module), cls)(num_classes, **options)
    return nn.ModuleDict(built)


def update(measures: nn.ModuleDict, out: torch.Tensor, y: torch.Tensor) -> None:
    for metric in measures.values():
        metric.update(out, y)


def logged(stage: str, measures: nn.ModuleDict) -> dict[str, nn.Module]:
    """Each measure of ``stage`` by the name it is logged under."""
    return {name: measures[metric.measure] for name, metric in names.measured(stage).items()}


def compute(stage: str, measures: nn.ModuleDict) -> dict[str, float]:
    """Each measure over everything it was fed since its last reset, by logged name; then reset."""
    values = {name: float(metric.compute()) for name, metric in logged(stage, measures).items()}
    for metric in measures.values():
        metric.reset()
    return values
