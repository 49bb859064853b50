"""The README's TensorBoard picture: a sweep's HParams table, drawn by TensorBoard in headless Chromium.

TensorBoard ticks the first five hyperparameters by name (``activation`` and four of the activations'
settings, most of them "None" in a given run); the picture shows the columns a student compares instead
(``--columns``). Needs the dev extra (playwright) and a Chromium on PATH (``playwright install`` downloads
one, which an offline machine cannot).

    python scripts/tensorboard_hparams.py                      # a 3-activation sweep -> docs/tensorboard_hparams.png
    python scripts/tensorboard_hparams.py --sweep outputs/multirun/<date>/<time> --out /tmp/hparams.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["activation", "optimizer", "optimizer.lr", "loss"]
SWEEP = ["activation=relu,leaky_relu,alrelu"]


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@contextmanager
def serving(command: list[str], ready: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """The server ``command`` starts (given ``--port`` on a free port of 127.0.0.1) until the block ends, whatever
    happens; its URL, once its path ``ready`` answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def tensorboard(logdir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """TensorBoard serving ``logdir`` on 127.0.0.1 until the block ends, whatever happens; its URL."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    with serving(command, "/data/runs", env) as url:
        yield url


def show_columns(page: object, hparams: list[str], columns: list[str]) -> None:
    """Tick exactly ``columns`` among the ``hparams`` checkboxes of the HParams tab (the metrics and the status
    filter keep TensorBoard's choice), then scroll the list back to its top."""
    boxes = page.locator("paper-checkbox")  # type: ignore[attr-defined]
    for i in range(boxes.count()):
        box = boxes.nth(i)
        name = box.inner_text().strip()
        if name in hparams and (box.get_attribute("aria-checked") == "true") != (name in columns):
            box.click()
    boxes.first.scroll_into_view_if_needed()


def draw(sweep: Path, out: Path, columns: list[str], env: dict[str, str] | None = None) -> None:
    """The HParams table of ``sweep`` with ``columns`` shown, as a PNG."""
    import yaml
    from playwright.sync_api import sync_playwright

    logged = sorted(sweep.glob("*/tensorboard/hparams.yaml"))
    if not logged:
        raise SystemExit(f"{sweep}: no <job>/tensorboard/hparams.yaml (not a finished sweep with logger=tensorboard)")
    hparams = sorted({name for path in logged for name in yaml.safe_load(path.read_text())})  # each job its own
    if missing := sorted(set(columns) - set(hparams)):
        raise SystemExit(f"--columns {' '.join(missing)}: not a hyperparameter the jobs of {sweep} logged")
    browser_path = chromium()
    if browser_path is None:
        raise SystemExit("no chromium on PATH: install Debian's chromium package (or another Chromium)")
    with tensorboard(sweep, env) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 2300, "height": 330})
            page.goto(f"{url}/#hparams")
            page.locator("paper-checkbox").first.wait_for(timeout=120_000)
            show_columns(page, hparams, columns)
            page.get_by_text("Trial ID", exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, help=f"a sweep directory (default: run train.py -m {' '.join(SWEEP)})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "tensorboard_hparams.png")
    parser.add_argument("--columns", nargs="+", default=COLUMNS, help="the hyperparameters shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sweep = args.sweep
        if sweep is None:
            sweep = Path(tmp) / "sweep"
            command = [sys.executable, str(ROOT / "train.py"), "-m", *SWEEP, f"hydra.sweep.dir={sweep}"]
            subprocess.run([*command, "print_config=false", "callbacks.progress_bar=null"], check=True)
        draw(sweep, args.out, args.columns)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
