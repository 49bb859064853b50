"""The dashboard users look at, in a real browser: a small sweep, ``tensorboard`` on 127.0.0.1, headless
Chromium through playwright (pointed at the system's ``chromium``: ``playwright install`` downloads a browser and
cannot work offline). The HParams table shows every job with its swept value and final test accuracy; the time
series view shows ``val/acc`` for every run. Skipped, saying why, only where no browser can be had."""

import importlib.util
import json

import pytest
import yaml

from conftest import FAST, run_script, script_module, subprocess_env

pytestmark = pytest.mark.slow
pictures = script_module("scripts/tensorboard_hparams.py")
CHROMIUM = pictures.chromium()


@pytest.fixture
def tensorboard(tmp_path):
    """A sweep of two jobs, and TensorBoard serving it on 127.0.0.1 (stopped whatever happens)."""
    sweep = tmp_path / "sweep"
    proc = run_script(["-m", *FAST, "activation=relu,elu", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with pictures.tensorboard(sweep, subprocess_env()) as url:
        yield sweep, url


@pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None, reason="playwright missing: pip install -e '.[dev]'"
)
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)")
def test_the_hparams_table_and_the_val_acc_chart_show_every_job(tensorboard, tmp_path):
    from playwright.sync_api import sync_playwright

    sweep, url = tensorboard
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    records = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert len(records) == 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 2400, "height": 600})
            page.goto(f"{url}/#hparams")
            page.get_by_text("elu", exact=True).first.wait_for(timeout=120_000)
            for record in records:  # its row: the swept value and the final test accuracy as the table prints it
                assert page.get_by_text(record["choices"]["activation"], exact=True).count() >= 1
                assert page.get_by_text(f"{record['test/acc']:.5f}", exact=True).count() == 1, record["test/acc"]
            # the README's picture: TensorBoard ticks the first five hyperparameters by name; the script ticks
            # the ones a student compares, and the table then has those columns and no other
            hparams = sorted(
                {k for job in jobs for k in yaml.safe_load((job / "tensorboard" / "hparams.yaml").read_text())}
            )
            assert set(pictures.COLUMNS) < set(hparams)

            def shown(name: str) -> int:  # its checkbox's label, and its column's header where it is shown
                return page.get_by_text(name, exact=True).filter(visible=True).count()

            # TensorBoard's own choice: the first five by name
            assert [shown(name) for name in hparams[:6]] == [2, 2, 2, 2, 2, 1] and shown("optimizer.lr") == 1
            # TensorBoard offers one run's hyperparameters: every run names them all (ELU's alpha, "None" in ReLU's)
            offered = [name for name in hparams if shown(name)]
            assert offered == hparams and "activation.alpha" in offered and set(pictures.COLUMNS) < set(offered)
            pictures.show_columns(page, hparams, pictures.COLUMNS)
            for name in offered:
                assert shown(name) == (2 if name in pictures.COLUMNS else 1), name
            page.screenshot(path=tmp_path / "tensorboard_hparams.png")
            page.goto(f"{url}/#timeseries")
            page.locator('input[placeholder="Filter tags (regex)"]').first.fill("^val/acc$")
            page.get_by_text("val/acc", exact=True).first.wait_for(timeout=120_000)
            for job in jobs:  # in the run selector and in the chart's legend
                page.get_by_text(job.name[:24]).nth(1).wait_for(timeout=60_000)
            page.screenshot(path=tmp_path / "tensorboard_val_acc.png")
        finally:
            browser.close()
    assert all(
        (tmp_path / name).stat().st_size > 20_000 for name in ("tensorboard_hparams.png", "tensorboard_val_acc.png")
    )
