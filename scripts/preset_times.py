"""How long each preset's full command takes here, as the README's presets table says it: each command run once in a
fresh process from a temporary directory, wall time by the clock around it. Writes a markdown table (the machine,
the date and the commit in its header) for docs/preset_times.md.

    python scripts/preset_times.py --markdown docs/preset_times.md
    python scripts/preset_times.py --only hands_on linear_collapse     # some of them
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
    "linear_path": [  # the two runs it reads, then the script
        ["train.py", "optimizer=sgd", "hydra.run.dir=outputs/line/sgd"],
        ["train.py", "optimizer=adam", "hydra.run.dir=outputs/line/adam"],
        ["scripts/linear_path.py", "outputs/line/sgd", "outputs/line/adam", "--out", "outputs/line/linear_path.png"],
    ],
}


def timed(commands: list[list[str]]) -> tuple[float, int]:
    """Seconds the commands took, and the first failing one's exit status (0 if none failed); their output goes to
    a temporary directory's outputs/."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        for args in commands:
            proc = subprocess.run(
                [sys.executable, str(ROOT / args[0]), *args[1:]], cwd=tmp, env=env, capture_output=True, text=True
            )
            if proc.returncode:
                break
        return time.perf_counter() - start, proc.returncode


def machine() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{date.today().isoformat()}, commit {commit.stdout.strip() or 'unknown'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(PRESETS), help="these presets only")
    parser.add_argument("--markdown", type=Path, help="write the table there")
    args = parser.parse_args()
    rows = []
    for name in args.only or PRESETS:
        seconds, code = timed(PRESETS[name])
        command = " && ".join("python " + " ".join(args) for args in PRESETS[name])
        shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        rows.append(f"| `{name}` | `{command}` | {shown} | {'ok' if code == 0 else f'exit {code}'} |")
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            "# How long each preset takes",
            "",
            f"Made by `python scripts/preset_times.py --markdown docs/preset_times.md` on {machine()}: each",
            "command once, in a fresh process, wall time (start-up, every job of a sweep, its report).",
            "",
            "| preset | command | wall time | exit |",
            "|---|---|---|---|",
            *rows,
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
