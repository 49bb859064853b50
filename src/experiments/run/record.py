"""The Hydra entry points behind ``train.py`` and ``eval.py``: config in, one line of outcome out.

Errors a user can fix (the project's own ``ExperimentError`` types: bad config values, damaged data
files, refused checkpoints, unwritable directories) print as one line and exit 2, before any config
dump; ``HYDRA_FULL_ERROR=1`` shows the traceback instead. Anything else is a bug and keeps its
traceback. In a sweep a failing job is recorded in its ``metrics.json`` and the sweep goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from experiments.run_dir import write_json


def record_failure(run_dir: Path, error: str, overrides: list[str]) -> None:
    """The one place that records ``failed``: what the run recorded so far, plus the error."""
    from experiments.run_dir import is_main_process, read_json, write_json

    path = run_dir / "metrics.json"
    if not is_main_process() or not run_dir.is_dir():
        return
    write_json(
        path, {**read_json(path), "status": "failed", "error": error, "run_dir": str(run_dir), "overrides": overrides}
    )


@dataclass
class Record:
    """``metrics.json``: what the run is and how it ended, rewritten whole (atomically) at each change."""

    path: Path
    data: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    write: bool = True  # DDP's extra ranks train, but write no files of their own

    def update(self, **values: Any) -> dict[str, Any]:
        self.data.update(values, wall_seconds=round(time.perf_counter() - self.started, 3))
        if self.write:
            write_json(self.path, self.data)
        return self.data


def first_record(run_dir: Path, choices: dict[str, str], overrides: list[str]) -> dict[str, Any]:
    """What ``metrics.json`` says from a run's start: it is running, where, and as which choices and overrides."""
    return {
        "status": "running",
        "run_dir": str(run_dir),
        "overrides": overrides,
        "choices": {k: v for k, v in choices.items() if not k.startswith("hydra")},
    }


def how_it_ran(trainer: L.Trainer) -> dict[str, Any]:
    """The record's account of the loop: how far it got, on how many threads, on which device."""
    return {
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "device": str(trainer.strategy.root_device),
    }
