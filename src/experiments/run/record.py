"""``metrics.json``: a run's record, and its one writer, for every status a run can end with.

A run writes it whole (atomically) at each change of its state, a fused group's members each their own,
and a refused or crashed job gets ``failed`` through the same writer. No torch and no Lightning here:
the entry points record a refused config before the training stack is imported.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.names import Status
from experiments.read_back import read_json, write_json
from experiments.run_dir import is_main_process


@dataclass
class Record:
    """A run's ``metrics.json``: ``update`` changes it, stamps the seconds since the run started, and writes
    it whole."""

    path: Path
    data: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    writes: bool = True  # DDP's extra ranks train, but write no files of their own

    def update(self, **values: Any) -> dict[str, Any]:
        self.data.update(values, wall_seconds=round(time.perf_counter() - self.started, 3))
        return self.save()

    def save(self) -> dict[str, Any]:
        if self.writes:
            write_json(self.path, self.data)
        return self.data


def first_record(
    run_dir: Path, choices: dict[str, str], overrides: list[str], labels: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What ``metrics.json`` says from a run's start: it is running, where, as which choices and overrides,
    and its labels (``run_name``, ``tags``)."""
    return {
        "status": Status.RUNNING,
        "run_dir": str(run_dir),
        "host": socket.gethostname(),  # which machine and process trained it: a cluster's node, a worker
        "pid": os.getpid(),
        "overrides": overrides,
        "choices": {k: v for k, v in choices.items() if not k.startswith("hydra")},
        **(labels or {}),
    }


def record_failure(run_dir: Path, error: str, overrides: list[str], status: Status = Status.FAILED) -> None:
    """``failed`` (or ``interrupted`` before training began): what the run recorded so far (its time and an
    earlier interruption's way back included), plus the error."""
    path = run_dir / "metrics.json"
    if not is_main_process() or not run_dir.is_dir():
        return
    record = Record(path, read_json(path))
    record.data.update(status=status, error=error, run_dir=str(run_dir), overrides=overrides)
    record.save()
