"""Files of a run directory: atomic JSON writes, the resume command's quoting, the write probe."""

import errno
import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.errors import RunDirectoryError
from experiments.read_back import write_json
from experiments.run_dir import check_writable, hydra_value, resume_command


def test_write_json_replaces_a_link_instead_of_following_it(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").symlink_to(outside)
    write_json(tmp_path / "run" / "metrics.json", {"status": "running"})
    assert outside.read_text() == "keep" and not (tmp_path / "run" / "metrics.json").is_symlink()


def test_write_json_is_atomic_a_write_killed_midway_leaves_the_earlier_record_whole(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"status": "completed"})
    before = path.read_text()
    real = Path.write_text

    def killed_midway(self, text, *args, **kwargs):  # half the bytes reach the disk, then the process dies
        real(self, text[: len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"status": "running", "padding": "x" * 1000})
    monkeypatch.undo()
    assert path.read_text() == before and json.loads(before) == {"status": "completed"}


def test_a_reader_of_the_earlier_record_never_sees_the_new_one_half_written(tmp_path):
    """Replaced, not rewritten: a file opened before the write still reads the earlier record whole."""
    path = tmp_path / "metrics.json"
    write_json(path, {"status": "running"})
    with path.open() as reader:
        write_json(path, {"status": "completed", "history": {"val/acc": [0.9] * 100}})
        assert json.loads(reader.read()) == {"status": "running"}
    assert json.loads(path.read_text())["status"] == "completed"


@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "with space",
        "it's",
        'say "hi"',
        "a(b)",
        "back`tick`",
        "x=y,z",
        "${nope}",
        "tab\there",
        "back\\slash",
        "end\\",
        "q\\'x",
        "[1,2]",
    ],
)
def test_the_resume_command_survives_the_shell_and_hydras_parser_for_any_directory_name(tmp_path, name, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    run_dir = tmp_path / name
    ckpt = run_dir / "checkpoints" / "interrupted.ckpt"
    command = resume_command(ckpt, run_dir, ["optimizer=sgd", "optimizer.lr=0.1"])
    args = shlex.split(command)[2:]
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(args)}
    assert parsed["ckpt_path"] == str(ckpt) and parsed["hydra.run.dir"] == str(run_dir)
    assert parsed["optimizer"] == "sgd" and parsed["optimizer.lr"] == 0.1


def test_plain_values_are_left_unquoted():
    assert hydra_value("/tmp/run_1/a-b.ckpt") == "/tmp/run_1/a-b.ckpt"
    assert hydra_value("a b") == "'a b'"


def test_an_unwritable_or_full_directory_is_named(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunDirectoryError, match=f"hydra.run.dir={blocker}/run: not writable"):
        check_writable(blocker / "run")

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(RunDirectoryError, match="not writable .No space left on device"):
        check_writable(tmp_path)


@pytest.mark.parametrize("argv0, head", [("train.py", ["python", "train.py"]), ("/x/bin/mlp-train", ["mlp-train"])])
def test_the_resume_command_starts_the_way_the_run_was_started(monkeypatch, tmp_path, argv0, head):
    monkeypatch.setattr(sys, "argv", [argv0])
    command = shlex.split(resume_command(tmp_path / "c.ckpt", tmp_path, ["seed=1"]))
    assert command[: len(head)] == head and command[len(head)] == "seed=1"
