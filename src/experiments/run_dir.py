"""Files of a run directory: atomic writes, a writability probe, and the commands that resume a run or finish its
sweep.

No Lightning or Hydra hooks here, and no torch: the Hydra callbacks import this module when Hydra
starts, before a config is checked, so a refused run answers without loading the training stack. The
checkpoint writer is Lightning's plugin, in ``callbacks.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from experiments.errors import CheckpointError, RunDirectoryError
from experiments.read_back import own_file, read_json


def is_main_process() -> bool:
    """False in the processes Lightning's DDP launcher starts (they get LOCAL_RANK / NODE_RANK > 0)."""
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


def check_writable(run_dir: Path, key: str = "hydra.run.dir") -> None:
    """Fail at start, naming the path, where an output directory cannot be created or written."""
    probe = run_dir / f".write-test-{os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0" * 65536)  # a full disk fails here rather than after an hour of training
        probe.unlink()
    except OSError as exc:
        raise RunDirectoryError(
            f"{key}={run_dir}: not writable ({exc.strerror}); free space there or set {key} to a writable path"
        ) from exc


def hydra_value(value: str) -> str:
    """A string as a Hydra override value, quoted where Hydra's grammar would read it otherwise."""
    if re.fullmatch(r"[\w./~+-]+", value):
        return value
    # inside quotes Hydra unescapes only backslashes before a quote or the closing quote
    escaped = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return f"'{escaped}'"


def resume_command(ckpt: Path, run_dir: Path, overrides: list[str]) -> str:
    """The same run, continued in the same directory; Hydra's copy of the resumed config goes beside
    the original (``.hydra/resumed-<time>``), so the first one is kept. Quoted for the shell and Hydra."""
    kept = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir=", "hydra.output_subdir="))]
    args = [
        *_script(),
        *kept,
        f"ckpt_path={hydra_value(str(ckpt))}",
        f"hydra.run.dir={hydra_value(str(run_dir))}",
        f"hydra.output_subdir=.hydra/resumed-{time.strftime('%Y%m%d-%H%M%S')}",
    ]
    return " ".join(shlex.quote(a) for a in args)


def stamp() -> str:
    """A time and process that name what one run or finish adds beside earlier files (``resumed-<stamp>``)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def _script() -> list[str]:
    script = sys.argv[0] or "train.py"  # a console script (mlp-train) runs as itself, train.py through python
    return ["python", script] if script.endswith(".py") else [Path(script).name]


def finish_command(sweep_dir: Path) -> str:
    """The command that finishes a stopped sweep in place: its completed jobs kept, the others resumed or run."""
    return " ".join(shlex.quote(a) for a in [*_script(), f"finish={sweep_dir}"])


def sweep_dir_of_job() -> Path | None:
    """The sweep directory of the Hydra job running now; None outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).resolve()


def checkpoint_in(ckpt_path: Any) -> Any:
    """``ckpt_path`` as eval.py takes it: a checkpoint file as it is, or a run directory, meaning the checkpoint
    its run tested (``best_ckpt`` in its ``metrics.json``, found in its ``checkpoints/`` should the directory
    have moved), else its only checkpoint. Only a file of that directory: a record naming another run's
    checkpoint, or one reached through a link, is refused in one line, as is a directory with none, or several
    and no record of which was tested."""
    directory = Path(str(ckpt_path)).expanduser()
    if not isinstance(ckpt_path, str) or not directory.is_dir():
        return ckpt_path
    record = directory / "metrics.json"
    if (best := read_json(record).get("best_ckpt")) is not None:
        return str(own_file(directory / "checkpoints", best, record, "best_ckpt"))
    found = sorted(p for p in {*directory.glob("*.ckpt"), *directory.glob("checkpoints/*.ckpt")} if not p.is_symlink())
    if len(found) == 1:
        return str(found[0])
    if not found:
        raise CheckpointError(f"ckpt_path={ckpt_path} is a directory without checkpoints: name a .ckpt file")
    names = ", ".join(str(p.relative_to(directory)) for p in found)
    raise CheckpointError(
        f"ckpt_path={ckpt_path} holds {len(found)} checkpoints and no record of the one its run tested: "
        f"name one ({names})"
    )
