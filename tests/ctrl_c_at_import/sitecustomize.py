"""A Ctrl-C while Python imports: with this directory on ``PYTHONPATH``, a process sends itself SIGINT
when it first imports the module named in ``CTRL_C_AT_IMPORT`` (``hydra``, ``lightning``, ...)."""

import os
import signal
import sys


class CtrlCAtImport:
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == os.environ.get("CTRL_C_AT_IMPORT"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)


sys.meta_path.insert(0, CtrlCAtImport())
