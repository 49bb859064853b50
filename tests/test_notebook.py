"""notebooks/hands_on.ipynb runs top to bottom (short settings) and is stored without outputs; run headless
twice, from two working directories, it writes two fresh directories under the repository's outputs/."""

import importlib.util
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env

NOTEBOOK = ROOT / "notebooks" / "hands_on.ipynb"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("nbclient") is None or importlib.util.find_spec("pandas") is None,
        reason="nbclient or pandas missing: pip install -e '.[dev]'",
    ),
]


def test_the_notebook_is_stored_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_the_notebook_runs_and_compares_the_three_activations(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("HANDS_ON_FAST", "1")
    monkeypatch.setenv("HANDS_ON_OUT", str(tmp_path / "out"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: plots become outputs
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    (out,) = (tmp_path / "out").iterdir()  # this execution's own directory
    assert {p.name for p in out.glob("*.png")} == {"loss_per_epoch.png", "dead_per_layer.png"}
    sweep = out / "comparison"
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == [
        "0_activation=relu",
        "1_activation=leaky_relu",
        "2_activation=alrelu",
    ]
    assert (sweep / "summary.csv").is_file() and (sweep / "dead_units.png").is_file()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "test accuracy" in text and "Tip:" not in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the loss per epoch, and the dead fractions (after the report drew its own)


def test_run_headless_twice_from_two_working_directories_it_writes_two_fresh_directories_of_the_repository():
    root = ROOT / "outputs" / "notebook"
    before = set(root.iterdir()) if root.is_dir() else set()
    jupyter = [sys.executable, "-m", "jupyter", "execute", str(NOTEBOOK)]  # the README's command
    made: list = []
    try:
        for cwd in (ROOT, ROOT / "notebooks"):
            proc = subprocess.run(
                jupyter, cwd=cwd, env=subprocess_env(env={"HANDS_ON_FAST": "1"}), capture_output=True, text=True
            )
            made = sorted(set(root.iterdir()) - before)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert "exists and is not empty" not in proc.stdout + proc.stderr
        assert len(made) == 2 and not (ROOT / "notebooks" / "outputs").exists()
        events = []
        for out in made:
            files = [p for p in out.rglob("*") if p.is_file()]
            assert not any("-v1" in p.name for p in files)
            runs = sorted(p.parent for p in out.rglob("metrics.json"))
            assert len(runs) == 4  # the hands-on run and the three of the comparison
            events.append({run.relative_to(out): len(list(run.glob("tensorboard/events.*"))) for run in runs})
        assert events[0] == events[1]  # the second execution's TensorBoard files are not added to the first's
    finally:
        for out in made:
            shutil.rmtree(out, ignore_errors=True)
