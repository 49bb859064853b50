"""A callback that sends a signal to its own process at a given step: Ctrl-C or SIGTERM on cue.

Used by the tests through Hydra, the way a user adds any callback:
``+diagnostics.inject._target_=fault_injection.SignalAtStep +diagnostics.inject.step=17``
(with ``tests/`` on ``PYTHONPATH``).
"""

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, step: int, signal_name: str = "SIGINT") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
