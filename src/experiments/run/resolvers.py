"""The resolvers the configs use: ``${run_id:}`` in run directories, ``${path_part:...}`` for a sweep job's
directory name, ``${repeat:64,3}`` for a sweeper's width and depth, ``${readable_run_name:}`` for a run's default
name, ``${as_mlflow_tags:${tags}}`` for MLflow, ``${config_groups:}`` for ``--help``. The entry points register
them before Hydra composes a config; so does anything that composes one itself (the notebook, the tests)."""

from __future__ import annotations

import hashlib
import os
import re
import time

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from experiments.config.catalogue import overview


def _run_id() -> str:
    """Distinguishes runs started in the same second: process id plus sub-second clock."""
    return f"{time.time_ns() // 1000 % 1_000_000:06d}-{os.getpid()}"


def _readable_run_name() -> str:
    """A run's name where none is given: its overrides as Hydra names a sweep's job directory
    (``activation=elu,optimizer.lr=0.01``), or ``defaults``."""
    if not HydraConfig.initialized():
        return "defaults"
    # as typed: an override holding ${...} is named, not resolved (the checks report it where it is set)
    return OmegaConf.to_container(HydraConfig.get().job, resolve=False).get("override_dirname") or "defaults"


def _path_part(text: str) -> str:
    """``text`` as one directory name: a sweep job's directory is always a direct child of the sweep's, whatever
    its override values hold (``data.root=/a/b``, ``..``, a newline); one too long for a file system is cut,
    with a digest of the whole so that two jobs keep two names."""
    name = re.sub(r"[/\\\x00-\x1f\x7f]", "_", str(text))
    if len(name.encode()) <= 200:
        return name
    return name.encode()[:180].decode(errors="ignore") + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def register_resolvers() -> None:
    """The resolvers of this module's docstring; ``${repeat:64,3}`` -> [64, 64, 64], so a sweeper can search
    width and depth as two numbers. Called by the entry points before Hydra composes the config."""
    OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("repeat", lambda width, depth: [int(width)] * int(depth), replace=True)
    OmegaConf.register_new_resolver("readable_run_name", _readable_run_name, replace=True)
    OmegaConf.register_new_resolver("path_part", _path_part, replace=True)
    OmegaConf.register_new_resolver("config_groups", lambda: "\n".join(overview()), replace=True)  # --help
    # MLflow's run tags are a mapping: each of the run's tags a key of its own
    OmegaConf.register_new_resolver("as_mlflow_tags", lambda tags: {str(t): "" for t in tags or []}, replace=True)
