"""Which sweep jobs may train as one stacked model, and how many at once.

``fusion_problem`` names what leaves a job to a separate run: dropout and an activation that draws random
numbers (in another order than a separate run draws them; measured, as is an optimizer's reading only its own
elements, in ``nn/traits.py``), in-place activations, batch norm, gradient clipping
(a norm over the whole stack), a callback that uses a hook a fused member's run does not call, ``compile``,
DDP and resuming. ``fusion_key`` is equal for jobs that may share a loop; ``split_group`` keeps a group
within its members and memory limits.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from omegaconf import DictConfig

from experiments import names
from experiments.data.idx import describe
from experiments.nn.model import training_bytes
from experiments.run.hparams import plain

# What members of one group may differ in; everything else of their configs must be equal.
MEMBER_KEYS = (
    "seed",
    "activation",
    "model.init",
    "model.bias_init",
    "data.shuffle_seed",
    "logger",
    "print_config",
    *names.LABELS,  # a run's name and tags: each member keeps its own
)


def fusion_problem(cfg: DictConfig | dict[str, Any]) -> str | None:
    """Why this job cannot train stacked with others (``None``: it can)."""
    c = plain(cfg) if isinstance(cfg, DictConfig) else cfg
    model, trainer = c.get("model") or {}, c.get("trainer") or {}
    checks = [
        (c.get("ckpt_path") is not None, "ckpt_path is set (a fused run does not resume)"),
        (bool(c.get("compile")), "compile is set"),
        ((model.get("dropout") or 0) > 0, "model.dropout > 0 (its random masks would differ from a separate run's)"),
        (bool(model.get("batch_norm")), "model.batch_norm=true"),
        (
            bool((c.get("activation") or {}).get("inplace")),
            "activation.inplace=true (an in-place activation cannot overwrite a slice of the stacked outputs)",
        ),
        (trainer.get("gradient_clip_val") is not None, "trainer.gradient_clip_val clips a norm over all members"),
        (
            trainer.get("devices", 1) not in (1, "1") or "ddp" in str(trainer.get("strategy", "auto")),
            "trainer runs on more than one device",
        ),
        ((trainer.get("accumulate_grad_batches") or 1) != 1, "trainer.accumulate_grad_batches != 1"),
    ]
    for bad, reason in checks:
        if bad:
            return reason
    if problem := _part_problem(c.get("activation") or {}, c.get("optimizer") or {}):
        return problem
    for group in ("callbacks", "diagnostics"):
        for name, entry in (c.get(group) or {}).items():
            if entry is not None and (problem := _callback_problem(f"{group}.{name}", entry)):
                return problem
    return None


def _part_problem(activation: dict[str, Any], optimizer: dict[str, Any]) -> str | None:
    """Why the activation or the optimizer cannot run fused, asked of the parts themselves (``nn/traits.py``):
    an activation drawing random numbers (RReLU) draws them in another order than a separate run does; an
    optimizer reading whole tensors would read the stack of every member at once."""
    from experiments.config import catalogue
    from experiments.nn.activations import activation_factory
    from experiments.nn.optimizers import build_optimizer
    from experiments.nn.traits import draws_random, elementwise

    for group, cfg in (("activation", activation), ("optimizer", optimizer)):
        try:  # measured only once the catalogue allows the class: measuring builds it
            catalogue.check(group, cfg)
        except Exception as exc:
            return f"{group} cannot be measured: {exc}"
    if (random := draws_random(activation_factory(activation))).holds:
        return f"activation {activation['_target_']} draws random numbers ({random.how})"
    if not (update := elementwise(lambda params: build_optimizer(optimizer, params))).holds:
        return f"optimizer {optimizer['_target_']} does not update element by element ({update.how})"
    return None


def hooks_used(cls: type) -> set[str]:
    """The Lightning hooks a callback class implements (overrides), its state aside."""
    return {
        name
        for name, hook in vars(L.Callback).items()
        if inspect.isfunction(hook)
        and not name.startswith("_")
        and name not in ("state_dict", "load_state_dict")
        and getattr(cls, name, hook) is not hook
    }


def _callback_problem(key: str, entry: dict[str, Any]) -> str | None:
    """Why a member's callback cannot run fused: derived from the hooks it uses, so a new callback runs
    fused exactly when every hook it uses is one a member's run calls (``members.FORWARDED_HOOKS``)."""
    from experiments.fused.member_runs import FORWARDED_HOOKS

    target = str(entry.get("_target_"))
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if issubclass(cls, ProgressBar):  # the group's trainer shows one for all members
        return None
    if issubclass(cls, ModelCheckpoint):  # a member's own, called at its hooks; the view logs epoch metrics only
        every = entry.get("every_n_epochs")
        if entry.get("every_n_train_steps") or entry.get("train_time_interval") or (every or 1) != 1:
            return f"{key} saves other than once per epoch"
        if entry.get("monitor") not in (None, *names.monitorable()) or entry.get("save_top_k", 1) != 1:
            return f"{key} keeps other than the one best checkpoint by a metric of each epoch"
        return None
    if unused := sorted(hooks_used(cls) - FORWARDED_HOOKS):
        return f"{key} ({target}) uses {', '.join(unused)}, which a fused member's run does not call"
    return None


def fusion_key(cfg: DictConfig | dict[str, Any]) -> str:
    """Equal for jobs that may share one training loop: their configs less what members may differ in
    (``MEMBER_KEYS``) and the optimizer's hyper-parameters (its class stays)."""
    c = plain(cfg) if isinstance(cfg, DictConfig) else json.loads(json.dumps(cfg))
    c.pop("hydra", None)
    for key in MEMBER_KEYS:
        *path, last = key.split(".")
        node = c
        for part in path:
            node = node.get(part) or {}
        node.pop(last, None)
    c["optimizer"] = {"_target_": (c.get("optimizer") or {}).get("_target_")}
    return json.dumps(c, sort_keys=True, default=str)


def member_bytes(cfg: DictConfig) -> int:
    """Memory one member needs (``model.training_bytes``)."""
    shape = describe(cfg.data.root, download=bool(cfg.data.download))
    if shape is None:  # the files are refused when the members load them
        return 0
    batch = shape.train_size if str(cfg.data.batch_size) == "full" else int(cfg.data.batch_size)
    hidden = list(cfg.model.hidden_sizes)
    return training_bytes(shape.input_size, hidden, shape.num_classes, batch, int(cfg.data.eval_batch_size))


def group_device(cfg: DictConfig) -> torch.device:
    """Where a group trains: the GPU where the members' ``trainer.accelerator`` allows one and there is one."""
    wants_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def memory_budget(device: torch.device, fraction: float) -> int:
    """Bytes a fused group may take: ``fraction`` of the free accelerator memory, or of the free RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * fraction)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 8 << 30
    return int(free * fraction)


def split_group(n_members: int, per_member: int, budget: int, max_members: int) -> list[range]:
    """Consecutive chunks of at most ``max_members`` members, each within ``budget`` bytes."""
    size = max(1, min(max_members, budget // max(per_member, 1)))
    return [range(i, min(i + size, n_members)) for i in range(0, n_members, size)]
