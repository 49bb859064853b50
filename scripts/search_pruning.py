"""What pruning buys a search: the same Optuna search run once per pruner (same sampler seed), its epochs trained and
its best value side by side, from the runs' own records. Writes a markdown table (docs/search.md's).

    python scripts/search_pruning.py --out outputs/search_pruning                      # lr_width, 24 trials of 5 epochs
    python scripts/search_pruning.py --out /tmp/p --trials 4 --epochs 2 --pruners none median
    python scripts/search_pruning.py --out /tmp/f --launchers basic fused --pruners none --n-jobs 4   # two launchers
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

from experiments.read_back import read_json

ROOT = Path(__file__).resolve().parents[1]


def search(out: Path, pruner: str, launcher: str, trials: int, epochs: int, n_jobs: int, extra: list[str]) -> dict:
    """One search into ``out``; what its records say: trials by status, epochs trained, best value, wall time."""
    args = [
        "hparams_search=lr_width",
        f"hydra.sweeper.n_trials={trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.pruner={pruner}",
        f"trainer.max_epochs={epochs}",
        f"hydra.sweep.dir={out}",
        "callbacks.progress_bar=null",
        *([f"hydra/launcher={launcher}"] if launcher != "basic" else []),
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    records = [read_json(p) for p in sorted(out.glob("*/metrics.json"))]
    statuses = [r.get("status") for r in records]
    epochs_trained = sum(r.get("pruned_after_epoch") or r.get("epochs") or 0 for r in records)
    best = yaml.safe_load((out / "optimization_results.yaml").read_text()) if proc.returncode == 0 else {}
    return {
        "pruner": pruner,
        "launcher": launcher,
        "exit": proc.returncode,
        "completed": statuses.count("completed"),
        "pruned": statuses.count("pruned"),
        "other": len(statuses) - statuses.count("completed") - statuses.count("pruned"),
        "epochs": epochs_trained,
        "best": (best or {}).get("best_value"),
        "seconds": seconds,
        "error": proc.stderr.strip().splitlines()[-1] if proc.returncode and proc.stderr.strip() else "",
    }


def table(rows: list[dict], command: str) -> str:
    head = "| pruner | launcher | trials completed | pruned | other | epochs trained | best val/acc | wall | exit |"
    lines = [
        f"Made by `{command}` on {platform.machine()}, {os.cpu_count()} cores, {date.today().isoformat()}:",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = f"{r['best']:.4f}" if isinstance(r["best"], float) else "-"
        lines.append(
            f"| {r['pruner']} | {r['launcher']} | {r['completed']} | {r['pruned']} | {r['other']} | {r['epochs']} | "
            f"{best} | {r['seconds']:.0f} s | {r['exit']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a new directory: one sweep per row inside it")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pruners", nargs="+", default=["none", "median"])
    parser.add_argument("--launchers", nargs="+", default=["basic"])
    parser.add_argument("--n-jobs", type=int, default=1, help="trials asked and launched at once (fused: per group)")
    parser.add_argument("extra", nargs="*", help="more overrides for every search, e.g. data.limit_train=4096")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"--out {args.out}: exists; name a new directory (nothing already written is touched)")
    rows = []
    for launcher in args.launchers:
        for pruner in args.pruners:
            out = args.out / f"{pruner}-{launcher}"
            rows.append(search(out, pruner, launcher, args.trials, args.epochs, args.n_jobs, args.extra))
            print(rows[-1], flush=True)
    print(table(rows, "python scripts/search_pruning.py " + " ".join(argv if argv is not None else sys.argv[1:])))
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
