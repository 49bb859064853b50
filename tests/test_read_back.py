"""The rule for every file read back (``read_back.py``): nothing it names is called, nothing outside its directory
is touched, damage is one line. Unit tests of its parts, then property tests that generate damaged and hostile
values for every key of a checkpoint's settings, of ``metrics.json`` and of a sweep's recorded overrides, and hold
the three promises over them (end to end: test_hostile_inputs.py)."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import read_back
from experiments.errors import DamagedFile, ExperimentError
from experiments.read_back import damaged, own_file, plain, read_json, write_bytes, write_json, write_text


def test_plain_refuses_a_class_named_anywhere_but_where_it_is_allowed():
    allowed = frozenset({"hp.loss._target_"})
    plain({"loss": {"_target_": "torch.nn.CrossEntropyLoss"}}, "f.ckpt", "hp", allowed)
    for value, key in [
        ({"loss": {"weight": {"_target_": "os.mkdir"}}}, "hp.loss.weight._target_"),
        ({"model": {"_target_": "os.mkdir"}}, "hp.model._target_"),
        ({"x": [1, {"_target_": "os.system"}]}, "hp.x[1]._target_"),
    ]:
        with pytest.raises(DamagedFile, match=rf"^f\.ckpt: {key.replace('[', '.').replace(']', '.')} names a class"):
            plain(value, "f.ckpt", "hp", allowed)


@pytest.mark.parametrize(
    "value, words",
    [
        ({"lr": "${oc.env:HOME}"}, "hp.lr holds an interpolation"),
        ({"lr": torch.ones(1)}, "hp.lr is a Tensor, not a plain value"),
        ({1: "x"}, "hp.1 has a key that is not a name"),
        ({"f": print}, "is a builtin_function_or_method"),
    ],
)
def test_plain_refuses_interpolations_objects_and_keys_that_are_no_names(value, words):
    with pytest.raises(DamagedFile, match=words) as caught:
        plain(value, "f.ckpt", "hp")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("f.ckpt: ")


def test_own_file_takes_a_file_of_its_directory_also_where_the_directory_moved(tmp_path):
    own = tmp_path / "run" / "checkpoints"
    own.mkdir(parents=True)
    (own / "best.ckpt").write_text("x")
    assert own_file(own, str(own / "best.ckpt"), "m.json", "best_ckpt") == own / "best.ckpt"
    assert own_file(own, "/moved/from/here/checkpoints/best.ckpt", "m.json", "best_ckpt") == own / "best.ckpt"


def test_own_file_refuses_another_directory_s_file_a_link_dot_dot_and_what_is_no_path(tmp_path):
    own, other = tmp_path / "run" / "checkpoints", tmp_path / "other" / "checkpoints"
    own.mkdir(parents=True)
    other.mkdir(parents=True)
    (other / "best.ckpt").write_text("other run")
    (own / "link.ckpt").symlink_to(other / "best.ckpt")
    for named in [str(other / "best.ckpt"), str(own / "link.ckpt"), str(own / ".." / ".."), 5, None, ""]:
        with pytest.raises(DamagedFile, match=r"m\.json: best_ckpt ") as caught:
            own_file(own, named, "m.json", "best_ckpt")
        assert "\n" not in str(caught.value)


def test_read_json_reads_no_file_larger_than_a_record_can_be(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"status": "completed", "test/acc": 10**400}))
    assert read_json(path)["test/acc"] == 10**400  # as written: the readers check what they use
    monkeypatch.setattr(read_back, "MAX_BYTES", 16)
    assert read_json(path) == {}


@pytest.mark.parametrize("write", [write_text, write_bytes, write_json])
def test_a_write_replaces_a_planted_link_and_never_writes_through_it(tmp_path, write):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    target = tmp_path / "summary.csv"
    target.symlink_to(outside)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.symlink_to(outside)  # a link planted at the temporary name too
    write(target, {"a": 1} if write is write_json else b"new" if write is write_bytes else "new")
    assert outside.read_text() == "keep" and not target.is_symlink() and not tmp.exists()


# ---------------------------------------------------------------- the three promises, over generated damage

MARKER = "read-back-payload-ran"


def hostile(marker: Path, outside: Path) -> st.SearchStrategy:
    """Values a careless edit, a damaged disk or an attacker could leave in place of any value of a file."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(
            [
                "${oc.env:HOME}",
                "${oc.create:'{_target_: os.mkdir}'}",
                str(outside),
                str(outside / ".." / outside.name / "precious"),
                "../../outside",
                "=HYPERLINK(1)",
                "２",
                "²",
                "\n",
            ]
        ),
        st.just({"_target_": "os.mkdir", "path": str(marker)}),
        st.just({"_target_": "shutil.rmtree", "path": str(outside)}),
        st.lists(st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats()), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    )


def key_paths(value: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key of a nested mapping, as the path of keys that leads to it."""
    found = []
    for key, inner in value.items():
        found.append((*prefix, key))
        if isinstance(inner, dict):
            found += key_paths(inner, (*prefix, key))
    return found


def set_at(value: dict, path: tuple, new) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


def untouched(marker: Path, outside: Path) -> None:
    assert not marker.exists(), "a value read back was called"
    assert (outside / "precious").read_text() == "keep", "a file outside was changed"
    assert sorted(p.name for p in outside.iterdir()) == ["precious"], "something was written outside"


def one_line(exc: ExperimentError, source: Path) -> None:
    assert "\n" not in str(exc) and str(source) in str(exc), str(exc)


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("read-back")
    (root / "outside").mkdir()
    (root / "outside" / "precious").write_text("keep")
    (root / "work").mkdir()
    return root / "work", root / MARKER, root / "outside"


@pytest.fixture(scope="module")
def checkpoint(good_checkpoint) -> dict:
    """A checkpoint as a run writes it (a fitted classifier and its data module's settings)."""
    return torch.load(good_checkpoint, weights_only=True)


SETTINGS = ("hyper_parameters", "datamodule_hyper_parameters")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_checkpoint_s_settings_damaged_anywhere_call_nothing_touch_nothing_and_are_one_line(data, checkpoint, places):
    from conftest import compose_config
    from experiments.run.checkpoints import model_and_data

    work, marker, outside = places
    edited = {k: json.loads(json.dumps(v)) if k in SETTINGS else v for k, v in checkpoint.items()}
    part = data.draw(st.sampled_from(SETTINGS))
    path = data.draw(st.sampled_from(key_paths(edited[part])))
    set_at(edited[part], path, data.draw(hostile(marker, outside)))
    file = work / "hostile.ckpt"
    torch.save(edited, file)
    try:  # as eval.py builds what it tests: the model, and the data scaled as the checkpoint says
        model_and_data(file, compose_config([f"ckpt_path={file}"], name="eval").data)
    except ExperimentError as exc:
        one_line(exc, file)
    untouched(marker, outside)


@pytest.fixture(scope="module")
def record(places) -> dict:
    """A job's metrics.json as a completed run writes it (every key it has)."""
    from experiments.run.record import first_record

    return {
        **first_record(places[0], {"activation": "relu"}, ["activation=relu", "seed=0"], {"run_name": "r", "tags": []}),
        "status": "completed",
        "test/acc": 0.9,
        "test/loss": 0.3,
        "val/acc": 0.89,
        "best_val_acc": 0.89,
        "epochs": 2,
        "global_step": 10,
        "wall_seconds": 3.0,
        "best_ckpt": "/somewhere/0_activation=relu,seed=0/checkpoints/best.ckpt",
        "interrupted_ckpt": "/somewhere/0_activation=relu,seed=0/checkpoints/interrupted.ckpt",
        "resume_command": "python train.py ...",
        "fused_group": {"jobs": [0, 1], "members": 2},
        "diag/dead_frac/layer1": 0.1,
        "diag/grad_norm/layer1": 0.01,
        "history": {"val/acc": [0.8, 0.89], "epoch_seconds": [1.0, 1.0], "diag/dead_frac/layer1": [0.0, 0.1]},
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_record_damaged_anywhere_calls_nothing_touches_nothing_and_is_one_line(data, record, places):
    """metrics.json as the report, finish= and eval.py's run directory read it."""
    from experiments.reports.cli import build_report
    from experiments.run_dir import checkpoint_in
    from experiments.sweep_dir import plan_job

    work, marker, outside = places
    sweep = work / "sweep"
    shutil.rmtree(sweep, ignore_errors=True)
    edited = json.loads(json.dumps(record))
    set_at(edited, data.draw(st.sampled_from(key_paths(edited))), data.draw(hostile(marker, outside)))
    for n, value in enumerate([edited, record]):
        job = sweep / f"{n}_activation=relu,seed={n}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- activation=relu\n- seed={n}\n")
        (job / "checkpoints").mkdir()
        (job / "checkpoints" / "best.ckpt").write_text("x")
        (job / "metrics.json").write_text(json.dumps(value))
    job = sweep / "0_activation=relu,seed=0"
    try:
        build_report(sweep)
    except ExperimentError as exc:
        one_line(exc, sweep)
    plan_job(0, job)
    try:
        assert Path(checkpoint_in(str(job))).resolve().is_relative_to(job.resolve())
    except ExperimentError as exc:
        one_line(exc, job)
    untouched(marker, outside)


@settings(max_examples=200, deadline=None)
@given(
    overrides=st.lists(
        st.tuples(
            st.sampled_from(
                ["seed", "activation", "experiment", "+note", "optimizer.lr", "+callbacks.pwn", "data.root"]
            ),
            st.sampled_from(["1", "relu", "../../../tmp/x", "/etc/x", "x/../../y", "${oc.env:HOME}", "'a,b'", "[1,2]"])
            | st.just("{_target_: os.mkdir, path: x}")
            | st.text(max_size=8),
        ).map("=".join),
        max_size=4,
    )
)
def test_a_sweep_s_recorded_overrides_replay_only_what_names_no_class_and_no_file(overrides):
    from experiments.run.command_line import replayable

    source = Path("/sweep/multirun.yaml")
    try:
        replayed = replayable(overrides, source, "task")
    except DamagedFile as exc:
        assert str(exc).startswith(f"{source}: hydra.overrides.task ") and "\n" not in str(exc)
        return
    for override in replayed:
        key, _, value = override.partition("=")
        assert "_target_" not in override and "${" not in override
        assert "." in key or not (value.startswith("/") or ".." in Path(value).parts)


def test_damaged_names_the_file_and_the_key():
    assert str(damaged("m.json", "best_ckpt", "is 5")) == (
        "m.json: best_ckpt is 5; the file was damaged or edited: restore it or use another one"
    )
