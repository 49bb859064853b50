"""The sweep report's CSV: one row per job, every swept key a column, for a spreadsheet or pandas.

Its cells come from files read back (a job's ``metrics.json`` and ``overrides.yaml``), so they are written as
data: a swept key never replaces a column of the record, and text a spreadsheet would run as a formula is quoted.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from experiments import names
from experiments.read_back import write_text


def write_csv(jobs: list[dict[str, Any]], path: Path) -> None:
    """One row per job; one column per swept key (its full name), beside the joined overrides. A swept key never
    overwrites a column of the record (an ``overrides.yaml`` that says ``status=...``): it stays in
    ``overrides``."""
    diag = sorted({k for j in jobs for k in j if k.startswith(names.MEASURED)})
    record = ["seed", "overrides", "status", *names.recorded(), "epochs", *diag, "train_seconds", "wall_seconds"]
    fixed = ["job", "config", "run_name", "tags", *record, "error"]
    swept = [k for k in jobs[0]["swept"] if k not in fixed]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, [*fixed[:4], *swept, *fixed[4:]])
    writer.writeheader()
    for j in jobs:
        writer.writerow(
            {k: _cell(v) for k, v in {**{k: j["swept"][k] for k in swept}, **{c: j.get(c) for c in fixed}}.items()}
        )
    write_text(path, out.getvalue())


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as written: text it would run as a formula gets a leading quote."""
    if not isinstance(value, str) or not value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return value
    try:
        float(value)  # -0.5 is a number, not a formula
        return value
    except ValueError:
        return "'" + value
