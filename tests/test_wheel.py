"""The package as a user installs it, with no repository beside it: a wheel built from the tree, installed into a
directory of its own, runs ``mlp-train``, ``mlp-eval`` and ``mlp-report`` from an empty directory.

The installed copy runs with ``python -S`` and a ``PYTHONPATH`` of the install directory and this environment's
site-packages: ``-S`` skips the ``.pth`` files, so the editable install's link to ``src/`` is not on the path and
every config and data file must come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow

LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv", "outputs", "mutants", "build", "*.egg-info", "__pycache__", "notebooks"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("install")
    tree, wheels, target = tmp / "tree", tmp / "wheels", tmp / "target"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=LEFT_OUT)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, tree], check=True, timeout=300)
    (wheel,) = wheels.glob("experiments-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True, timeout=300)
    empty = tmp / "empty"
    empty.mkdir()
    return {"target": target, "cwd": empty}


def run_installed(installed: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{installed['target']}{os.pathsep}{sysconfig.get_paths()['purelib']}"}
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=300
    )


def test_the_repository_is_not_on_the_installed_path(installed: dict[str, Path]) -> None:
    found = run_installed(installed, "-c", "import experiments; print(experiments.__file__)")
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(installed["target"])
    bare = {**installed, "target": installed["cwd"]}  # the same command without the wheel: nothing to import
    assert run_installed(bare, "-c", "import experiments").returncode != 0


def test_console_scripts_train_evaluate_and_report_from_an_empty_directory(installed: dict[str, Path]) -> None:
    scripts = installed["target"] / "bin"
    sweep = installed["cwd"] / "sweep"
    trained = run_installed(
        installed, str(scripts / "mlp-train"), "-m", "debug=limit", "seed=0,1", f"hydra.sweep.dir={sweep}"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (job,) = sweep.glob("0_*")
    sources = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["config_sources"]
    assert {"path": str(installed["target"] / "experiments" / "conf"), "schema": "file", "provider": "main"} in sources
    assert json.loads((job / "metrics.json").read_text())["status"] == "completed"

    evaluated = run_installed(installed, str(scripts / "mlp-eval"), f"ckpt_path='{job}'")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (eval_json,) = (installed["cwd"] / "outputs" / "eval").rglob("eval.json")
    assert 0.0 <= json.loads(eval_json.read_text())["test/acc"] <= 1.0

    (sweep / "summary.md").unlink()
    reported = run_installed(installed, str(scripts / "mlp-report"), str(sweep))
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert "seed" in (sweep / "summary.md").read_text()
