"""The plain install's promise (``pip install -e .`` trains, sweeps, reports and evaluates), proved on the
full install: every module that only an extra brings (the extras' dependencies, transitively, less the
defaults') is made unimportable, and the README's commands still work and never try one."""

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from conftest import FAST, ROOT, run_process, subprocess_env

pytestmark = pytest.mark.slow
PLAIN = Path(__file__).parent / "plain_install"  # its sitecustomize blocks the modules


def installed_closure(requirements: list[str]) -> set[str]:
    """The installed distributions that ``requirements`` bring, transitively (normalised names)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for sub in map(Requirement, dist.requires or []):
            wanted = {*requirement.extras, ""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    return seen


def extra_only() -> tuple[set[str], set[str]]:
    """The distributions only the extras install, and their top-level modules."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    only = installed_closure(extras) - installed_closure(project["dependencies"])
    by_module = metadata.packages_distributions()
    normal = {m: {re.sub(r"[-_.]+", "-", d).lower() for d in dists} for m, dists in by_module.items()}
    return only, {m for m, dists in normal.items() if dists <= only and m.isidentifier()}


def test_the_extras_bring_modules_the_defaults_do_not():
    dists, blocked = extra_only()
    assert {"mlflow-skinny", "keras", "pandas", "nbclient"} <= dists
    assert {"mlflow", "keras", "pandas", "nbclient", "ipykernel", "hypothesis", "mutmut"} <= blocked
    assert not {"torch", "lightning", "hydra", "omegaconf", "matplotlib", "tensorboard", "rich", "yaml"} & blocked


def test_a_plain_install_trains_sweeps_reports_and_evaluates(tmp_path):
    log = tmp_path / "looked_for.txt"
    dists, modules = extra_only()
    env = {
        "PLAIN_INSTALL_BLOCKS": ",".join(modules),
        "PLAIN_INSTALL_DISTS": ",".join(dists),
        "PLAIN_INSTALL_LOG": str(log),
    }
    # the blocker works: a module of an extra is missing, by import and by find_spec
    probe = (
        "import importlib.metadata as m, importlib.util as u; assert u.find_spec('pandas') is None; "
        "assert 'pandas' not in {d.metadata['Name'] for d in m.distributions()}; import pandas"
    )
    blocked = subprocess.run(
        [sys.executable, "-c", probe], env=subprocess_env([PLAIN], env), capture_output=True, text=True, check=False
    )
    assert blocked.returncode == 1 and "ModuleNotFoundError: No module named 'pandas'" in blocked.stderr
    run = run_process([*FAST, "hydra.run.dir=run"], tmp_path, env=env, extra_paths=[PLAIN])
    assert run.returncode == 0, run.stderr[-3000:]
    sweep = run_process(
        ["-m", *FAST, "activation=relu,elu", "hydra.sweep.dir=sweep"], tmp_path, env=env, extra_paths=[PLAIN]
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert (tmp_path / "sweep" / "summary.md").is_file() and (tmp_path / "sweep" / "test_acc.png").is_file()
    evaluated = run_process(
        ["ckpt_path=run", "progress_bar=false", "hydra.run.dir=eval"], tmp_path, "eval.py", env, extra_paths=[PLAIN]
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "eval.json").is_file()
    # the project's own code never looks for one (libraries probing their optional modules may)
    looked_for = set(log.read_text().split()) - {"pandas"}
    assert not {m for m in looked_for if m.partition(".")[0] in {"mlflow", "keras", "nbclient", "ipykernel"}}
