"""What a resumed checkpoint's callback states may restore (``lit/restored_state.py``): the files a
``ModelCheckpoint`` state names are its own directory's, or the checkpoint is refused in one line (end to end:
test_hostile_inputs.py's resume tests)."""

import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from experiments.errors import DamagedFile
from experiments.lit.restored_state import confine


def callback(run: Path, monitor: str | None = "val/acc") -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=str(run / "checkpoints"), monitor=monitor, mode="max")


def state(run: Path, best: str, **more) -> dict:
    return {
        "monitor": "val/acc",
        "best_model_score": torch.tensor(0.9),
        "best_model_path": best,
        "current_score": torch.tensor(0.9),
        "dirpath": str(run / "checkpoints"),
        "best_k_models": {best: torch.tensor(0.9)},
        "kth_best_model_path": best,
        "kth_value": torch.tensor(0.9),
        "last_model_path": "",
        **more,
    }


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    for name in ("run", "other"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "best.ckpt").write_text(name)
        (tmp_path / name / "checkpoints" / "interrupted.ckpt").write_text(name)
    (tmp_path / "victim").mkdir()
    return tmp_path / "run", tmp_path / "other"


def test_a_run_s_own_state_is_restored_as_it_was(runs):
    run, _ = runs
    cb = callback(run)
    own = str(run / "checkpoints" / "best.ckpt")
    checkpoint = {"callbacks": {cb.state_key: state(run, own)}}
    confine(checkpoint, run / "checkpoints" / "interrupted.ckpt", [cb])
    restored = checkpoint["callbacks"][cb.state_key]
    assert restored["best_model_path"] == own and list(restored["best_k_models"]) == [own]
    assert restored["dirpath"] == cb.dirpath


def test_a_moved_run_finds_its_files_in_its_own_directory(runs, tmp_path):
    run, _ = runs
    cb = callback(run)
    was = tmp_path / "before-the-move"
    checkpoint = {"callbacks": {cb.state_key: state(was, str(was / "checkpoints" / "best.ckpt"))}}
    confine(checkpoint, run / "checkpoints" / "interrupted.ckpt", [cb])
    restored = checkpoint["callbacks"][cb.state_key]
    assert restored["best_model_path"] == str(run / "checkpoints" / "best.ckpt") and restored["dirpath"] == cb.dirpath


@pytest.mark.parametrize(
    "named",
    [
        lambda run, other: str(run / "checkpoints" / ".." / ".." / "victim"),  # Lightning would remove it
        lambda run, other: str(other / "checkpoints" / "interrupted.ckpt.missing"),
        lambda run, other: str(run / "checkpoints" / ".."),
        lambda run, other: 5,
    ],
)
def test_a_state_naming_a_file_its_directory_does_not_hold_is_one_line(runs, named):
    run, other = runs
    cb = callback(run)
    bad = named(run, other)
    checkpoint = {"callbacks": {cb.state_key: state(run, bad)}}
    with pytest.raises(DamagedFile, match=re.escape(f"{run / 'checkpoints' / 'interrupted.ckpt'}: callbacks[")) as c:
        confine(checkpoint, run / "checkpoints" / "interrupted.ckpt", [cb])
    assert "\n" not in str(c.value) and "best_model_path" in str(c.value)
    assert (run.parent / "victim").is_dir()


def test_another_run_s_best_checkpoint_is_not_taken_as_this_run_s(runs):
    """A state that names another run's best (and its score) from this run's own directory is refused; one
    written for another directory (a checkpoint continued in a new run) restores no path and no score."""
    run, other = runs
    cb = callback(run)
    theirs = str(other / "checkpoints" / "best.ckpt")
    (run / "checkpoints" / "best.ckpt").unlink()
    checkpoint = {"callbacks": {cb.state_key: state(run, theirs)}}
    with pytest.raises(DamagedFile, match="which is no checkpoint of this run's"):
        confine(checkpoint, run / "checkpoints" / "interrupted.ckpt", [cb])
    continued = {"callbacks": {cb.state_key: state(other, theirs)}}
    confine(continued, other / "checkpoints" / "interrupted.ckpt", [cb])
    restored = continued["callbacks"][cb.state_key]
    assert (
        restored["best_model_path"] == "" and restored["best_model_score"] is None and restored["best_k_models"] == {}
    )


@pytest.mark.parametrize(
    "states, words",
    [
        ({"EpochHistory": {"history": {"val/acc": "0.9"}, "elapsed": 0.0}}, "callbacks[EpochHistory].history"),
        ({"EpochHistory": {"history": [1, 2], "elapsed": 0.0}}, "callbacks[EpochHistory].history"),
        ({"EpochHistory": {"history": {}, "elapsed": "soon"}}, "callbacks[EpochHistory].elapsed"),
        ({"EpochHistory": {"history": {}, "elapsed": float("nan")}}, "callbacks[EpochHistory].elapsed"),
        ({"DeadUnitMonitor": {"history": {}, "latest": {"x": [1]}}}, "callbacks[DeadUnitMonitor].latest"),
        ({"GradNormMonitor": {"history": {}, "epoch_readings": {3: [1.0]}}}, "epoch_readings"),
        ([1, 2], "callbacks is a list, not a mapping"),
    ],
)
def test_a_damaged_history_state_is_one_line(states, words, tmp_path):
    with pytest.raises(DamagedFile, match=re.escape(words)) as caught:
        confine({"callbacks": states}, tmp_path / "x.ckpt", [])
    assert "\n" not in str(caught.value)


def test_a_damaged_score_is_one_line(runs):
    run, _ = runs
    cb = callback(run)
    checkpoint = {"callbacks": {cb.state_key: state(run, str(run / "checkpoints" / "best.ckpt"), kth_value="x")}}
    with pytest.raises(DamagedFile, match=r"kth_value is 'x', not a number"):
        confine(checkpoint, run / "checkpoints" / "interrupted.ckpt", [cb])
