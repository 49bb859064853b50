"""The console scripts (mlp-train, mlp-eval, mlp-report) do what train.py, eval.py and the report do, and
``python -m experiments`` lists what there is."""

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import FAST, ROOT, read_metrics, subprocess_env
from experiments.run_dir import hydra_value

SCRIPTS = {"mlp-train": "experiments.cli:train", "mlp-eval": "experiments.cli:evaluate",
           "mlp-report": "experiments.reports:main"}


def test_the_console_scripts_are_declared_and_point_at_the_entry_functions():
    declared = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert declared == SCRIPTS
    for value in SCRIPTS.values():
        module, _, name = value.partition(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))


def test_python_m_experiments_lists_commands_and_every_group_option(capsys):
    import runpy
    runpy.run_module("experiments", run_name="__main__")  # what python -m experiments runs
    out = capsys.readouterr().out
    for script in SCRIPTS:
        assert f"[{script}]" in out
    for group in (ROOT / "conf").iterdir():
        if group.is_dir():
            line = next(l for l in out.splitlines() if l.strip().startswith(f"{group.name}="))
            assert all(p.stem in line for p in group.glob("*.yaml")), group.name


@pytest.mark.slow
def test_mlp_train_eval_and_report_run_as_the_scripts_do(tmp_path):
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "mlp-train").exists():
        pytest.skip("console scripts not installed here: pip install -e . installs them")
    run = lambda *args: subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=tmp_path, env=subprocess_env(),
                                       capture_output=True, text=True, timeout=300)
    proc = run("mlp-train", "-m", "activation=relu,elu", *FAST, "diagnostics=none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = tmp_path.glob("outputs/multirun/*/*")
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 2 and all(read_metrics(j)["status"] == "completed" for j in jobs)
    (sweep / "summary.md").unlink()
    proc = run("mlp-report", str(sweep))
    assert proc.returncode == 0 and (sweep / "summary.md").is_file(), proc.stderr[-2000:]
    ckpt = read_metrics(jobs[0])["best_ckpt"]
    proc = run("mlp-eval", f"ckpt_path={hydra_value(ckpt)}", "progress_bar=false")  # quoted: the path has = and ,
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1].startswith("test/acc="), proc.stderr[-2000:]
