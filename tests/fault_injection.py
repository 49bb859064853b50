"""Callbacks that send a signal to their own process at a chosen moment of a run.

Used by the tests through Hydra, the way a user adds any callback:
``+diagnostics.inject._target_=fault_injection.SignalAtStep +diagnostics.inject.step=17``
(with ``tests/`` on ``PYTHONPATH``).
"""

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    """``step``: a training step; ``step: test`` sends the signal in the final test instead. The signal arrives
    after the step's backward pass and before its optimizer step, as a Ctrl-C at a random moment would: inside
    a step, not between two."""

    def __init__(self, step: int | str, signal_name: str = "SIGINT") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:  # the step that will be number step + 1
            os.kill(os.getpid(), self.signum)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.step == "test":
            os.kill(os.getpid(), self.signum)


class SignalInSetUp(L.Callback):
    """The signal in fit's set-up, before training begins (the data loaded, the optimizers not yet made). Its
    one hook is one a fused member's run calls, so a fused group gets it too."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        self.signum = getattr(signal, signal_name)

    def setup(self, trainer, pl_module, stage) -> None:
        if stage == "fit":
            os.kill(os.getpid(), self.signum)


class SignalInValidation(L.Callback):
    """The signal in the first batch of the validation that follows training step ``step`` (a validation of
    more than one batch: Lightning would end it mid-way on the SIGTERM a Ctrl-C becomes)."""

    def __init__(self, step: int, signal_name: str = "SIGINT") -> None:
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and trainer.global_step == self.step and batch_idx == 0:
            os.kill(os.getpid(), self.signum)
