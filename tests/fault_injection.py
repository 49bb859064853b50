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
        self.step, self.signum, self.start = step, getattr(signal, signal_name), 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = trainer.global_step  # a resumed run that started past the step sends nothing

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # at the call that reaches the step: a call may take several steps (steps_per_execution)
        if self.start < self.step <= trainer.global_step:
            self.start = trainer.global_step
            os.kill(os.getpid(), self.signum)
