"""``python -m experiments``: what there is to run, and every config group with its options."""

from __future__ import annotations

from experiments.config.catalogue import overview as groups
from experiments.names import CONF_DIR

COMMANDS = [
    ("python train.py [group=option ...] [key=value ...]", "mlp-train", "train one configuration (-m: a sweep)"),
    ("python eval.py ckpt_path=<file>", "mlp-eval", "test a checkpoint on the 10,000 test images"),
    ("python train.py finish=<sweep_dir>", "mlp-train", "finish a stopped sweep in place"),
    ("python -m experiments.reports <sweep_dir>", "mlp-report", "rebuild a sweep's report"),
]
# Where a sweep's jobs run (hydra/launcher=...): Hydra's, the plugins' and this project's.
LAUNCHERS = "basic (one after another), joblib, submitit_local, submitit_slurm, fused, ray"
SCRIPTS = [
    ("scripts/benchmark.py", "the framework against a plain PyTorch loop"),
    ("scripts/born_dead.py", "P(a random narrow deep ReLU net is dead at birth)"),
    ("scripts/activation_gallery.py", "every activation and its derivative in one PNG"),
    ("scripts/keras_lecture.py", "the lecture's Keras program on PyTorch (extra: keras)"),
    ("scripts/plain_mnist.py", "the framework-free reference loop"),
    ("scripts/preset_times.py", "how long each preset's full command takes here"),
]


def overview() -> str:
    lines = ["Commands (console script in brackets):"]
    lines += [f"  {command:<52} {'[' + script + ']':<13} {what}" for command, script, what in COMMANDS]
    lines += ["", "Scripts:"] + [f"  python {path:<32} {what}" for path, what in SCRIPTS]
    lines += ["", f"Config groups ({CONF_DIR}), choose with group=option (the default first):", *groups()]
    lines += ["", f"Sweep launchers, choose with -m hydra/launcher=...: {LAUNCHERS}"]
    lines += ["", "python train.py --help lists every key; README.md explains each group."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(overview())
