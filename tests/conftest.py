"""Shared fixtures: the repo root, a composed config, and runners for ``train.py`` and ``eval.py`` as users call
them: in this process (``run_script``), or in a process of their own where a test is about the process
(``run_process``: exit by a signal, Ctrl-C, what is printed before Hydra starts, installs, servers)."""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import setup_globals
from hydra.version import VersionBase
from omegaconf import DictConfig, open_dict
from packaging.version import Version

import process_state
from experiments.run.resolvers import register_resolvers

# The resolvers train.py registers, Hydra's own (``${hydra:...}``, ``${now:...}``) and the version base train.py
# chooses, as a run's process has them before Hydra composes: the state every test starts from and is put back to
register_resolvers()
setup_globals()
VersionBase.instance().setbase(Version("1.3"))
ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
# Small and quick: 20 batches of training, one validation and one test batch.
FAST = [
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.max_epochs=1",
    "print_config=false",
    "callbacks.progress_bar=null",
]


_COMPOSED: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def compose_config(
    overrides: list[str] | None = None, name: str = "config", output_dir: str = "/nonexistent/run"
) -> DictConfig:
    """The config as ``train.py`` composes it, with Hydra's run-time values set (``${hydra:...}`` resolves)."""
    key = (name, tuple(overrides or []))
    if key not in _COMPOSED:  # a composition takes about 0.25 s; a copy of one, a tenth of that
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            _COMPOSED[key] = compose(config_name=name, overrides=list(key[1]), return_hydra_config=True)
    cfg = copy.deepcopy(_COMPOSED[key])
    cfg.hydra.runtime.output_dir = output_dir
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def swept(tmp_path_factory, name: str, args: list[str]) -> tuple[Path, Finished]:
    """The sweep ``args`` run once in a directory of its own (``<tmp>/sweep``) for a session fixture: it must
    complete; its directory and output are read only by the tests that share it."""
    tmp = tmp_path_factory.mktemp(name)
    proc = run_script([*args, "hydra.sweep.dir=sweep"], tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "sweep", proc


# Two activations, two seeds, labelled and logged by every logger: what the report's tests and the record's read
SMALL_SWEEP = [
    "-m",
    "activation=relu,alrelu",
    "seed=0,1",
    *FAST,
    "diagnostics.histograms=null",
    "logger=[tensorboard,csv,mlflow]",
    "tags=[baseline,lr_study]",
    "run_name=first try",
]


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> tuple[Path, Finished]:
    """``SMALL_SWEEP``'s directory (MLflow's store in ``outputs/mlflow.db`` beside it) and its output, shared by
    every test that reads it: read only (a test that changes it changes a copy)."""
    return swept(tmp_path_factory, "small_sweep", SMALL_SWEEP)


@pytest.fixture(scope="session")
def good_checkpoint(tmp_path_factory) -> Path:
    """A fitted classifier's checkpoint with its training state, as Lightning saves it (read only)."""
    import torch
    from lightning import Trainer

    from experiments.data.datamodule import MNISTDataModule
    from experiments.lit.classifier import Classifier

    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    with process_state.restored():  # made before any test's own restoring starts: its seed and fit put back here
        torch.manual_seed(0)
        module = Classifier(
            model={"_target_": "experiments.nn.model.MLP", "hidden_sizes": [32]},
            activation={"_target_": "torch.nn.ReLU"},
            loss={"_target_": "torch.nn.CrossEntropyLoss"},
            optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.003},
        )
        trainer = Trainer(
            accelerator="cpu",
            max_steps=2,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        trainer.fit(module, datamodule=MNISTDataModule(limit_train=512))
        trainer.save_checkpoint(path)
    return path


# A run that diverges (SGD at a learning rate of a million) and is caught at its first logging step
DIVERGING = [*FAST, "optimizer=sgd", "optimizer.lr=1e6", "trainer.log_every_n_steps=5"]


@pytest.fixture(scope="session")
def diverged_run(tmp_path_factory) -> tuple[Path, Finished]:
    """``DIVERGING``'s run directory and output, for every test that reads a diverged run (read only)."""
    run_dir = tmp_path_factory.mktemp("diverged") / "run"
    return run_dir, run_script([*DIVERGING, f"hydra.run.dir={run_dir}"], run_dir.parent)


# The dying-ReLU preset's comparison, long enough for ReLUs to die, logged every 5 steps with histograms
DYING_RELU_SWEEP = [
    "-m",
    "experiment=dying_relu",
    "activation=relu,leaky_relu",
    *FAST,
    "trainer.limit_train_batches=60",
    "trainer.log_every_n_steps=5",
    "diagnostics.dead_units.probe_size=500",
]


@pytest.fixture(scope="session")
def dying_relu_sweep(tmp_path_factory) -> tuple[Path, Finished]:
    """``DYING_RELU_SWEEP``'s directory and output: read by the preset's test and the diagnostics' (read only)."""
    return swept(tmp_path_factory, "dying_relu", DYING_RELU_SWEEP)


# Four deterministic jobs that fuse into one group, each launcher's way
FOUR_JOBS = ["activation=relu,tanh,elu,leaky_relu"]  # four jobs that fuse into one group
FOUR_JOB_SETTINGS = [
    "deterministic=true",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=40",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "print_config=false",
    "callbacks.progress_bar=null",
]
FOUR_JOB_LAUNCHERS = {
    "basic": [],
    "fused": ["hydra/launcher=fused"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def four_jobs(launcher: str) -> list[str]:
    """The command line of the four jobs' sweep on ``launcher`` (its directory given apart)."""
    return ["-m", *FOUR_JOBS, *FOUR_JOB_SETTINGS, *FOUR_JOB_LAUNCHERS[launcher]]


@pytest.fixture(scope="session")
def four_job_sweep(tmp_path_factory):
    """The directory of each launcher's uninterrupted ``four_jobs`` sweep, made when a test first asks for it:
    what a finished sweep is compared with, and what the joblib launcher's jobs recorded (read only)."""
    made: dict[str, Path] = {}

    def of(launcher: str) -> Path:
        if launcher not in made:
            made[launcher], _ = swept(tmp_path_factory, f"four-jobs-{launcher}", four_jobs(launcher))
            records = [read_metrics(job) for job in sorted(made[launcher].glob("*_activation=*"))]
            assert len(records) == 4 and all(m["status"] == "completed" for m in records)
        return made[launcher]

    return of


def subprocess_env(extra_paths: list[Path] = (), env: dict | None = None) -> dict[str, str]:
    """The environment of a subprocess test: this checkout's ``src`` first on the import path (absolute,
    so it holds whatever the working directory), then ``extra_paths``, then whatever was there."""
    full = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full.update({"PYTHONWARNINGS": "ignore", **(env or {})})
    paths = [
        str(ROOT / "src"),
        *map(str, extra_paths),
        *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
    ]
    full["PYTHONPATH"] = os.pathsep.join(paths)
    return full


@pytest.fixture(autouse=True)
def restored_process_state():
    """Every test leaves the process as it found it (``process_state``): runs share pytest's process."""
    with process_state.restored():
        yield


@dataclass
class Finished:
    """A run's exit status and output, as ``subprocess.CompletedProcess`` gives a process's."""

    returncode: int
    stdout: str
    stderr: str


def run_script(
    args: list[str], tmp_path: Path, script: str = "train.py", env: dict | None = None, extra_paths: list[Path] = ()
) -> Finished:
    """``python <script> *args`` in ``tmp_path``, run in this process by the entry function the script calls (its
    console script's; a script of ``scripts/``, its ``main``): Hydra composes the config, runs the job and its
    callbacks, writes the run directory and logs as for the user. As a fresh process would, it starts with
    ``PYTHONWARNINGS`` (``ignore`` unless ``env`` says otherwise) and Python's own Ctrl-C handler; it leaves the
    process as it found it."""
    from experiments.run.cli import evaluate, train

    entry = {"train.py": train, "eval.py": evaluate}.get(script) or script_module(script).main
    out, err = io.StringIO(), io.StringIO()
    with process_state.restored():
        os.chdir(tmp_path)
        os.environ.pop("HYDRA_FULL_ERROR", None)
        os.environ.update({"PYTHONWARNINGS": "ignore", **(env or {})})
        warnings.simplefilter(os.environ["PYTHONWARNINGS"])  # the filter Python makes of it at start-up
        sys.path[:0] = [str(p) for p in extra_paths]
        sys.argv = [str(ROOT / script), *args]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stdout, sys.stderr = out, err
        try:
            returned = entry()  # a console script's wrapper exits with what its function returns
            code = returned if isinstance(returned, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if isinstance(exit_.code, str):
                print(exit_.code, file=err)
        except BaseException:  # what Python prints of an uncaught exception, and its status
            traceback.print_exc(file=err)
            code = 1
    return Finished(code, out.getvalue(), err.getvalue())


@functools.cache
def script_module(script: str) -> Any:
    """A script of the repository (``scripts/born_dead.py``) loaded as a module, once."""
    spec = importlib.util.spec_from_file_location(Path(script).stem, ROOT / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import leaves it: a dataclass of the script looks its module up there
    spec.loader.exec_module(module)
    return module


def run_process(
    args: list[str],
    tmp_path: Path,
    script: str = "train.py",
    env: dict | None = None,
    timeout: int = 300,
    extra_paths: list[Path] = (),
) -> subprocess.CompletedProcess:
    """Run a script of the repo in a subprocess, its outputs under ``tmp_path``."""
    # SIGINT back to its default: a shell that starts CI in the background ignores it, the child would
    # inherit that, and Python then installs no KeyboardInterrupt handler (so no Ctrl-C to test)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=tmp_path,
        env=subprocess_env(extra_paths, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def start_script(
    args: list[str], tmp_path: Path, script: str = "train.py", env: dict | None = None, **popen
) -> subprocess.Popen:
    """``run_process`` without waiting: for a test that signals the run (Ctrl-C, SIGKILL) while it works. Its
    output is piped unless ``popen`` says otherwise (``stdout=subprocess.DEVNULL``, ``start_new_session=True``)."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        cwd=tmp_path,
        env=subprocess_env(env=env),
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen},
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as run_process does
    )


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def write_idx_set(
    root: Path, image: tuple[int, int] = (5, 7), classes: int = 3, train: int = 600, test: int = 90, seed: int = 0
) -> Path:
    """A data set of the IDX family that is not MNIST: ``image``-sized pictures of ``classes`` classes, each
    class a brightness band (so a small MLP learns it), gzipped like the published sets."""
    import gzip

    import numpy as np

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, rows in (("train", train), ("t10k", test)):
        labels = np.arange(rows, dtype=np.uint8) % classes
        rng.shuffle(labels)
        centre = (labels.astype(np.float64) + 0.5) * 255 / classes
        pixels = np.clip(centre[:, None, None] + rng.normal(0, 20, (rows, *image)), 0, 255).astype(np.uint8)
        for kind, array in (("images-idx3", pixels), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (root / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes(), mtime=0))
    return root
