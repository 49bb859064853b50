"""scripts/activation_gallery.py: every activation of conf/activation/ drawn, with its autograd derivative."""

import matplotlib.image
import pytest
import torch

from conftest import ROOT, script_module

gallery = script_module("scripts/activation_gallery.py")


def test_every_catalogue_activation_is_drawn_in_one_readable_png(tmp_path):
    out = tmp_path / "g.png"
    names = gallery.draw(out, dpi=60)
    assert names == sorted(p.stem for p in (ROOT / "conf" / "activation").glob("*.yaml"))
    height, width = matplotlib.image.imread(out).shape[:2]
    assert 600 <= width <= 1500 and 400 <= height <= 1200


@pytest.mark.parametrize(
    "name, x, f, df",
    [
        ("relu", -1.0, 0.0, 0.0),
        ("relu", 2.0, 2.0, 1.0),
        ("alrelu", -2.0, 0.02, -0.01),
        ("leaky_relu", -2.0, -0.02, 0.01),
        ("selu", 1.0, 1.0507, 1.0507),
        ("sigmoid", 0.0, 0.5, 0.25),
    ],
)
def test_the_drawn_curves_are_the_function_and_its_derivative(name, x, f, df):
    import yaml

    cfg = yaml.safe_load((ROOT / "conf" / "activation" / f"{name}.yaml").read_text())
    y, dy = gallery.curves(cfg, torch.tensor([x]))
    assert y.item() == pytest.approx(f, abs=1e-4) and dy.item() == pytest.approx(df, abs=1e-4)


def test_the_committed_picture_is_the_one_the_readme_shows():
    assert (ROOT / "docs" / "activations.png").stat().st_size < 400_000
    assert "![The activation catalogue](docs/activations.png)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--dpi", "0"], "--dpi must be in [30, 600]"),
        (["--out", "gallery.txt"], "--out gallery.txt: the file name must end in one of .png, .svg, .pdf"),
    ],
)
def test_a_wrong_argument_is_one_usage_error_before_anything_is_drawn(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["activation_gallery.py", *args])
    with pytest.raises(SystemExit) as exit_:
        gallery.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
