"""notebooks/hands_on.ipynb runs top to bottom (short settings) and is stored without outputs."""

import importlib.util

import pytest

from conftest import ROOT

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
    sweep = tmp_path / "out" / "comparison"
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
