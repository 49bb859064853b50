"""The one rule for every file this project reads back: checkpoints and every dict inside them, ``metrics.json``,
``multirun.yaml``, ``code.json``, ``.hydra/*.yaml``, the report's inputs.

Such a file may have been damaged, edited by hand, or handed over by someone else, so it is data, never orders:

- **nothing it names is called**: a value from it that becomes config holds no ``_target_`` (only the keys the
  catalogue checks may name a class, and only one that ``conf/`` names) and no ``${...}`` interpolation
  (``plain``);
- **nothing outside its run's or sweep's directory is written, moved or removed because it named it**: a path
  read back is resolved, links and ``..`` included, and must name a file of its own directory (``own_file``); what the
  project writes replaces a planted link instead of writing through it (``write_text``, ``write_bytes``);
- **damage is one line** naming the file and the key (``DamagedFile``, exit status 2), and nothing is sized by a
  number from the file: a file larger than ``MAX_BYTES`` is not read.

No torch, no Hydra: the entry points check a directory before either is imported.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from experiments.errors import DamagedFile

MAX_BYTES = 32 * 1024 * 1024  # a record or a config of this project is kilobytes; more is not one of them
PLAIN = (str, int, float, bool, type(None))


def damaged(source: str | Path, key: str, what: str) -> DamagedFile:
    """The one line for a file read back that does not hold what this project wrote there."""
    said = f"{source}: {key} {what}" if what else f"{source}: {key}"
    said = re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], said)  # a file's newline stays in the line
    return DamagedFile(f"{said}; the file was damaged or edited: restore it or use another one")


def plain(value: Any, source: str | Path, key: str, targets: frozenset[str] = frozenset()) -> None:
    """Refuse a value read back that could make the config call something: a ``_target_`` anywhere except at the
    dotted keys in ``targets`` (``activation._target_``, checked by the catalogue), a ``${...}`` interpolation
    (OmegaConf would resolve it), or an object that is no plain YAML/JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{key}.{k}" if key else str(k)
            if not isinstance(k, str):
                raise damaged(source, here, "has a key that is not a name")
            if k == "_target_" and here not in targets:
                raise damaged(source, here, "names a class to build, which this file may not")
            plain(v, source, here, targets)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            plain(v, source, f"{key}[{i}]", targets)
    elif isinstance(value, str):
        if "${" in value:
            raise damaged(source, key, f"holds an interpolation ({value[:60]!r})")
    elif not isinstance(value, PLAIN):
        raise damaged(source, key, f"is a {type(value).__name__}, not a plain value")


def own_file(directory: Path, named: Any, source: str | Path, key: str) -> Path:
    """The file a record names (an absolute path, as written), found in ``directory`` by its name should the
    directory have moved; refused in one line where it is no file of that directory: another run's, or one
    reached through a link or ``..``."""
    if not isinstance(named, str) or not named:
        raise damaged(source, key, f"is {named!r}, not a file name")
    name = Path(named).name
    for path in (Path(named), Path(directory) / name):
        if path.is_file() and not path.is_symlink() and path.resolve().parent == Path(directory).resolve():
            return path
    raise damaged(source, key, f"names {named!r}, which is no file of {directory}")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object read back; ``{}`` for a file that is missing, too large, unreadable or not an object (the
    callers treat it as a record that says nothing). ``10**400`` and other numbers past a float stay as
    written: the readers check what they use."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def read_yaml(path: Path) -> Any:
    """A YAML file read back with the safe loader (no Python objects), bounded as ``read_json``; raises
    ``OSError`` or ``yaml.YAMLError`` for the caller to say which file."""
    import yaml

    if path.stat().st_size > MAX_BYTES:
        raise yaml.YAMLError(f"larger than {MAX_BYTES} bytes")
    return yaml.safe_load(path.read_text())


def _replace(path: Path, write: Any) -> None:
    """Atomic, and never through a link: ``write`` fills a temporary file beside ``path`` (one planted at that
    name is removed first), which then replaces whatever stands at ``path``, a planted link included. A killed
    writer leaves no half-written file, and nothing outside is overwritten."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    write(tmp)
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    _replace(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    _replace(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
