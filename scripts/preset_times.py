"""How long each preset's full command takes here, as the README's presets table says it: each command run once in a
fresh process from a temporary directory, wall time by the clock around it. Writes a markdown table (the machine,
the date and the commit in its header) for docs/preset_times.md.

    python scripts/preset_times.py --markdown docs/preset_times.md
    python scripts/preset_times.py --only hands_on linear_collapse     # some of them
    python scripts/preset_times.py --keep outputs/presets              # keep each one's outputs in <dir>/<preset>
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {  # name -> the commands of its README row (after "python"), run one after another
    "hands_on": [["train.py", "experiment=hands_on"]],
    "dying_relu": [["train.py", "-m", "experiment=dying_relu", "seed=0,1,2"]],
    "dying_relu_lr": [["train.py", "-m", "experiment=dying_relu_lr"]],
    "vanishing_gradients": [["train.py", "-m", "experiment=vanishing_gradients"]],
    "linear_collapse": [["train.py", "-m", "experiment=linear_collapse"]],
    "snn": [["train.py", "-m", "experiment=snn"]],
    "hands_on_keras": [["train.py", "experiment=hands_on_keras"]],
    "born_dead": [["scripts/born_dead.py", "--seeds", "200"]],
    "init_saturation": [["train.py", "-m", "experiment=init_saturation"]],
    "init_depth": [["train.py", "-m", "experiment=init_depth"]],
    "optimizers_mnist_grid": [
        ["train.py", "-m", "experiment=optimizers_mnist", "optimizer.lr=1e-4,1e-3,1e-2,1e-1,1", "trainer.max_epochs=1"]
    ],
    "optimizers_mnist": [["train.py", "-m", "experiment=optimizers_mnist"]],
    "optimizer_paths": [["scripts/optimizer_paths.py", "--out", "outputs/paths"]],
    "linear_path": [  # the two runs it reads, then the script
        ["train.py", "optimizer=sgd", "hydra.run.dir=outputs/line/sgd"],
        ["train.py", "optimizer=adam", "hydra.run.dir=outputs/line/adam"],
        ["scripts/linear_path.py", "outputs/line/sgd", "outputs/line/adam", "--out", "outputs/line/linear_path.png"],
    ],
}


def timed(commands: list[list[str]], keep: Path | None = None) -> tuple[float, int]:
    """Seconds the commands took, and the first failing one's exit status (0 if none failed); their output goes to
    ``keep``'s outputs/ (a new directory) or a temporary directory's."""
    with tempfile.TemporaryDirectory() as tmp:
        where = tmp
        if keep is not None:
            keep.mkdir(parents=True)  # a directory that exists holds earlier results: refused, not written into
            where = str(keep)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        for args in commands:
            proc = subprocess.run(
                [sys.executable, str(ROOT / args[0]), *args[1:]], cwd=where, env=env, capture_output=True, text=True
            )
            if proc.returncode:
                break
        return time.perf_counter() - start, proc.returncode


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def measured() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return f"{date.today().isoformat()}, {commit.stdout.strip() or 'unknown'}"


def earlier_rows(path: Path) -> dict[str, str]:
    """The rows of a table this script wrote, by preset: ``--only`` replaces its own and keeps the others."""
    if not path.is_file():
        return {}
    rows = [line for line in path.read_text().splitlines() if line.startswith("| `")]
    return {row.split("`")[1]: row for row in rows if row.split("`")[1] in PRESETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(PRESETS), help="these presets only")
    parser.add_argument("--markdown", type=Path, help="write the table there (with --only: those rows replaced)")
    parser.add_argument("--keep", type=Path, help="run each preset in <KEEP>/<preset> (new) and keep its outputs")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep}: exists; name a new directory (nothing already written is touched)")
    rows = earlier_rows(args.markdown) if args.markdown and args.only else {}
    for name in args.only or PRESETS:
        seconds, code = timed(PRESETS[name], args.keep / name if args.keep else None)
        command = " && ".join("python " + " ".join(args) for args in PRESETS[name])
        shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        status = "ok" if code == 0 else f"exit {code}"
        rows[name] = f"| `{name}` | `{command}` | {shown} | {status} | {measured()} |"
        print(rows[name], flush=True)
    table = "\n".join(
        [
            "# How long each preset takes",
            "",
            f"Made by `python scripts/preset_times.py --markdown docs/preset_times.md` on {machine()}: each",
            "command once, in a fresh process, wall time (start-up, every job of a sweep, its report);",
            "`--only <preset>` measures those again, each row saying when and at which commit.",
            "",
            "| preset | command | wall time | exit | measured |",
            "|---|---|---|---|---|",
            *(rows[name] for name in PRESETS if name in rows),
            "",
            "[Back to the README](../README.md)",
            "",
        ]
    )
    if args.markdown:
        args.markdown.write_text(table)
    else:
        print(table)


if __name__ == "__main__":
    main()
