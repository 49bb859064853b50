"""Born dead: how often is a randomly initialised narrow, deep ReLU network dead before training?

A network is born dead when some hidden layer has every unit dead on the probe images: its output is
then the same for every input and no gradient reaches the layers below. For each width x depth the
script initialises ``--seeds`` networks (weights by ``--init``; biases PyTorch's default
U(+-1/sqrt(fan_in)) or the constant ``--bias-init``, 0 being the usual setting of the analysis) and counts
the dead ones. The table states both settings.

    python scripts/born_dead.py --widths 2 3 4 8 16 --depths 2 5 10 20 50 --seeds 200
    python scripts/born_dead.py --init kaiming_normal --bias-init 0

Writes ``outputs/born_dead/<time>_<microseconds>-<pid>/born_dead.csv`` and ``born_dead.md``: a new
directory per run, made once the table is computed, never an existing one.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from pathlib import Path

import torch

from experiments.data.idx import describe, load
from experiments.errors import RunDirectoryError
from experiments.nn.activations import activation_factory
from experiments.nn.model import INITS, MLP
from experiments.run_dir import check_writable

MAX_WIDTH = 4096


def probability(
    width: int, depth: int, seeds: int, probe: torch.Tensor, init: str, bias_init: float | None = None
) -> float:
    from experiments.lit.diagnostics import born_dead  # with Lightning: seconds to import, so not for --help

    dead = 0
    for seed in range(seeds):
        torch.manual_seed(seed)
        net = MLP(
            probe.shape[1],
            10,
            [width] * depth,
            activation_factory({"_target_": "torch.nn.ReLU"}),
            init=init,
            bias_init=bias_init,
        )
        dead += born_dead(net, probe)
    return dead / seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[2, 3, 4, 8, 16])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--probe", type=int, default=1000, help="probe: the first N training images")
    parser.add_argument("--init", default="default", choices=INITS)
    parser.add_argument(
        "--bias-init",
        type=float,
        default=None,
        help="every bias set to this constant (default: PyTorch's U(+-1/sqrt(fan_in)))",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/born_dead"),
        help="parent of the run's directory <time>_<microseconds>-<pid> (default: outputs/born_dead)",
    )
    args = parser.parse_args()
    for name in ("widths", "depths", "seeds", "probe"):
        values = getattr(args, name)
        if any(v < 1 for v in (values if isinstance(values, list) else [values])):
            parser.error(f"--{name} must be >= 1")
    if max(args.widths) > MAX_WIDTH:  # a width x width layer of floats: 64 MB at 4096, 40 GB at 100000
        parser.error(f"--widths must be at most {MAX_WIDTH}: this is a study of narrow networks")
    if args.probe > (rows := describe(None).train_size):  # type: ignore[union-attr]
        parser.error(f"--probe must be at most {rows}: there are {rows} training images")
    if args.bias_init is not None and not math.isfinite(args.bias_init):
        parser.error("--bias-init must be a finite number")
    try:  # before the table is computed, not after
        check_writable(args.out, "--out")
    except RunDirectoryError as exc:
        parser.error(str(exc))

    probe = load()["train_x"][: args.probe]
    rows = [
        (w, d, probability(w, d, args.seeds, probe, args.init, args.bias_init))
        for w in args.widths
        for d in args.depths
    ]
    bias = "U(+-1/sqrt(fan_in)) (PyTorch's default)" if args.bias_init is None else f"{args.bias_init:g}"
    out = args.out / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{time.time_ns() // 1000 % 1_000_000:06d}-{os.getpid()}"
    out.mkdir(parents=True, exist_ok=False)
    with open(out / "born_dead.csv", "w", newline="") as f:
        csv.writer(f).writerows(
            [("width", "depth", "p_born_dead", "init", "bias_init"), *[(*row, args.init, bias) for row in rows]]
        )
    header = "| width \\ depth | " + " | ".join(map(str, args.depths)) + " |"
    lines = [header, "|" + "---|" * (len(args.depths) + 1)]
    for w in args.widths:
        lines.append(f"| {w} | " + " | ".join(f"{p:.2f}" for ww, _, p in rows if ww == w) + " |")
    table = "\n".join(lines)
    title = f"P(born dead), ReLU, init={args.init}, biases {bias}, {args.seeds} seeds each"
    (out / "born_dead.md").write_text(f"{title}\n\n{table}\n")
    print(f"{title}\n{table}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
