"""The command line before Hydra reads it: what its grammar reads passes untouched, what it cannot read, and
options that moved, get the line to type instead (end to end through train.py and eval.py: test_hostile_inputs);
``finish=<sweep_dir>`` becomes that sweep's own command line (end to end: test_finish_sweeper)."""

import re

import pytest

from experiments.errors import DamagedFile, RunDirectoryError
from experiments.run.command_line import (
    MOVED_OPTIONS,
    finish_arguments,
    misspelt_override,
    moved_option,
    unreadable_override,
)


@pytest.mark.parametrize(
    "args",
    [
        ["activation=relu,elu", "-m"],  # a sweep
        ["'data.root=\"/tmp/a=b\"'".strip("'")],  # quoted as the hint says
        ["hydra.run.dir=my runs/lr 0.1"],  # spaces alone are read
        ["--cfg", "job", "model.hidden_sizes=[8,8]"],
        ["+note=first_try", "~callbacks.progress_bar"],
        ["--config-name=config", "seed=1"],  # Hydra's options, with their values joined or apart
        ["--config-name", "config", "-cp", "conf", "--config-dir=mine"],
        ["+dropout.p=0.1"],  # a new section: close to model.dropout's leaf name, but a section is no typo of a key
        ["+model.dropout=0.1", "+trainer.max_time=00:00:01:00"],
    ],
)
def test_what_hydras_grammar_reads_passes(args):
    assert unreadable_override(args) is None and moved_option(args) is None and misspelt_override(args) is None


@pytest.mark.parametrize(
    "arg, meant",
    [
        ("+optimiser=sgd", "optimizer=sgd"),
        ("+dropuot=0.1", "model.dropout=0.1"),
        ("optimizer.l=0.1", "optimizer.lr=0.1"),
    ],
)
def test_a_near_miss_is_refused_naming_what_to_type(arg, meant):
    assert f"write {meant}" in misspelt_override(["seed=1", arg])


@pytest.mark.parametrize("arg", ["data.root=/tmp/a=b", "ckpt_path=runs/0_lr=0.1,seed=1/x.ckpt", "a=(b"])
def test_an_unreadable_override_gets_its_quoted_form(arg):
    key, _, value = arg.partition("=")
    line = unreadable_override(["print_config=false", arg])
    assert line.startswith(f"Hydra cannot read {arg!r}") and line.endswith(f"""'{key}="{value}"'""")


def test_a_moved_option_names_where_it_went():
    ((old, new),) = MOVED_OPTIONS.items()
    assert moved_option(["-m", old]) == f"{old} is now {new}" and new.startswith("debug=limit")


def a_sweep(tmp_path, task: list[str], hydra: list[str], sweeper: str = "hydra._internal.core_plugins.BasicSweeper"):
    import yaml

    sweep = tmp_path / "multirun" / "21-00-00_ab12"
    sweep.mkdir(parents=True)
    cfg = {"hydra": {"overrides": {"task": task, "hydra": hydra}, "job": {"name": "train", "config_name": "config"}}}
    cfg["hydra"]["sweeper"] = {"_target_": sweeper}
    cfg["hydra"]["callbacks"] = {"output_guard": {"_target_": "experiments.config.hydra_callbacks.OutputGuard"}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(cfg))
    return sweep


def test_finish_names_only_the_directory_and_gets_the_sweeps_own_command_line(tmp_path):
    sweep = a_sweep(
        tmp_path,
        ["activation=relu,tanh", "optimizer.lr=0.1"],
        ["hydra.mode=MULTIRUN", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=old"],
    )
    assert finish_arguments([f"finish={sweep}"]) == [
        "--config-name=config",
        "--multirun",
        "activation=relu,tanh",
        "optimizer.lr=0.1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra/sweeper=finish",
        f"hydra.sweep.dir={sweep}",
    ]
    # another launcher, or its settings, replace the sweep's own; what the jobs compute cannot change
    args = finish_arguments(["-m", f"finish={sweep}", "hydra/launcher=fused", "hydra.launcher.max_members=2"])
    assert args[2:] == [
        "activation=relu,tanh",
        "optimizer.lr=0.1",
        "hydra.launcher.n_jobs=2",
        "hydra/launcher=fused",
        "hydra.launcher.max_members=2",
        "hydra/sweeper=finish",
        f"hydra.sweep.dir={sweep}",
    ]
    assert finish_arguments(["activation=relu"]) is None


def test_finishing_a_search_continues_it_with_its_own_sweeper_and_search_settings(tmp_path):
    from experiments.sweep_dir import OPTUNA_SWEEPER

    sweep = a_sweep(
        tmp_path,
        ["hparams_search=lr_width", "trainer.max_epochs=5"],
        ["hydra.mode=MULTIRUN", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random", "hydra.sweeper.n_trials=24"],
        sweeper=OPTUNA_SWEEPER,
    )
    assert finish_arguments([f"finish={sweep}"])[2:] == [
        "hparams_search=lr_width",
        "trainer.max_epochs=5",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=24",
        "hydra.sweeper.finishing=true",
        f"hydra.sweep.dir={sweep}",
    ]
    # a grid sweep's record replays no sweeper settings: they are a search's alone
    grid = a_sweep(tmp_path / "grid", ["activation=relu,tanh"], ["hydra.sweeper.n_trials=24"])
    with pytest.raises(DamagedFile, match=r"holds 'hydra.sweeper.n_trials=24'; finish= replays only launcher"):
        finish_arguments([f"finish={grid}"])


@pytest.mark.parametrize("extra", ["optimizer.lr=0.2", "seed=3", "hydra.sweep.subdir=x", "finish=elsewhere"])
def test_finish_refuses_what_would_change_the_jobs(tmp_path, extra):
    sweep = a_sweep(tmp_path, ["activation=relu,tanh"], [])
    with pytest.raises(RunDirectoryError, match=f"{extra} would change what its jobs compute") as caught:
        finish_arguments([f"finish={sweep}", extra])
    assert "\n" not in str(caught.value)


def test_a_finished_directory_name_holding_what_hydra_would_misread_is_quoted(tmp_path):
    sweep = a_sweep(tmp_path / "lr=0.1,x", ["seed=1,2"], [])
    assert finish_arguments([f"finish={sweep}"])[-1] == f"hydra.sweep.dir='{sweep}'"


@pytest.mark.parametrize(
    "task, hydra, config_name, words",
    [
        (["+callbacks.pwn._target_=os.mkdir", "+callbacks.pwn.path=x"], [], "config", "may not name a class"),
        (["+callbacks.pwn={_target_:os.mkdir,path:x}"], [], "config", "may not name a class"),
        (["seed=1"], ["+hydra.callbacks.pwn._target_=os.mkdir"], "config", "may not name a class"),
        (["experiment=../../../../tmp/evil/x"], [], "config", "an option is named, not given as a path"),
        (["experiment=/tmp/evil/x"], [], "config", "an option is named, not given as a path"),
        (["optimizer.lr=${oc.env:HOME}"], [], "config", "may not name a class"),
        (["seed=1"], ["hydra.sweep.subdir=../../outside"], "config", "replays only launcher settings"),
        (["seed=1"], [], "../../../tmp/evil/x", "hydra.job.config_name is '../../../tmp/evil/x'"),
        (["seed=(1"], [], "config", "which Hydra cannot read"),
        ("seed=1", [], "config", "is not a list of overrides"),
    ],
)
def test_finish_replays_nothing_a_sweep_record_could_plant(tmp_path, task, hydra, config_name, words):
    """multirun.yaml is read back: what it holds is replayed only where a sweep's command line could carry it and
    it names no class, no interpolation and no config file outside the config directories."""
    import yaml

    sweep = a_sweep(tmp_path, ["seed=1"], [])
    cfg = yaml.safe_load((sweep / "multirun.yaml").read_text())
    cfg["hydra"]["overrides"] = {"task": task, "hydra": hydra}
    cfg["hydra"]["job"]["config_name"] = config_name
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(DamagedFile, match=re.escape(words)) as caught:
        finish_arguments([f"finish={sweep}"])
    assert str(caught.value).startswith(f"{sweep / 'multirun.yaml'}: ") and "\n" not in str(caught.value)


def test_finish_takes_the_user_s_config_directories_from_the_user_not_from_the_record(tmp_path):
    sweep = a_sweep(tmp_path, ["activation=mine"], ["hydra.searchpath=[file:///somewhere/conf]"])
    with pytest.raises(RunDirectoryError, match=re.escape("give them again: finish=")) as caught:
        finish_arguments([f"finish={sweep}"])
    assert "\n" not in str(caught.value)
    args = finish_arguments([f"finish={sweep}", "hydra.searchpath=[file:///somewhere/conf]"])
    assert args.count("hydra.searchpath=[file:///somewhere/conf]") == 1


def test_an_unknown_sampler_is_one_line_naming_the_one_meant_and_every_option():
    said = misspelt_override(["hparams_search=lr_width", "hydra/sweeper/sampler=tpee"])
    assert (
        said
        == "hydra/sweeper/sampler=tpee is no sampler (did you mean tpe?): one of cmaes, grid, nsgaii, qmc, random, tpe"
    )
    assert misspelt_override(["hydra/sweeper/sampler=zzz"]).startswith(
        "hydra/sweeper/sampler=zzz is no sampler: one of"
    )
    assert misspelt_override(["hparams_search=lr_width", "hydra/sweeper/sampler=random"]) is None
