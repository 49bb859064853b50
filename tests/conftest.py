"""Shared fixtures: the repo root, a composed config, and a runner for ``train.py`` as users call it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
# Small and quick: 20 batches of training, one validation and one test batch.
FAST = ["trainer.limit_train_batches=20", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.max_epochs=1", "print_config=false", "progress_bar=false"]


def compose_config(overrides: list[str] | None = None, name: str = "config") -> DictConfig:
    import experiments.cli  # noqa: F401  (registers the run_id resolver)

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [], return_hydra_config=False)


def run_script(args: list[str], tmp_path: Path, script: str = "train.py", env: dict | None = None,
               timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a script of the repo in a subprocess, its outputs under ``tmp_path``."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONWARNINGS": "ignore", **(env or {})})
    # SIGINT back to its default: a shell that starts CI in the background ignores it, the child would
    # inherit that, and Python then installs no KeyboardInterrupt handler (so no Ctrl-C to test)
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())
