"""Every config value checked before anything trains, each problem as one line: key, value, valid range.

Hydra already refuses unknown keys and unknown group options (listing the valid ones); this catches
values that compose fine but cannot train: a zero learning rate, an empty network, a string epoch count.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from experiments.activations import check_activation
from experiments.mnist import TRAIN_SIZE
from experiments.losses import OUTPUT_ACTIVATIONS
from experiments.model import INITS


class ConfigError(ValueError):
    """A config value that cannot work; ``str()`` lists every problem, one per line."""


Check = Callable[[Any], str | None]  # returns the valid range when the value is outside it


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    return lambda v: None if v in options else f"one of {', '.join(map(str, options))}"


def optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def batch_size(v: Any) -> str | None:
    return None if v == "full" or (_is_int(v) and 1 <= v <= TRAIN_SIZE) else f"an integer in [1, {TRAIN_SIZE}] or full"


def hidden_sizes(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) > 0 and all(_is_int(h) and 1 <= h <= 65536 for h in v)
    return None if ok else "a non-empty list of integers in [1, 65536], e.g. [64,64,64]"


def batch_limit(v: Any) -> str | None:
    ok = v is None or (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v <= 1)
    return None if ok else "an integer >= 1 (batches) or a fraction in (0, 1]"


def existing_file(v: Any) -> str | None:
    return None if isinstance(v, str) and Path(v).expanduser().is_file() else "the path of an existing checkpoint file"


def betas(v: Any) -> str | None:
    ok = isinstance(v, list) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v)
    return None if ok else "two numbers in [0, 1), e.g. [0.9,0.999]"


RULES: dict[str, Check] = {
    "seed": integer(0, 2**32 - 1),
    "deterministic": boolean,
    "compile": one_of(False, True, "default", "reduce-overhead", "max-autotune"),
    "threads": lambda v: None if v == "auto" or (_is_int(v) and v >= 1) else "auto or an integer >= 1",
    "ckpt_path": optional(existing_file),
    "data.root": optional(lambda v: None if isinstance(v, str) and v else "a directory path"),
    "data.batch_size": batch_size,
    "data.eval_batch_size": integer(1, TRAIN_SIZE),
    "data.val_size": integer(1, TRAIN_SIZE - 1),
    "data.split_seed": integer(0),
    "data.on_device": boolean,
    "data.download": boolean,
    "data.limit_train": optional(integer(1, TRAIN_SIZE)),
    "model.hidden_sizes": hidden_sizes,
    "model.init": one_of(*INITS),
    "model.bias_init": optional(number(-math.inf, math.inf)),
    "model.batch_norm": boolean,
    "model.dropout": number(0, 1, low_open=False, high_open=True),
    "model.output_activation": one_of(*OUTPUT_ACTIVATIONS),
    "optimizer.lr": number(0, 1e6),
    "optimizer.momentum": number(0, 1, low_open=False, high_open=True),
    "optimizer.weight_decay": number(0, 1e3, low_open=False),
    "optimizer.betas": betas,
    "optimizer.alpha": number(0, 1, high_open=True),
    "optimizer.eps": number(0, 1),
    "optimizer.dampening": number(0, 1, low_open=False),
    "loss.label_smoothing": number(0, 1, low_open=False, high_open=True),
    "scheduler.step_size": integer(1),
    "scheduler.gamma": number(0, 1),
    "trainer.max_epochs": integer(1, 100_000),
    "trainer.log_every_n_steps": integer(1),
    "trainer.limit_train_batches": batch_limit,
    "trainer.limit_val_batches": batch_limit,
    "trainer.limit_test_batches": batch_limit,
    "trainer.accelerator": one_of("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "trainer.precision": one_of("32-true", "32", 32, "16-mixed", "bf16-mixed", "bf16-true", "64-true"),
    "trainer.gradient_clip_val": optional(number(0)),
    "trainer.gradient_clip_algorithm": optional(one_of("norm", "value")),
    "trainer.accumulate_grad_batches": lambda v: None if v == 1 else (
        "1: the classifier steps its own optimizer (several steps per call); for larger effective batches "
        "raise data.batch_size"),
    "steps_per_execution": integer(1, 100_000),
    "checkpoint.every_n_train_steps": optional(integer(1)),
}


def _get(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    return True, OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def problems(cfg: DictConfig, extra: dict[str, Check] | None = None) -> list[str]:
    """All problems in ``cfg``, or an empty list."""
    found = []
    for key, check in {**RULES, **(extra or {})}.items():
        present, value = _get(cfg, key)
        if present and (valid := check(value)) is not None:
            found.append(f"{key}={value!r} is invalid: must be {valid}")
    if "activation" in cfg:
        found += check_activation(cfg.activation)
    if cfg.get("optimizer", {}).get("full_batch") and cfg.data.batch_size != "full":
        found.append(f"data.batch_size={cfg.data.batch_size!r} with optimizer=gd: gradient descent is full-batch; "
                     f"use optimizer=sgd for mini-batches, or drop the data.batch_size override")
    return found


def validate(cfg: DictConfig, extra: dict[str, Check] | None = None) -> None:
    if found := problems(cfg, extra):
        raise ConfigError("\n".join(found))
