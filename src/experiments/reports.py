from hydra.experimental.callback import Callback


class SweepReport(Callback):
    pass
