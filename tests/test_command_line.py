"""The command line before Hydra reads it: what its grammar reads passes untouched, what it cannot read, and
options that moved, get the line to type instead (end to end through train.py and eval.py: test_hostile_inputs)."""

import pytest

from experiments.run.command_line import MOVED_OPTIONS, moved_option, unreadable_override


@pytest.mark.parametrize(
    "args",
    [
        ["activation=relu,elu", "-m"],  # a sweep
        ["'data.root=\"/tmp/a=b\"'".strip("'")],  # quoted as the hint says
        ["hydra.run.dir=my runs/lr 0.1"],  # spaces alone are read
        ["--cfg", "job", "model.hidden_sizes=[8,8]"],
        ["+note=first_try", "~callbacks.progress_bar"],
    ],
)
def test_what_hydras_grammar_reads_passes(args):
    assert unreadable_override(args) is None and moved_option(args) is None


@pytest.mark.parametrize("arg", ["data.root=/tmp/a=b", "ckpt_path=runs/0_lr=0.1,seed=1/x.ckpt", "a=(b"])
def test_an_unreadable_override_gets_its_quoted_form(arg):
    key, _, value = arg.partition("=")
    line = unreadable_override(["print_config=false", arg])
    assert line.startswith(f"Hydra cannot read {arg!r}") and line.endswith(f"""'{key}="{value}"'""")


def test_a_moved_option_names_where_it_went():
    ((old, new),) = MOVED_OPTIONS.items()
    assert moved_option(["-m", old]) == f"{old} is now {new}" and new.startswith("debug=limit")
