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
    """``step``: a training step; ``step: test`` sends the signal in the final test instead."""

    def __init__(self, step: int | str, signal_name: str = "SIGINT") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:  # the step that will be number step + 1
            os.kill(os.getpid(), self.signum)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.step == "test":
            os.kill(os.getpid(), self.signum)
