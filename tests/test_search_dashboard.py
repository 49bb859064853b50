"""``optuna-dashboard <storage URL>`` on a search's study, in a real browser: headless Chromium through playwright,
the dashboard on 127.0.0.1 and stopped whatever happens. The study's trials and their values are in the page.
Skipped, saying why, only where no browser or no dashboard can be had (``pip install -e '.[dashboard]'``)."""

import importlib.util
import shutil
import sys
from pathlib import Path

import optuna
import pytest
from test_search import StubLauncher, search_config, sweeper_for

from conftest import script_module

pytestmark = pytest.mark.slow
servers = script_module("scripts/tensorboard_hparams.py")
CHROMIUM = servers.chromium()
DASHBOARD = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent)) or shutil.which("optuna-dashboard")


@pytest.mark.skipif(
    importlib.util.find_spec("playwright") is None, reason="playwright missing: pip install -e '.[dev]'"
)
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium package)")
@pytest.mark.skipif(DASHBOARD is None, reason="optuna-dashboard missing: pip install -e '.[dashboard]'")
def test_the_dashboard_shows_the_searchs_study_and_each_trials_value(tmp_path):
    from playwright.sync_api import sync_playwright

    cfg = search_config(tmp_path, ["hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=1"])
    sweep_dir = Path(cfg.hydra.sweep.dir)
    sweeper_for(cfg, StubLauncher(sweep_dir)).sweep([])
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"  # as docs/search.md says to open it
    trials = optuna.load_study(study_name="lr_width", storage=storage).trials
    command = [DASHBOARD, storage, "--host", "127.0.0.1"]  # optuna-dashboard on 127.0.0.1, stopped whatever happens
    with servers.serving(command, "/api/studies") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(f"{url}/dashboard")
            page.get_by_text("lr_width").first.wait_for(timeout=60_000)  # the study, by its name
            page.get_by_text("lr_width").first.click()
            page.get_by_role("link", name="Trials (List)").click()
            for trial in trials:  # each trial in the list; chosen, its value as the study holds it
                page.get_by_text(f"Trial {trial.number}", exact=True).first.click()
                page.get_by_text(f"Trial {trial.number} (trial_id=").wait_for(timeout=60_000)
                assert page.get_by_text(str(trial.value), exact=True).count() >= 1, (trial.number, trial.value)
        finally:
            browser.close()
