"""As if only ``pip install -e .`` had run: with this directory on ``PYTHONPATH``, a module that only an extra
installs (named in ``PLAIN_INSTALL_BLOCKS``, comma-separated) is not found, by ``import`` or by
``importlib.util.find_spec``, and its distribution (``PLAIN_INSTALL_DISTS``) is not in ``importlib.metadata``,
just as where it is not installed; each module name looked for is appended to the file ``PLAIN_INSTALL_LOG``."""

import os
import re
import sys
from importlib.machinery import PathFinder

BLOCKED = frozenset(filter(None, os.environ.get("PLAIN_INSTALL_BLOCKS", "").split(",")))
DISTS = frozenset(filter(None, os.environ.get("PLAIN_INSTALL_DISTS", "").split(",")))


class OnlyTheDefaults(PathFinder):
    """Python's own finder of installed modules, blind to the blocked ones."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> object:
        if name.partition(".")[0] in BLOCKED:
            with open(os.environ["PLAIN_INSTALL_LOG"], "a") as log:
                log.write(name + "\n")
            return None
        return super().find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, *args: object, **kwargs: object) -> object:
        for dist in super().find_distributions(*args, **kwargs):
            if re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower() not in DISTS:
                yield dist


sys.meta_path[sys.meta_path.index(PathFinder)] = OnlyTheDefaults
