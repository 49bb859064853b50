"""What a config may build: the classes that ``conf/`` and the user's own config directories name, nothing else.

A checkpoint stores its model's config as plain dicts, and rebuilding the model instantiates their
``_target_``s. A crafted checkpoint could name ``builtins.open`` or ``os.system`` there; Hydra would
call it. So every ``_target_`` the classifier builds must be one that a file of its config group names, in
``conf/`` or in a directory the user passed on the command line (``hydra.searchpath=[file://<dir>]``: their own
activation, optimizer, ...), and of the kind that group builds (a module, an optimizer, a schedule), and no
value inside may carry a ``_target_`` of its own. A new option is allowed by adding its YAML file there.
"""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path
from typing import Any

from experiments import names
from experiments.errors import CheckpointError, ConfigError
from experiments.names import CONF_DIR


def kind(group: str) -> type:
    """The base class of what the options of config group ``group`` build (``names.Group.base``); importing
    it imports torch, so only a check that needs it pays for that."""
    module, _, name = str(names.group(group).base).rpartition(".")
    return getattr(importlib.import_module(module), name)


_TARGET = re.compile(r"^\s*_target_:\s*([\w.]+)\s*$", re.MULTILINE)


def search_dirs(entries: Any) -> tuple[Path, ...]:
    """The directories of ``hydra.searchpath`` entries (``file://<dir>``, ``pkg://<package>``), as given."""
    import importlib.resources

    found = []
    for entry in entries if isinstance(entries, (list, tuple)) else []:
        schema, _, where = str(entry).partition("://")
        if schema == "file":
            found.append(Path(where).expanduser())
        elif schema == "pkg":
            try:
                found.append(Path(str(importlib.resources.files(where.replace("/", ".")))))
            except (ImportError, TypeError, ValueError):
                continue  # Hydra itself says where a search path cannot be found
    return tuple(found)


def conf_dirs() -> tuple[Path, ...]:
    """The config directories of the run under way: ``conf/``, then the search path the user passed (the
    project's own configs only, outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return (CONF_DIR,)
    return (CONF_DIR, *search_dirs(list(HydraConfig.get().get("searchpath") or [])))


def targets(group: str) -> frozenset[str]:
    """Every ``_target_`` that ``<group>/*.yaml`` names in the run's config directories."""
    return _targets(group, conf_dirs())


@functools.cache
def _targets(group: str, dirs: tuple[Path, ...]) -> frozenset[str]:
    return frozenset(t for d in dirs for path in (d / group).glob("*.yaml") for t in _TARGET.findall(path.read_text()))


def option_keys(group: str) -> tuple[str, ...]:
    """Every key, dotted as the hyperparameters name it (``scheduler.gamma``), that an option of
    ``<group>/`` sets below the group's section (a ``@package _global_`` option: below its ``<group>:``)."""
    return _option_keys(group, conf_dirs())


@functools.cache
def _option_keys(group: str, dirs: tuple[Path, ...]) -> tuple[str, ...]:
    import yaml

    keys: set[str] = set()
    for path in (p for d in dirs for p in (d / group).glob("*.yaml")):
        text = path.read_text()
        try:
            node = yaml.safe_load(text)
        except yaml.YAMLError:  # not this run's option (Hydra composed that one): its keys are not named
            continue
        if isinstance(node, dict) and re.search(r"^# @package _global_", text, re.MULTILINE):
            node = node.get(group)
        keys |= _dotted(node, "") if isinstance(node, dict) else set()
    # a key that is a mapping in another option (``scheduler: null`` beside ``scheduler: {gamma: ...}``) is
    # named by that option's inner keys
    return tuple(sorted(k for k in keys if not any(other.startswith(f"{k}.") for other in keys)))


def options(group: str) -> list[str]:
    """The options of ``conf/<group>/`` a user chooses from, the root config's choice first. A building block
    stays internal: an option that others name in their ``defaults`` and that builds on none itself
    (``callbacks/model_checkpoint`` inside ``callbacks/default``, ``debug/default`` under every debug option)."""
    import yaml

    def defaults(path: Path) -> list[str]:
        node = yaml.safe_load(path.read_text())
        return [d for d in node.get("defaults", []) if isinstance(d, str)] if isinstance(node, dict) else []

    files = {p.stem: defaults(p) for p in sorted((CONF_DIR / group).glob("*.yaml"))}
    named = {d for inner in files.values() for d in inner}
    chosen = re.search(rf"^\s*- {group}: (\w+)$", (CONF_DIR / "config.yaml").read_text(), re.MULTILINE)
    first = [chosen.group(1)] if chosen and chosen.group(1) in files else []
    return first + [o for o, inner in files.items() if o not in first and (inner or o not in named)]


def overview() -> list[str]:
    """A line per config group: its options (the default first) and what it is, for --help and
    ``python -m experiments``."""
    lines = []
    for group in names.GROUPS:
        listed = options(group.name)
        lines.append(f"  {group.name + '=':<16} {group.what}: {', '.join(listed)}")
    return lines


@functools.cache
def config_keys(dirs: tuple[Path, ...] = (CONF_DIR,)) -> frozenset[str]:
    """Every dotted key, sections included, that a config composed from ``dirs`` (``conf/``, and the user's search
    path) can hold: the groups, each key an option sets below its group, the keys a ``@package _global_`` option
    (a preset) sets anywhere, and the top-level keys. A superset: a key outside it cannot be overridden without
    ``+``."""
    import yaml

    keys = {p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir() and p.name != "hydra"}
    for conf, path in ((d, p) for d in dirs for p in sorted(d.rglob("*.yaml"))):
        parts = path.relative_to(conf).parts
        if parts[0] == "hydra":
            continue
        text = path.read_text()
        try:
            node = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        is_global = len(parts) == 1 or re.search(r"^# @package _global_", text, re.MULTILINE)
        prefix = "" if is_global else ".".join(parts[:-1]) + "."
        keys |= _all_keys(node, prefix.rstrip(".")) if isinstance(node, dict) else set()
    return frozenset(keys)


def _all_keys(node: dict[str, Any], prefix: str) -> set[str]:
    """Every key of a YAML mapping, sections and Hydra's ``_target_`` included (not its ``defaults`` list)."""
    out: set[str] = set()
    for key, value in node.items():
        if key == "defaults":
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        out |= {dotted, *(_all_keys(value, dotted) if isinstance(value, dict) else ())}
    return out


def _dotted(node: dict[str, Any], prefix: str) -> set[str]:
    """A YAML mapping's keys as a flat set, nested ones dotted; Hydra's own (``_target_``, ``defaults``) left out."""
    out: set[str] = set()
    for key, value in node.items():
        if str(key).startswith("_") or key == "defaults":
            continue
        out |= _dotted(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return out


def _nested_targets(value: Any, path: str) -> list[str]:
    if isinstance(value, dict):
        found = [f"{path}._target_" for k in value if k == "_target_"]
        return found + [p for k, v in value.items() for p in _nested_targets(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nested_targets(v, f"{path}[{i}]")]
    return []


def check(group: str, cfg: dict[str, Any], source: str = "config") -> None:
    """Refuse a config of ``group`` whose ``_target_`` is not in the catalogue, before anything is called.

    ``source`` names where the config came from (a checkpoint file), so the error says which to fix.
    """
    error = CheckpointError if source != "config" else ConfigError
    where = "" if source == "config" else f"{source}: "
    if not isinstance(cfg, dict) or not isinstance(cfg.get("_target_"), str):
        raise error(f"{where}{group} has no _target_ naming the class to build")
    target = cfg["_target_"]
    allowed = targets(group)
    if target not in allowed:
        raise error(
            f"{where}{group}._target_={target!r} is not a class that conf/{group}/ names "
            f"({', '.join(sorted(allowed))}); to use your own, give the directory of its <name>.yaml on the "
            f"command line: 'hydra.searchpath=[file://<dir>]' (<dir>/{group}/<name>.yaml)"
        )
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    base = kind(group)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise error(f"{where}{group}._target_={target!r} is not a {base.__name__} class")
    nested = [p for k, v in cfg.items() if k != "_target_" for p in _nested_targets(v, f"{group}.{k}")]
    if nested:
        raise error(f"{where}{nested[0]}: a value may not name a class to build; only {group}._target_ may")
