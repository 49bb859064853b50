"""What a run changes in the process that runs it, taken before and put back after.

Runs share pytest's process (a subprocess pays torch's, Lightning's and Hydra's imports and decodes MNIST again
before doing anything), so each must leave the next test the process a fresh one would have given it: the same
working directory, environment, import path, Hydra's singletons, logging, warnings filters, torch's settings,
random states, signal handlers and no worker processes. ``restored()`` is the one mechanism: the conftest wraps
every test in it and ``run_script`` every in-process run; ``taken()`` is what ``tests/test_process_state.py``
compares.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning  # noqa: F401  (its import sets warnings' format: a fresh run's process has it too)
import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobRuntime
from hydra.version import VersionBase
from omegaconf import OmegaConf
from packaging.version import Version

import experiments.run.cli  # noqa: F401  (and the project's: the process state a run starts from)

START_PATH = list(sys.path)

# SIGKILL and SIGSTOP cannot be caught; the others are all a run could have taken over.
SIGNALS = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]


def _loggers() -> dict[str, logging.Logger]:
    named = {k: v for k, v in logging.root.manager.loggerDict.items() if isinstance(v, logging.Logger)}
    return {"": logging.root, **named}


UNTOUCHED = (logging.NOTSET, (), (), True, False)  # a logger as ``getLogger`` makes it


def _logger_state(lg: logging.Logger) -> tuple:
    return lg.level, tuple(lg.handlers), tuple(lg.filters), lg.propagate, lg.disabled


def _logging() -> dict[str, tuple]:
    """Every logger that is not as ``getLogger`` made it (one made since is no change)."""
    loggers = {name: _logger_state(lg) for name, lg in _loggers().items()}
    return {k: v for k, v in loggers.items() if v != UNTOUCHED} | {"<disable>": (logging.root.manager.disable,)}


def _set_logging(state: dict[str, tuple]) -> None:
    logging.disable(state["<disable>"][0])
    for name, lg in _loggers().items():
        wanted = state.get(name, UNTOUCHED)
        if _logger_state(lg) == wanted:
            continue  # setLevel empties every logger's cache: only where something changed
        level, handlers, filters, lg.propagate, lg.disabled = wanted
        lg.setLevel(level)
        lg.handlers[:], lg.filters[:] = list(handlers), list(filters)


def _torch() -> dict[str, Any]:
    return {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "default_dtype": torch.get_default_dtype(),
        "grad": torch.is_grad_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "cudnn": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic),
    }


def _set_torch(state: dict[str, Any]) -> None:
    torch.set_num_threads(state["threads"])
    torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
    torch.set_float32_matmul_precision(state["matmul_precision"])
    torch.set_default_dtype(state["default_dtype"])
    torch.set_grad_enabled(state["grad"])
    torch.set_anomaly_enabled(state["anomaly"])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = state["cudnn"]
    if "torch._dynamo" in sys.modules:  # compile=true: its compiled frames go with the run
        torch.compiler.reset()


def _random() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_random(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _outside(module: Any, path: list[str]) -> bool:
    """A module imported from a directory a run put on the path (a user's own parts, ``tests/``'s fault
    injection): another test must import its own copy, as a fresh process would."""
    file = getattr(module, "__file__", None)
    return isinstance(file, str) and os.path.isabs(file) and not any(file.startswith(p) for p in path if p)


def _hydra() -> tuple[Any, ...]:
    """What a run leaves in Hydra's singletons, by their public attributes: whether Hydra is initialised (a
    run that failed leaves it so), the job's config, the runtime values and the version base. (Hydra's own
    ``Singleton.get_state``/``set_state`` would do all, but its ``set_state`` scans every plugin again: a tenth of
    a second around each of a thousand tests.)"""
    runtime = JobRuntime.instance().conf
    return (
        GlobalHydra.instance().is_initialized(),
        HydraConfig.instance().cfg,
        OmegaConf.to_container(runtime) if runtime is not None else None,
        VersionBase.instance().getbase(),
    )


def _set_hydra(state: tuple[Any, ...]) -> None:
    initialized, HydraConfig.instance().cfg, runtime, base = state
    if GlobalHydra.instance().is_initialized() and not initialized:
        GlobalHydra.instance().clear()
    JobRuntime.instance().conf = OmegaConf.create(runtime) if runtime is not None else None
    if isinstance(base, Version):  # the suite starts from train.py's 1.3 (conftest)
        VersionBase.instance().setbase(base)


def _start_catching() -> warnings.catch_warnings:
    """Python's own way to put the warnings filters back (and forget which warnings were shown already)."""
    caught = warnings.catch_warnings()
    caught.__enter__()
    return caught


def _set_signals(handlers: dict[int, Any]) -> None:
    for number, handler in handlers.items():
        if handler is not None and signal.getsignal(number) is not handler:
            signal.signal(number, handler)


def _set_streams(streams: tuple) -> None:
    sys.stdout, sys.stderr, sys.excepthook = streams


def _workers() -> list[int]:
    return sorted(p.pid for p in multiprocessing.active_children())


def _stop_workers(before: list[int]) -> None:
    """joblib's worker pool (the joblib launcher's) outlives the sweep that started it, for the next sweep
    to reuse; but its workers keep the working directory, environment and import path they started with,
    so a later test's sweep would write its jobs into an earlier test's directory. Stopped where the body
    started workers, as a run's process's end stops it (a test that started none leaves the pool alone)."""
    if _workers() != before and "joblib.externals.loky" in sys.modules:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)


def _set_environ(env: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(env)


# Each piece: how to read it, and how to put back what was read.
PIECES: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "cwd": (os.getcwd, os.chdir),
    "environ": (lambda: dict(os.environ), _set_environ),
    "argv": (lambda: list(sys.argv), lambda argv: setattr(sys, "argv", argv)),
    "path": (lambda: list(sys.path), lambda path: setattr(sys, "path", path)),
    "streams": (lambda: (sys.stdout, sys.stderr, sys.excepthook), _set_streams),
    "hydra": (_hydra, _set_hydra),
    "logging": (_logging, _set_logging),
    "warnings": (_start_catching, lambda caught: caught.__exit__(None, None, None)),
    "torch": (_torch, _set_torch),
    "random": (_random, _set_random),
    "signals": (lambda: {s: signal.getsignal(s) for s in SIGNALS}, _set_signals),
    "workers": (_workers, _stop_workers),
}


def taken() -> dict[str, Any]:
    """Every piece as a value that compares equal exactly when nothing changed (Hydra's singletons by what
    a run sees of them; random states as bytes; modules from outside the start's import path by name)."""
    values = {name: read() for name, (read, _) in PIECES.items() if name not in ("random", "warnings")}
    values["warnings"] = (tuple(warnings.filters), warnings.showwarning, warnings.formatwarning)
    values["random"] = {k: repr(v) if k != "torch" else bytes(v.numpy()) for k, v in _random().items()}
    values["modules"] = sorted(name for name, m in sys.modules.items() if _outside(m, START_PATH))
    return values


@contextmanager
def restored() -> Iterator[None]:
    """Everything in ``PIECES`` put back as it was, and modules imported from outside the import path of the
    start forgotten, whatever the body did or raised."""
    before = {name: read() for name, (read, _) in PIECES.items()}
    modules, handlers = set(sys.modules), _handlers()
    try:
        yield
    finally:
        for name in set(sys.modules) - modules:
            if _outside(sys.modules[name], before["path"]):
                del sys.modules[name]
        added = _handlers() - handlers
        for name, (_, put) in reversed(PIECES.items()):
            put(before[name])
        for handler in added:  # a run's log file, closed as its process's end would close it
            handler.close()


def _handlers() -> set[logging.Handler]:
    return {h for lg in _loggers().values() for h in lg.handlers}
