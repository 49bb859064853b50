"""``process_state.restored``: whatever a run changes in pytest's process is put back for the next test."""

import io
import logging
import os
import random
import signal
import sys
import warnings

import numpy as np
import pytest
import torch
from hydra import initialize_config_dir

import process_state
from conftest import CONF, compose_config, read_metrics, run_script


def _hydra(tmp_path):
    from hydra.core.utils import JobRuntime

    compose_config(["seed=1"])  # sets HydraConfig's
    JobRuntime.instance().set("name", "another_job")
    initialize_config_dir(config_dir=CONF, version_base="1.3").__enter__()  # left initialised, as a crash leaves it


def _logging(tmp_path):
    logging.getLogger().addHandler(logging.FileHandler(tmp_path / "run.log"))
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("lightning.pytorch").propagate = False
    logging.getLogger("experiments").addFilter(logging.Filter("nothing"))
    logging.disable(logging.WARNING)


def _warnings(tmp_path):
    warnings.simplefilter("error")
    logging.captureWarnings(True)


def _torch(tmp_path):
    torch.set_num_threads(1 if torch.get_num_threads() > 1 else 2)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_float32_matmul_precision("medium")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.set_anomaly_enabled(True)


def _random(tmp_path):
    random.seed(7), np.random.seed(7), torch.manual_seed(7)


def _signals(tmp_path):
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _streams(tmp_path):
    sys.stdout, sys.stderr, sys.excepthook = io.StringIO(), io.StringIO(), lambda *_: None


def _modules(tmp_path):
    (tmp_path / "users_own_part.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    import users_own_part  # noqa: F401


def _workers(tmp_path):
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor(max_workers=1).submit(os.getcwd).result()


CHANGES = {
    "cwd": lambda tmp_path: os.chdir(tmp_path),
    "environ": lambda tmp_path: os.environ.update(PL_GLOBAL_SEED="7", HYDRA_FULL_ERROR="1"),
    "argv": lambda tmp_path: setattr(sys, "argv", ["train.py", "seed=1"]),
    "path": lambda tmp_path: sys.path.insert(0, str(tmp_path)),
    "streams": _streams,
    "hydra": _hydra,
    "logging": _logging,
    "warnings": _warnings,
    "torch": _torch,
    "random": _random,
    "signals": _signals,
    "modules": _modules,
    "workers": _workers,
}


def test_every_piece_has_a_change_here():
    assert sorted(CHANGES) == sorted(process_state.taken())


@pytest.mark.parametrize("piece", sorted(CHANGES))
def test_a_change_to_each_piece_is_put_back(piece, tmp_path):
    before = process_state.taken()
    with process_state.restored():
        CHANGES[piece](tmp_path)
        changed = process_state.taken()
    assert changed[piece] != before[piece]  # the change is one ``taken`` sees
    assert process_state.taken() == before


def test_everything_changed_at_once_and_an_exception_is_put_back_too(tmp_path):
    before = process_state.taken()
    with pytest.raises(RuntimeError), process_state.restored():
        for piece, change in CHANGES.items():
            (tmp_path / piece).mkdir()
            change(tmp_path / piece)
        raise RuntimeError("a run that crashed")
    assert process_state.taken() == before


def test_a_worker_pool_started_by_one_test_is_not_inherited_by_the_next_one_in_another_directory(tmp_path):
    from joblib.externals.loky import get_reusable_executor

    for directory in ("first", "second"):  # as two tests' joblib sweeps, each in a directory of its own
        (tmp_path / directory).mkdir()
        with process_state.restored():
            os.chdir(tmp_path / directory)
            assert get_reusable_executor(max_workers=1).submit(os.getcwd).result() == str(tmp_path / directory)


@pytest.mark.slow
def test_a_deterministic_run_in_this_process_leaves_it_as_it_was(tmp_path):
    # seeds, torch's deterministic flag and threads, Hydra's job logging into a file, Lightning's SIGTERM handler
    before = process_state.taken()
    proc = run_script(["debug=limit", "deterministic=true", "print_config=false", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    assert process_state.taken() == before
