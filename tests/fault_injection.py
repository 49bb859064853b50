"""A callback that sends a signal to its own process in the middle of a given training step.

Used by the tests through Hydra, the way a user adds any callback:
``+diagnostics.inject._target_=fault_injection.SignalAtStep +diagnostics.inject.step=17``
(with ``tests/`` on ``PYTHONPATH``). The signal arrives after the step's backward pass and before
its optimizer step, as a Ctrl-C at a random moment would: inside a step, not between two.
"""

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, step: int, signal_name: str = "SIGINT") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:  # the step that will be number step + 1
            os.kill(os.getpid(), self.signum)
