"""The names the project keeps in one place: its config groups, the metrics a run records, how a run ends.

Every module that lists groups, metrics or statuses asks this one, when it needs them (not once at import),
so a group or a metric added here reaches the record, the sweep report, TensorBoard's HParams tab and the
config checks without an edit anywhere else (``tests/test_names.py`` adds one of each and looks for it).
No imports beyond the standard library: every layer may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

# where the config groups below live: inside the package (in the repository a link to conf/), so an installed
# package has them
CONF_DIR = (Path(__file__).resolve().parent / "conf").resolve()


class Status(str, Enum):
    """What ``metrics.json`` says of a run; a ``str``, so it is written, read and compared as plain text."""

    RUNNING = "running"  # written when the run starts; what a killed run leaves
    TRAINED = "trained"  # fit ended, the final test not yet: never a run's last word
    COMPLETED = "completed"
    FAILED = "failed"
    DIVERGED = "diverged"
    PRUNED = "pruned"  # an Optuna trial stopped early: behind the others at one of its validations
    INTERRUPTED = "interrupted"
    INCOMPLETE = "incomplete"  # the report's word for a record that says none of the finished statuses

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def finished() -> tuple[Status, ...]:
    """The statuses a run ends with: a record that says another was cut short (killed) or is no record."""
    return Status.COMPLETED, Status.FAILED, Status.DIVERGED, Status.PRUNED, Status.INTERRUPTED


@dataclass(frozen=True)
class Metric:
    """A metric the run records under ``name``; the LightningModule logs it as ``logged`` (per epoch, or at
    the test); the loggers get its final value as ``final/<name with _ for />``. ``measure``: for a metric of
    the validation or test outputs, the ``MEASURES`` entry both the single and the fused path compute it with;
    ``mode``: whether a higher value is better (``max``) or a lower (``min``); ``summary``: a column of the sweep
    report's table; ``bar``: shown in the progress bar."""

    name: str
    logged: str
    per_epoch: bool  # logged every epoch (a history entry, and a monitor for checkpoints and sweepers)
    measure: str = ""
    mode: Literal["max", "min"] = "max"
    summary: bool = False
    bar: bool = False


# The measures of a stage's outputs: a torchmetrics class and its arguments beside the number of classes.
MEASURES: dict[str, tuple[str, dict[str, object]]] = {
    "acc": ("torchmetrics.classification.MulticlassAccuracy", {"average": "micro"}),
    "f1": ("torchmetrics.classification.MulticlassF1Score", {"average": "macro"}),  # each class counts alike
}

METRICS: tuple[Metric, ...] = (
    Metric("test/acc", "test/acc", per_epoch=False, measure="acc", summary=True, bar=True),
    Metric("val/acc", "val/acc", per_epoch=True, measure="acc", summary=True, bar=True),
    Metric("test/loss", "test/loss", per_epoch=False, mode="min", summary=True, bar=True),
    Metric("test/f1", "test/f1", per_epoch=False, measure="f1", summary=True),
    Metric("val/f1", "val/f1", per_epoch=True, measure="f1"),
    Metric("val/loss", "val/loss", per_epoch=True, mode="min", bar=True),
    Metric("train/loss", "train/loss_epoch", per_epoch=True, mode="min"),
    Metric("train/acc", "train/acc", per_epoch=True),
)

RANKED_BY = "test/acc"  # what a sweep's report ranks its configurations by, unless a search optimised another

# Prefixes of what the monitors measure into the record beside the metrics (the diagnostics, the collapse check)
MEASURED = ("diag/", "collapse/")
# Each hidden layer's activation mean and standard deviation on a probe (``diag/act_mean/layer1``, ...), read every
# few steps: the record's history holds one entry per reading, at the steps listed under ``ACTIVATION_STEPS``
ACTIVATION_MEAN, ACTIVATION_STD, ACTIVATION_STEPS = "diag/act_mean", "diag/act_std", "diag/act_step"


def shown(name: object) -> bool:
    """Whether ``name`` is a value a run's record can hold for its last line and its sweep's summary to show
    (``show: [train/loss]``): a metric, or a measurement."""
    return isinstance(name, str) and (name in recorded() or name.startswith(MEASURED))


def recorded() -> tuple[str, ...]:
    """The final metrics of ``metrics.json``, in the order the report shows them."""
    return tuple(m.name for m in METRICS)


def epoch_metrics() -> dict[str, str]:
    """Per-epoch metrics: what the LightningModule logs -> the record's name for it."""
    return {m.logged: m.name for m in METRICS if m.per_epoch}


def test_metrics() -> dict[str, str]:
    """Metrics of the final test: what the LightningModule logs -> the record's name for it."""
    return {m.logged: m.name for m in METRICS if not m.per_epoch}


def measured(stage: str) -> dict[str, Metric]:
    """The metrics of ``stage``'s outputs (``val``, ``test``) computed by a ``MEASURES`` entry, by logged name."""
    return {m.logged: m for m in METRICS if m.measure and m.logged.startswith(f"{stage}/")}


def summarized() -> tuple[str, ...]:
    """The metrics the sweep report's table shows, in order."""
    return tuple(m.name for m in METRICS if m.summary)


def mode_of(name: str) -> str | None:
    """``max`` or ``min``: which way a metric (by recorded or logged name) gets better; None for no metric."""
    return next((m.mode for m in METRICS if name in (m.name, m.logged)), None)


def monitorable() -> tuple[str, ...]:
    """What a checkpoint, early stopping or a sweeper may watch: the per-epoch metrics as logged."""
    return tuple(epoch_metrics())


Builds = Literal["class", "entries", "scheduler", "preset"]


@dataclass(frozen=True)
class Group:
    """A config group. ``builds``: ``class``, its section names one class (``_target_``); ``entries``, each
    entry of it names one (a callback, a logger) or is null; ``scheduler``, Lightning's ``lr_scheduler`` dict
    with the class under ``scheduler``; ``preset``, it only sets other groups' keys. ``base``: the class
    every class it builds must derive from (the catalogue's check). ``network``: held in a checkpoint's
    hyperparameters and rebuilt from them. ``hparams``: its keys are hyperparameters (HParams tab)."""

    name: str
    builds: Builds
    base: str | None = None
    network: bool = False
    hparams: bool = False
    entry: str = ""  # for ``entries``: what one entry builds, as an error message names it
    what: str = ""  # one line for a student: --help and ``python -m experiments`` show it


GROUPS: tuple[Group, ...] = (
    Group("data", "class", hparams=True, what="the images: batch sizes, validation split, pixel scaling"),
    Group("model", "class", base="torch.nn.Module", network=True, hparams=True, what="the MLP: widths, init"),
    Group("activation", "class", base="torch.nn.Module", network=True, hparams=True, what="the non-linearity"),
    Group("loss", "class", base="torch.nn.Module", network=True, hparams=True, what="what training minimises"),
    Group("optimizer", "class", base="torch.optim.Optimizer", network=True, hparams=True, what="the update rule"),
    Group(
        "scheduler",
        "scheduler",
        base="torch.optim.lr_scheduler.LRScheduler",
        hparams=True,
        what="the learning rate over training",
    ),
    Group("trainer", "class", hparams=True, what="Lightning's Trainer: epochs, device, precision"),
    Group("callbacks", "entries", entry="a callback", what="checkpoints, progress bar, early stopping"),
    Group("diagnostics", "entries", entry="a monitor callback", what="dead units, gradient norms, histograms"),
    Group("logger", "entries", entry="a logger", what="where metrics go: TensorBoard, CSV, MLflow"),
    Group("experiment", "preset", what="presets of the course's questions (the README's presets table)"),
    Group("hparams_search", "preset", what="an Optuna search"),
    Group("debug", "preset", what="quick checks: one batch, overfitting a few, a few batches, profiling"),
)

# Top-level keys train.py reads beside its groups' sections.
SETTINGS = (
    "run_name",
    "tags",
    "seed",
    "deterministic",
    "compile",
    "threads",
    "ckpt_path",
    "print_config",
    "optimized_metric",
    "show",
)
# The settings that label a run (its metrics.json, every logger, the report), not what it trains.
LABELS = ("run_name", "tags")
# Top-level sections that a preset adds and interpolations read; their keys are hyperparameters too.
SEARCH_SECTIONS = ("search",)


def group(name: str) -> Group:
    return next(g for g in GROUPS if g.name == name)


def group_names(**flags: object) -> tuple[str, ...]:
    """The groups whose fields equal ``flags`` (``group_names(network=True)``), in ``GROUPS``' order."""
    return tuple(g.name for g in GROUPS if all(getattr(g, k) == v for k, v in flags.items()))


def read_at_top() -> frozenset[str]:
    """Every top-level key train.py reads: its settings and its groups' sections."""
    return frozenset((*SETTINGS, *(g.name for g in GROUPS if g.builds != "preset")))
