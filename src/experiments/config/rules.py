"""Every config value checked before anything is built, each problem as one line: key, value, valid range.

One mechanism: the ``RULES`` table (a key, ``*`` matching any name at its level, and the check of its
value) plus ``domain_problems``, the rules that relate keys to each other or to the machine (full batch with
``optimizer=gd``, devices that exist). Hydra already refuses unknown keys and unknown group options
(listing the valid ones); this catches values that compose fine but cannot train. A key added with ``+``
composes too and would reach a constructor as an unexpected argument: ``argument_problems`` refuses
those that the section's ``_target_`` does not take, or that the project passes it itself.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from experiments import names
from experiments.data.idx import Shape, describe
from experiments.data.normalization import NORMALIZATIONS
from experiments.errors import ConfigError, DataError
from experiments.nn.losses import OUTPUT_ACTIVATIONS, check_output_activation
from experiments.nn.model import INITS, training_bytes
from experiments.sweep_dir import OPTUNA_SWEEPER

__all__ = ["ConfigError", "RULES", "problems", "validate"]

Check = Callable[[Any], str | None]  # returns the valid range when the value is outside it


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """A finite number a float can hold (an int past its range, ``10**400``, is none: torch could not take it)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def integer(low: int, high: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if _is_int(v) and v >= low and (high is None or v <= high):
            return None
        return f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")

    return check


def number(low: float, high: float = math.inf, low_open: bool = True, high_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        ok = _is_num(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return None if ok else f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    return check


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def one_of(*options: Any) -> Check:
    shown = ", ".join(dict.fromkeys(map(str, options)))  # 32 and "32" read the same

    def check(v: Any) -> str | None:  # the same type too: 1 is not true, 0 is not false
        return None if any(type(v) is type(o) and v == o for o in options) else f"one of {shown}"

    return check


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def batch_size(v: Any) -> str | None:
    return None if v == "full" or (_is_int(v) and v >= 1) else "an integer >= 1 or full"


def hidden_sizes(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) > 0 and all(_is_int(h) and 1 <= h <= 65536 for h in v)
    return None if ok else "a non-empty list of integers in [1, 65536], e.g. [64,64,64]"


def batch_limit(v: Any) -> str | None:
    ok = v is None or (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1)
    return None if ok else "an integer >= 1 (batches) or a fraction in (0, 1]"


def batches_or_fraction(low: int) -> Check:
    """Lightning's ``overfit_batches`` / ``val_check_interval`` kind: a count of batches, or a fraction of them."""

    def check(v: Any) -> str | None:
        ok = (_is_int(v) and v >= low) or (isinstance(v, float) and 0 < v <= 1)
        return None if ok else f"an integer >= {low} (batches) or a fraction in (0, 1]"

    return check


def profiler(v: Any) -> str | None:
    named = v in (None, "simple", "advanced", "pytorch")
    built = isinstance(v, (dict, DictConfig)) and str(v.get("_target_", "")).startswith("lightning.pytorch.profilers.")
    return None if named or built else "null, simple, advanced, pytorch, or a lightning.pytorch.profilers class"


def existing_file(v: Any) -> str | None:
    return None if isinstance(v, str) and Path(v).expanduser().is_file() else "the path of an existing checkpoint file"


def checkpoint_or_run(v: Any) -> str | None:
    return None if existing_file(v) is None else "a checkpoint file, or a run directory whose run tested one"


def existing_dir(v: Any) -> str | None:
    return None if isinstance(v, str) and v and Path(v).expanduser().is_dir() else "an existing directory"


def betas(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v)
    return None if ok else "two numbers in [0, 1), e.g. [0.9,0.999]"


def devices(v: Any) -> str | None:
    ok = v == "auto" or (_is_int(v) and v >= 1) or (isinstance(v, list) and v and all(_is_int(d) and d >= 0 for d in v))
    return None if ok else "auto, an integer >= 1, or a list of device indices"


def metric(v: Any) -> str | None:
    """A per-epoch metric as the LightningModule logs it (``names.monitorable``)."""
    valid = names.monitorable()
    return None if isinstance(v, str) and v in valid else f"one of {', '.join(valid)}"


RULES: dict[str, Check] = {
    "run_name": lambda v: None if isinstance(v, str) and v.strip() else "a non-empty name",
    "tags": lambda v: (
        None
        if isinstance(v, list) and all(isinstance(t, str) and t.strip() and "," not in t for t in v)
        else "a list of names without commas, e.g. [baseline,lr_study]"
    ),
    "seed": integer(0, 2**32 - 1),
    "deterministic": boolean,
    "compile": one_of(False, True, "default", "reduce-overhead", "max-autotune"),
    "threads": lambda v: None if v == "auto" or (_is_int(v) and v >= 1) else "auto or an integer >= 1",
    "ckpt_path": optional(existing_file),
    "print_config": boolean,
    "optimized_metric": metric,
    "show": lambda v: (
        None
        if isinstance(v, list) and all(names.shown(m) for m in v)
        else f"a list of what the record holds: {', '.join(names.recorded())}, or diag/... and collapse/... values"
    ),
    "data.root": optional(existing_dir),
    "data.batch_size": batch_size,
    "data.eval_batch_size": integer(1),
    "data.val_size": integer(1),
    "data.split_seed": integer(0),
    "data.shuffle_seed": integer(0, 2**32 - 1),
    "data.on_device": boolean,
    "data.download": boolean,
    "data.limit_train": optional(integer(1)),
    "data.normalize": one_of(*NORMALIZATIONS),
    "model.hidden_sizes": hidden_sizes,
    "model.init": one_of(*INITS),
    "model.bias_init": optional(number(-math.inf, math.inf)),
    "model.batch_norm": boolean,
    "model.dropout": number(0, 1, low_open=False, high_open=True),
    "model.output_activation": one_of(*OUTPUT_ACTIVATIONS),
    "activation.negative_slope": number(0, 1, low_open=False),
    "activation.alpha": number(0),
    "activation.beta": number(0),
    "activation.threshold": number(0),
    "activation.lower": number(0, 1, low_open=False),
    "activation.upper": number(0, 1, low_open=False),
    "activation.init": number(0, 1, low_open=False),
    "activation.num_parameters": lambda v: None if v == 1 or v == "per_unit" else "1 or per_unit",
    "activation.approximate": one_of("none", "tanh"),
    "activation.inplace": boolean,
    "loss.label_smoothing": number(0, 1, low_open=False, high_open=True),
    "optimizer.lr": number(0, 1e6),
    "optimizer.momentum": number(0, 1, low_open=False, high_open=True),
    "optimizer.nesterov": boolean,
    "optimizer.weight_decay": number(0, 1e3, low_open=False),
    "optimizer.betas": betas,
    "optimizer.alpha": number(0, 1, high_open=True),
    "optimizer.eps": number(0, 1),
    "optimizer.dampening": number(0, 1, low_open=False),
    "optimizer.lr_decay": number(0, 1e3, low_open=False),
    "optimizer.initial_accumulator_value": number(0, low_open=False),
    "scheduler.interval": one_of("step", "epoch"),
    "scheduler.frequency": integer(1),
    "scheduler.scheduler.step_size": integer(1),
    "scheduler.scheduler.gamma": number(0, 1),
    "scheduler.scheduler.eta_min": number(0, low_open=False),
    "scheduler.scheduler.T_max": optional(integer(1)),
    "scheduler.scheduler.max_lr": optional(number(0, 1e6)),
    "scheduler.scheduler.pct_start": number(0, 1, high_open=True),
    "trainer.max_epochs": integer(1, 100_000),
    "trainer.max_steps": lambda v: None if _is_int(v) and (v == -1 or v >= 1) else "-1 (no limit) or an integer >= 1",
    "trainer.log_every_n_steps": integer(1),
    "trainer.limit_train_batches": batch_limit,
    "trainer.limit_val_batches": batch_limit,
    "trainer.limit_test_batches": batch_limit,
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.devices": devices,
    "trainer.num_nodes": integer(1, 1),
    "trainer.precision": one_of("32-true", "32", 32, "16-mixed", "bf16-mixed", "bf16-true", "64-true"),
    "trainer.gradient_clip_val": optional(number(0)),
    "trainer.gradient_clip_algorithm": optional(one_of("norm", "value")),
    "trainer.accumulate_grad_batches": integer(1),
    "trainer.check_val_every_n_epoch": optional(integer(1)),
    "trainer.enable_checkpointing": boolean,
    "trainer.enable_progress_bar": optional(boolean),
    "trainer.enable_model_summary": optional(boolean),
    "trainer.fast_dev_run": lambda v: (
        None if isinstance(v, bool) or (_is_int(v) and v >= 1) else "true, false or an integer >= 1 (batches)"
    ),
    "trainer.overfit_batches": batches_or_fraction(0),
    "trainer.val_check_interval": optional(batches_or_fraction(1)),
    "trainer.num_sanity_val_steps": integer(-1),
    "trainer.min_epochs": optional(integer(0)),
    "trainer.min_steps": optional(integer(0)),
    "trainer.profiler": profiler,
    "trainer.detect_anomaly": boolean,
    "trainer.benchmark": optional(boolean),
    "callbacks.*.every_n_train_steps": optional(integer(1)),
    "callbacks.*.every_n_epochs": optional(integer(0)),
    "callbacks.*.save_top_k": integer(-1),
    "callbacks.*.refresh_rate": integer(1),
    "callbacks.*.patience": integer(0),
    "callbacks.*.min_delta": number(0, low_open=False),
    "callbacks.*.monitor": optional(metric),
    "callbacks.*.mode": one_of("min", "max"),
    "callbacks.*.save_last": one_of(None, True, False, "link"),
    "callbacks.*.save_weights_only": boolean,
    "callbacks.*.save_on_train_epoch_end": optional(boolean),
    "callbacks.*.auto_insert_metric_name": boolean,
    "callbacks.*.verbose": boolean,
    "callbacks.*.leave": boolean,
    "callbacks.*.check_finite": boolean,
    "callbacks.*.check_on_train_epoch_end": optional(boolean),
    "callbacks.*.stopping_threshold": optional(number(-math.inf, math.inf)),
    "callbacks.*.divergence_threshold": optional(number(-math.inf, math.inf)),
    "logger.*.flush_secs": number(0),
    "logger.*.max_queue": integer(1),
    "logger.*.flush_logs_every_n_steps": integer(1),
    "logger.*.log_graph": boolean,
    "logger.*.default_hp_metric": boolean,
    "diagnostics.*.probe_size": integer(1, 5000),
    "diagnostics.*.every_n_steps": integer(1),
    "diagnostics.*.every_n_epochs": integer(1),
    "diagnostics.*.bins": integer(1, 10_000),
    "diagnostics.*.saturation_threshold": number(0),
    "diagnostics.*.split": one_of("val", "test"),
}


def _keys(node: Any, parts: list[str], prefix: str = "") -> Iterator[str]:
    """Every key of the config that a rule's dotted pattern matches."""
    if not isinstance(node, DictConfig):
        return
    head, rest = parts[0], parts[1:]
    keys = [k for k in node if isinstance(k, str)]  # with the ??? ones, which `in` does not see
    names = keys if head == "*" else [head] if head in keys else []
    for name in names:
        key = f"{prefix}{'.' if prefix else ''}{name}"
        if not rest:
            yield key
            continue
        try:
            child = node[name]
        except OmegaConfBaseException:  # an interpolation that cannot resolve: reported by its own rule
            continue
        yield from _keys(child, rest, key)


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key``; an interpolation that cannot resolve is a problem of that key."""
    node = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _machine_problems(trainer: DictConfig | dict[str, Any], key: str = "trainer.accelerator") -> list[str]:
    """Accelerators and device counts that this machine does not have; ``key`` names the accelerator's."""
    import torch

    accelerator, n = trainer.get("accelerator"), trainer.get("devices")
    found = []
    if accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        found.append(f"{key}='tpu' is not available: torch_xla is not installed; use auto, cpu or gpu")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        found.append(f"{key}={accelerator!r} is not available: PyTorch sees no CUDA GPU here; use auto or cpu")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        found.append(f"{key}='mps' is not available on this machine; use auto or cpu")
    if not found and (_is_int(n) or isinstance(n, list)):
        count = n if _is_int(n) else len(n)
        uses_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        have = torch.cuda.device_count() if uses_gpu else (os.cpu_count() or 1)
        kind = "GPUs" if uses_gpu else "CPU cores"
        if count > have:
            found.append(f"trainer.devices={n!r} is invalid: this machine has {have} {kind}; ask for at most {have}")
    return found


# Launcher and sweeper settings that fail only once a sweep has started, by the plugin's _target_.
def ray_address(value: Any) -> str | None:
    """A Ray cluster's ``host:port`` must answer before the sweep starts (Ray itself would wait a minute, then
    fail with a traceback); null (a cluster started for the sweep), ``auto`` and ``ray://`` are Ray's to find."""
    import socket

    if value is None or str(value) == "auto" or str(value).startswith("ray://"):
        return None
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit():
        return "host:port of a Ray cluster's head (ray start --head prints it), auto, or null"
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        return (
            f"the address of a running Ray cluster, and none answers there ({exc.strerror or exc}): start one with "
            f"ray start --head, or leave the address null for a cluster of this machine"
        )
    return None


SWEEP_RULES: dict[str, dict[str, Check]] = {
    "hydra_plugins.ray_jobs.ray_jobs.RayJobsLauncher": {"launcher.ray.init.address": ray_address},
    "hydra_plugins.fused_launcher.fused_launcher.FusedLauncher": {"launcher.ray.init.address": ray_address},
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": {
        "launcher.n_jobs": lambda v: None if _is_int(v) and v != 0 else "a non-zero integer (-1: every core)"
    },
    OPTUNA_SWEEPER: {
        "sweeper.n_trials": integer(1),
        "sweeper.n_jobs": integer(1),
        "sweeper.max_failure_rate": number(0, 1, low_open=False),
    },
}


def sweep_problems(hydra: DictConfig) -> list[str]:
    """Problems of Hydra's launcher and sweeper settings (``hydra`` is the config's ``hydra`` node)."""
    found = []
    for plugin in ("launcher", "sweeper"):
        for key, check in SWEEP_RULES.get(str((hydra.get(plugin) or {}).get("_target_")), {}).items():
            value = OmegaConf.select(hydra, key)
            if (valid := check(value)) is not None:
                found.append(f"hydra.{key}={value!r} is invalid: must be {valid}")
    return found


def problems(
    cfg: DictConfig,
    extra: dict[str, Check] | None = None,
    choices: dict[str, Any] | None = None,
    multirun: bool = False,
) -> list[str]:
    """All problems in ``cfg``, or an empty list. ``choices`` are Hydra's group choices (``optimizer: gd``)."""
    if found := rule_problems(cfg, {**RULES, **(extra or {})}):
        return found
    try:  # a key no rule names may still hold an interpolation that cannot resolve
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        return [f"{getattr(exc, 'full_key', None) or 'config'} cannot be resolved: {str(exc).splitlines()[0]}"]
    return entry_problems(cfg) or domain_problems(cfg, choices or {}, multirun) or argument_problems(cfg)


def rule_problems(cfg: DictConfig, rules: dict[str, Check]) -> list[str]:
    """Each value that a rule of ``rules`` names and that is outside its range, as ``key=value is invalid``: the
    command line's values, and a checkpoint's read back (``section_rules``)."""
    found = []
    for pattern, check in rules.items():
        for key in _keys(cfg, pattern.split(".")):
            if OmegaConf.is_missing(cfg, key):
                found.append(f"{key} is required: add {key}=<value> to the command")
                continue
            try:
                value = _value(cfg, key)
            except OmegaConfBaseException as exc:
                found.append(f"{key} cannot be resolved: {str(exc).splitlines()[0]}")
                continue
            parent, _, name = key.rpartition(".")
            if OmegaConf.is_interpolation(OmegaConf.select(cfg, parent) if parent else cfg, name):
                continue  # a copy of another key's value: checked, and reported, where it is set
            if (valid := check(value)) is not None:
                found.append(f"{key}={value!r} is invalid: must be {valid}")
    return found


def section_rules(*sections: str) -> dict[str, Check]:
    """The rules of the keys below ``sections`` (``model``, ``data.normalize``)."""
    return {k: v for k, v in RULES.items() if any(k == s or k.startswith(f"{s}.") for s in sections)}


def domain_problems(cfg: DictConfig, choices: dict[str, Any], multirun: bool = False) -> list[str]:
    """Rules that relate values to each other or to the machine."""
    found = []
    activation = cfg.get("activation") or {}
    lower, upper = activation.get("lower"), activation.get("upper")
    if _is_num(lower) and _is_num(upper) and lower > upper:
        found.append(f"activation.lower={lower} > activation.upper={upper}: RReLU needs lower <= upper")
    model, loss = cfg.get("model") or {}, cfg.get("loss") or {}
    if isinstance(loss.get("_target_"), str):
        verdict = check_output_activation(model.get("output_activation", "none"), loss["_target_"])
        if verdict and verdict.refuse:
            found.append(verdict.message)
    data = cfg.get("data") or {}
    if choices.get("optimizer") == "gd" and data.get("batch_size") != "full":
        found.append(
            f"data.batch_size={data.get('batch_size')!r} with optimizer=gd: gradient descent is full-batch; "
            f"use optimizer=sgd for mini-batches, or drop the data.batch_size override"
        )
    trainer = cfg.get("trainer") or {}
    if trainer:
        found += _machine_problems(trainer)
    elif isinstance(cfg.get("accelerator"), str):  # eval.py's config: one device
        found += _machine_problems({"accelerator": cfg.accelerator, "devices": 1}, key="accelerator")
    if (shape := _data_shape(data)) is not None:
        if isinstance(shape, str):
            return [*found, shape]
        found += _size_problems(data, shape)
        found += _batch_limit_problems(trainer, data, shape)
        found += _memory_problems(model, data, trainer, shape)
    checkpointing = [
        name
        for name, c in (cfg.get("callbacks") or {}).items()
        if c and str(c.get("_target_", "")).endswith("ModelCheckpoint")
    ]
    if trainer.get("enable_checkpointing") is False and checkpointing:
        found.append(
            f"trainer.enable_checkpointing=false with checkpoint callbacks ({', '.join(checkpointing)}): "
            f"use callbacks=none, or drop them with callbacks.<name>=null"
        )
    if multirun and str(trainer.get("strategy", "")).startswith("ddp"):
        found.append(
            f"trainer.strategy={trainer.strategy!r} in a multirun: DDP runs as a single run only "
            f"(Lightning starts each extra rank by re-running the command); run it without -m"
        )
    return found


# Arguments the project passes to a section's class itself, and what a user sets instead.
SUPPLIED: dict[str, dict[str, str]] = {
    "model": {
        "input_size": "remove it (the data's image size)",
        "num_classes": "remove it (the data's classes)",
        "activation": "use activation=<option>",
    },
    "optimizer": {"params": "remove it (the model's parameters)"},
    "scheduler.scheduler": {"optimizer": "remove it (the run's optimizer)"},
    "trainer": {
        "callbacks": "use callbacks=<option> or diagnostics=<option>",
        "logger": "use logger=<option>",
        "deterministic": "use deterministic=true",
        "default_root_dir": "use hydra.run.dir=<dir>",
        "enable_progress_bar": "use callbacks.progress_bar=null",
        "plugins": "remove it",
    },
}


def _builds_class(node: Any) -> bool:
    """Whether a config node is a section that names a class to build."""
    return isinstance(node, DictConfig) and isinstance(node.get("_target_"), str)


def _sections(cfg: DictConfig) -> Iterator[tuple[str, DictConfig]]:
    """Every part of the config that names a class to build, by its dotted key."""
    for name in names.group_names(builds="class"):
        if _builds_class(node := cfg.get(name)):
            yield name, node
    for name in names.group_names(builds="scheduler"):
        if isinstance(section := cfg.get(name), DictConfig) and _builds_class(node := section.get("scheduler")):
            yield f"{name}.scheduler", node
    for group in names.group_names(builds="entries"):
        for name, node in (cfg.get(group) or {}).items():
            if _builds_class(node):
                yield f"{group}.{name}", node


def parameters(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` takes; ``None`` where it takes any (``**kwargs`` beside named
    ones). An ``__init__(*args, **kwargs)`` that only passes them on is read through to its base class."""
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        named = {p.name for p in params[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if any(p.kind is p.VAR_KEYWORD for p in params):
            if named:
                return None
            continue  # passes everything on: what its base takes
        return named
    return set()  # object's: none


# Groups whose entries are each a class to build (a callback, a monitor, a logger) or null (off).


def entry_problems(cfg: DictConfig) -> list[str]:
    """Entries of the callbacks, diagnostics and logger groups that are neither off nor a class to build."""
    found = []
    for group, what in ((g.name, g.entry) for g in names.GROUPS if g.builds == "entries"):
        entries = cfg.get(group)
        for name in entries.keys() if isinstance(entries, DictConfig) else []:
            node = entries.get(name)
            if node is not None and not _builds_class(node):
                shown = OmegaConf.to_container(node) if isinstance(node, (DictConfig, ListConfig)) else node
                found.append(
                    f"{group}.{name}={shown!r} is invalid: must be null (off) or a section whose _target_ "
                    f"names {what} class"
                )
    return found


def argument_problems(cfg: DictConfig) -> list[str]:
    """Keys of a section that its class does not take, or that the project passes it itself."""
    found = []
    for section, node in _sections(cfg):
        keys = [k for k in node if isinstance(k, str) and not k.startswith("_")]
        supplied = SUPPLIED.get(section, {})
        for key in (k for k in keys if k in supplied):
            found.append(f"{section}.{key} is set by the project, not the config: {supplied[key]}")
        target = node["_target_"]
        module, _, name = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError as exc:
            found.append(f"{section}._target_={target!r} cannot be imported ({exc}): name a class that exists")
            continue
        if not isinstance(cls, type) or (takes := parameters(cls)) is None:
            continue  # not a class (the catalogue refuses it where that matters), or it takes any argument
        for key in (k for k in keys if k not in supplied and k not in takes):
            settable = sorted(takes - supplied.keys())
            close = difflib.get_close_matches(key, settable, n=1)
            typed = _typed(OmegaConf.select(node, key, throw_on_resolution_failure=False))
            hint = (
                f"{MEANT} {section}.{close[0]}? write {section}.{close[0]}={typed}"
                if close
                else f"it takes {', '.join(settable) or 'none'}"
            )
            found.append(f"{section}.{key} is not an argument of {target}: {hint}")
    return found


MEANT = "did you mean"  # how a refusal of a misspelt key begins its advice


def typo_problems(cfg: DictConfig) -> list[str]:
    """The refusals of a misspelt key (``+optimiser=sgd``, ``+optimizer.lrr=0.1``): each names the key meant and
    what to type. A single run answers them before Hydra writes anything (the output guard)."""
    return [*misspelt_keys(cfg), *(p for p in argument_problems(cfg) if f": {MEANT} " in p)]


def _leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a plain (unresolved) config that holds a value, not a section."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaf_keys(v, f"{prefix}{'.' if prefix else ''}{k}")
    elif prefix:
        yield prefix


def _unread(cfg: DictConfig) -> dict[str, str | None]:
    """Top-level keys that nothing reads (neither train.py nor an interpolation: ``+width=128`` used as
    ``${width}`` is read), each with the group or key it most likely meant, where one is close."""
    text = OmegaConf.to_yaml(cfg)  # unresolved: the interpolations as written
    read = names.read_at_top()
    unread = [
        k
        for k in cfg
        if isinstance(k, str) and k not in read and not re.search(r"\$\{" + re.escape(k) + r"[.}\[]", text)
    ]
    if not unread:
        return {}
    leaves = {
        key.rpartition(".")[2]: key for key in _leaf_keys(OmegaConf.to_container(cfg, resolve=False)) if "." in key
    }
    meant: dict[str, str | None] = {}
    for key in unread:  # a top-level name first; a section (+modle.x=1) is no leaf's near miss
        close = difflib.get_close_matches(key, sorted(read), n=1)
        if not close and not isinstance(cfg[key], DictConfig):
            close = [leaves[m] for m in difflib.get_close_matches(key, sorted(leaves), n=1)]
        meant[key] = close[0] if close else None
    return meant


def _typed(value: Any) -> str:
    """A value as it is typed on the command line: a list without spaces, so it needs no quotes."""
    if isinstance(value, (list, ListConfig)):
        return "[" + ",".join(_typed(v) for v in value) + "]"
    return str(value)


def misspelt_keys(cfg: DictConfig) -> list[str]:
    """Refusals: a top-level key nothing reads that is a near miss of a group or key (``+optimiser=sgd``,
    Hydra's own advice for a misspelt group) would train the default in silence."""
    found, typed = [], OmegaConf.to_container(cfg, resolve=False)
    for key, meant in _unread(cfg).items():
        if meant is None:
            continue
        value = typed[key]
        if isinstance(value, dict):  # +optimiser.lr=0.1: each key it set, under the name it meant
            setting = " ".join(
                f"{meant}.{leaf}={_typed(OmegaConf.select(cfg, f'{key}.{leaf}'))}" for leaf in _leaf_keys(value)
            )
        else:
            setting = f"{meant}={_typed(value)}"
        found.append(f"{key} is not read by train.py (did you mean {meant}?): write {setting}, without the '+'")
    return found


def unread_keys(cfg: DictConfig) -> list[str]:
    """Warnings: a top-level key nothing reads and that is no near miss (a note, a new group not yet
    registered in ``names.GROUPS``); it is kept in the run's config only."""
    return [
        f"{key} is set but train.py does not read it; it is kept in the run's config only"
        for key, meant in _unread(cfg).items()
        if meant is None
    ]


def _data_shape(data: DictConfig | dict[str, Any]) -> Shape | str | None:
    """The shape of the data set ``data.root`` names, read from its files (``idx.describe``); None where the files
    are not there yet, the file's own complaint where they are not a data set."""
    root = data.get("root") if data else None
    if not data or not (root is None or isinstance(root, str)):
        return None
    try:
        return describe(root)
    except DataError as exc:
        return str(exc)


def _size_problems(data: DictConfig | dict[str, Any], shape: Shape) -> list[str]:
    """Sizes beyond the images the data set has (``data.root``'s files say how many)."""
    found, rows = [], shape.train_size
    where = f"data.root={data.get('root')}" if data.get("root") else "the bundled MNIST set"
    for key, high in (("batch_size", rows), ("val_size", rows - 1), ("limit_train", rows)):
        value = data.get(key)
        if _is_int(value) and value > high:
            found.append(f"data.{key}={value} is invalid: must be at most {high} ({where} has {rows} training images)")
    return found


def _batch_limit_problems(
    trainer: DictConfig | dict[str, Any], data: DictConfig | dict[str, Any], shape: Shape
) -> list[str]:
    """A fraction of batches (``trainer.limit_*_batches``) that leaves none of a stage's batches: Lightning
    refuses it only when the stage starts, with a traceback."""
    if not trainer or not data or not all(_is_int(data.get(k)) for k in ("val_size", "eval_batch_size")):
        return []
    val, evaluation, rows = data.get("val_size"), data.get("eval_batch_size"), shape.train_size
    train = rows - val if not _is_int(data.get("limit_train")) else min(rows - val, data.get("limit_train"))
    batch = train if data.get("batch_size") == "full" else data.get("batch_size")
    world = trainer.get("devices") if _is_int(trainer.get("devices")) else 1
    found = []
    for stage, rows, size in (("train", train, batch), ("val", val, evaluation), ("test", shape.test_size, evaluation)):
        limit = trainer.get(f"limit_{stage}_batches")
        if not isinstance(limit, float) or limit >= 1 or not _is_int(size):
            continue
        batches = math.ceil(math.ceil(rows / world) / size)
        if int(batches * limit) < 1:
            found.append(
                f"trainer.limit_{stage}_batches={limit} is too small: {limit} of the {batches} {stage} "
                f"batches is less than one; use at least {math.ceil(1e4 / batches) / 1e4:g}, or a number of "
                f"batches (an integer)"
            )
    return found


def _memory_problems(
    model: DictConfig | dict[str, Any],
    data: DictConfig | dict[str, Any],
    trainer: DictConfig | dict[str, Any],
    shape: Shape,
) -> list[str]:
    """A network too large for the machine's whole memory (the GPU's where the run takes one): refused
    here, not as an allocation failure after minutes of building it."""
    import torch

    hidden, batch, evaluation = model.get("hidden_sizes"), data.get("batch_size"), data.get("eval_batch_size")
    if not (isinstance(hidden, (list, ListConfig)) and all(_is_int(h) for h in hidden) and _is_int(evaluation)):
        return []
    batch = shape.train_size if batch == "full" else batch
    need = training_bytes(shape.input_size, list(hidden), shape.num_classes, batch, evaluation)
    gpu = trainer.get("accelerator") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if gpu:
        have, where = torch.cuda.get_device_properties(0).total_memory, "the GPU has"
    else:
        have, where = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine has"
    if need <= have:
        return []
    return [
        f"model.hidden_sizes={list(hidden)} with data.batch_size={data.get('batch_size')} needs about "
        f"{need / 2**30:.0f} GiB (weights, gradients, optimizer state, a batch's activations; float32), and "
        f"{where} {have / 2**30:.0f} GiB: use smaller widths"
    ]


def advice(cfg: DictConfig) -> list[str]:
    """Settings that train but miss what the chosen parts need: warnings, not refusals."""
    found = []
    model = cfg.get("model") or {}
    if str((cfg.get("activation") or {}).get("_target_", "")).endswith(".SELU"):
        init, bias = model.get("init"), model.get("bias_init")
        if init != "lecun_normal" or bias != 0:
            found.append(
                f"activation=selu self-normalises only with LeCun-normal weights and zero biases "
                f"(model.init={init}, model.bias_init={bias}): add model.init=lecun_normal "
                f"model.bias_init=0, or use experiment=snn"
            )
    for name, c in (cfg.get("callbacks") or {}).items():  # a mode that keeps the worst epoch
        monitor, mode = (c or {}).get("monitor"), (c or {}).get("mode")
        wanted = names.mode_of(str(monitor)) or mode
        if isinstance(monitor, str) and mode is not None and mode != wanted:
            found.append(
                f"callbacks.{name}.mode={mode} with monitor {monitor} keeps the worst epoch; "
                f"add callbacks.{name}.mode={wanted} unless that is what you want"
            )
    return found + unread_keys(cfg)


def validate(
    cfg: DictConfig,
    extra: dict[str, Check] | None = None,
    choices: dict[str, Any] | None = None,
    multirun: bool = False,
) -> None:
    if found := problems(cfg, extra, choices, multirun):
        raise ConfigError("\n".join(found))
