"""What a resumed checkpoint's callback states may restore: the rule of every file read back (``read_back``)
applied where Lightning restores them.

Lightning hands each callback its state from the checkpoint. A ``ModelCheckpoint``'s state names files: its best
and last checkpoints, which it later tests, and removes once a better one is saved. Taken as written, a state
edited to name ``<run>/checkpoints/../../elsewhere`` makes the resumed run delete that directory, and one naming
another run's best checkpoint makes the run report that run's accuracy as its own. So each named file is taken
by its name from the callback's own directory (where a moved run or sweep finds it too) and must be a file
there; a state written for another directory (a checkpoint continued in a new run directory) restores no paths
at all, so the new run's best is its own. The diagnostics' histories must be numbers by name.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from experiments.read_back import damaged

PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")  # what ModelCheckpoint tests or removes
SCORES = ("best_model_score", "kth_value", "current_score")
SERIES = ("history", "epoch_readings")  # the project's callbacks: name -> per-epoch numbers
LATEST = ("latest",)  # name -> one number


def _number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _own_path(named: Any, own: Path, source: Any, key: str) -> str:
    """``named`` as the file of that name in ``own``; refused where it is none (another run's, ``..``)."""
    if not isinstance(named, str):
        raise damaged(source, key, f"is {named!r}, not a path")
    if not named:
        return named
    path = own / Path(named).name
    if Path(named).name in ("", ".", "..") or path.is_symlink() or not path.is_file():
        raise damaged(source, key, f"names {named!r}, which is no checkpoint of this run's {own}")
    return str(path)


def confine(checkpoint: dict[str, Any], source: Any, callbacks: list[Any]) -> None:
    """Rebase, in place, the files each of ``callbacks``' ``ModelCheckpoint`` states names onto that callback's
    own directory, or refuse the checkpoint in one line; check the other states' histories."""
    states = checkpoint.get("callbacks") or {}
    if not isinstance(states, dict):
        raise damaged(source, "callbacks", f"is a {type(states).__name__}, not a mapping")
    for name, state in states.items():
        _check_series(state, source, f"callbacks[{name}]")
    for callback in (c for c in callbacks if isinstance(c, ModelCheckpoint) and c.dirpath):
        state, key = states.get(callback.state_key), f"callbacks[{callback.state_key}]"
        if not isinstance(state, dict):
            continue
        own = Path(callback.dirpath)
        for score in SCORES:
            if state.get(score) is not None and not _number(state[score]):
                raise damaged(source, f"{key}.{score}", f"is {state[score]!r}, not a number")
        written_for = state.get("dirpath")
        same = isinstance(written_for, str) and os.path.realpath(written_for) == os.path.realpath(own)
        if not same and Path(str(source)).resolve().parent != own.resolve():
            # another directory's checkpoint: Lightning would still take its best_model_path; take nothing
            state.update(best_model_path="", kth_best_model_path="", last_model_path="", best_k_models={})
            state.update(best_model_score=None)
            continue
        for path_key in PATHS:
            state[path_key] = _own_path(state.get(path_key, ""), own, source, f"{key}.{path_key}")
        best_k = state.get("best_k_models") or {}
        if not isinstance(best_k, dict) or not all(_number(v) for v in best_k.values()):
            raise damaged(source, f"{key}.best_k_models", "is not a mapping of checkpoint paths to scores")
        state["best_k_models"] = {_own_path(p, own, source, f"{key}.best_k_models"): v for p, v in best_k.items()}
        state["dirpath"] = callback.dirpath  # the same directory: Lightning restores the rebased paths


def _check_series(state: Any, source: Any, key: str) -> None:
    if not isinstance(state, dict):
        return
    for part in (p for p in (*SERIES, *LATEST) if p in state):
        values = state[part]
        ok = isinstance(values, dict) and all(
            isinstance(k, str)
            and (
                all(_number(x) for x in v) if part in SERIES and isinstance(v, list) else part in LATEST and _number(v)
            )
            for k, v in values.items()
        )
        if not ok:
            what = "lists of numbers" if part in SERIES else "numbers"
            raise damaged(source, f"{key}.{part}", f"is not a mapping of names to {what}")
    if "elapsed" in state and not (_number(state["elapsed"]) and math.isfinite(float(state["elapsed"]))):
        raise damaged(source, f"{key}.elapsed", f"is {state['elapsed']!r}, not a number of seconds")


class OwnCheckpointPaths(L.Callback):
    """Applies ``confine`` to the checkpoint Lightning restores, before the callbacks load their states from it
    (Lightning calls every callback's ``on_load_checkpoint`` first, with the whole checkpoint)."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        confine(checkpoint, trainer.ckpt_path, trainer.checkpoint_callbacks)
