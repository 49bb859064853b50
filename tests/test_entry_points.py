"""The console scripts (mlp-train, mlp-eval, mlp-report) do what train.py, eval.py and the report do,
``python -m experiments`` lists what there is, and help, completion and refusals answer without Lightning."""

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import FAST, ROOT, read_metrics, subprocess_env
from experiments.run_dir import hydra_value

SCRIPTS = {
    "mlp-train": "experiments.run.cli:train",
    "mlp-eval": "experiments.run.cli:evaluate",
    "mlp-report": "experiments.reports.cli:main",
}


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
    from experiments import names

    readme = (ROOT / "README.md").read_text()
    internal = {"callbacks": {"model_checkpoint", "last_checkpoint", "rich_progress_bar"}, "debug": {"default"}}
    for group in (ROOT / "conf" / g.name for g in names.GROUPS):  # every group the project defines
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{group.name}="))
        listed = set(line.rpartition(": ")[2].split(", "))
        assert listed == {p.stem for p in group.glob("*.yaml")} - internal.get(group.name, set()), group.name
        named = [o for o in listed if f"`{o}`" in readme or f"{group.name}={o}" in readme]
        assert named == sorted(listed, key=list(listed).index), (group.name, set(listed) - set(named))
    assert "hydra=" not in out  # conf/hydra holds Hydra's own settings (the log format), not a choice


@pytest.mark.slow
def test_mlp_train_eval_and_report_run_as_the_scripts_do(tmp_path):
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "mlp-train").exists():
        pytest.skip("console scripts not installed here: pip install -e . installs them")
    run = lambda *args: subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
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


def imported_modules(stderr: str) -> set[str]:
    """The modules a process imported, from what ``PYTHONPROFILEIMPORTTIME=1`` (``-X importtime``) printed."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, code, says, torch_allowed",
    [
        (["train.py", "--help"], 0, "finish=<sweep_dir>", False),
        (["train.py", "--help"], 0, "\n  activation=      the non-linearity: relu, ", False),
        (["train.py", "-sc", "query=bash"], 0, "activation=", False),  # what each Tab press runs, completion installed
        (["mlp-train", "--help"], 0, "\n  optimizer=       the update rule: adam, ", False),
        (["-m", "experiments"], 0, "[mlp-train]", False),
        (["train.py", "optimizer.lr=0", "hydra.run.dir=run"], 2, "optimizer.lr=0 is invalid", True),
        (["eval.py", "ckpt_path=missing.ckpt", "hydra.run.dir=eval"], 2, "ckpt_path='missing.ckpt' is invalid", True),
        (["scripts/born_dead.py", "--help"], 0, "--bias-init", True),
        (["train.py", "activaton=relu"], 2, "Error: train.py has no activaton (did you mean activation?)", False),
        (["mlp-train", "optimizer.lrr=0.1"], 2, "(did you mean optimizer.lr?): write optimizer.lr=0.1\n", False),
        (["mlp-train", "+optimiser=sgd"], 2, "write optimizer=sgd, without the '+'\n", False),
        (
            ["mlp-eval", "ckpt=x.ckpt"],
            2,
            "eval.py has no ckpt (did you mean ckpt_path?): write ckpt_path=x.ckpt",
            False,
        ),
    ],
)
def test_help_completion_and_refusals_answer_without_importing_lightning(tmp_path, command, code, says, torch_allowed):
    """Lightning's import (with torchmetrics, which loads torchvision's models, torch._dynamo and matplotlib)
    takes seconds: answers that need no training must not wait for it, and help and completion not for torch."""
    first, *rest = command
    if first.endswith(".py"):
        argv = [sys.executable, str(ROOT / first), *rest]
    elif first == "-m":
        argv = [sys.executable, *command]
    else:  # a console script
        argv = [str(Path(sys.executable).parent / first), *rest]
        if not Path(argv[0]).exists():
            pytest.skip("console scripts not installed here: pip install -e . installs them")
    env = {"PYTHONPROFILEIMPORTTIME": "1", "COMP_LINE": "python train.py acti", "COMP_POINT": "20"}
    proc = subprocess.run(argv, cwd=tmp_path, env=subprocess_env(env=env), capture_output=True, text=True, timeout=300)
    assert proc.returncode == code and says in proc.stdout + proc.stderr, proc.stderr[-2000:]
    imported = imported_modules(proc.stderr)
    assert "experiments" in imported or first.startswith("scripts/")  # the record of imports is there to read
    assert "lightning" not in imported and "torchmetrics" not in imported
    assert torch_allowed or "torch" not in imported
    if "Error: " in proc.stderr:  # a refusal is one line, and writes nothing
        assert proc.stderr.count("Error: ") == 1 and not (tmp_path / "outputs").exists()


def test_a_job_repeats_each_warning_once_by_its_first_line_and_an_empty_one_not_at_all(capsys):
    import logging

    from experiments.run.cli import WarningsSeen

    with WarningsSeen() as seen:
        for message in ("first\n  its detail", "", "first\n  another detail", "second"):
            logging.getLogger("experiments").warning(message)
    capsys.readouterr()
    seen.repeat()
    assert capsys.readouterr().out.splitlines() == ["2 warning(s) above, repeated:", "  first", "  second"]


def test_the_launchers_listed_are_every_one_hydra_offers_here():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from experiments.__main__ import LAUNCHERS

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        offered = set(GlobalHydra.instance().config_loader().get_group_options("hydra/launcher"))
    assert {name.split(" ")[0] for name in LAUNCHERS.split(", ")} == offered


LONG = "/tmp/outputs/runs/2026-12-07/10-47-36_119322-8759/checkpoints/and/a/path/longer/than/any/terminal/is/wide"


def test_the_config_dump_never_cuts_a_value(capsys):
    """A terminal gets it wrapped at its width, a log file or a pipe its full lines: the whole path either way
    (rich cropped it at the width, with no mark)."""
    import io

    from omegaconf import OmegaConf
    from rich.console import Console

    from experiments.run.cli import print_config

    cfg = OmegaConf.create({"callbacks": {"model_checkpoint": {"dirpath": LONG}}, "seed": 1})
    print_config(cfg, Console(file=io.StringIO(), width=40))  # not a terminal: plain lines, as they are
    assert f"    dirpath: {LONG}\n" in capsys.readouterr().out
    screen = io.StringIO()
    print_config(cfg, Console(file=screen, force_terminal=True, width=40))
    shown = re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue())
    assert all(len(line) <= 40 for line in shown.splitlines()) and LONG in re.sub(r"\s*\n\s*", "", shown)
