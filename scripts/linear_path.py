"""The loss along the straight line from a run's initial weights to its final ones (Goodfellow, Vinyals & Saxe 2015).

theta(alpha) = (1 - alpha) theta_0 + alpha theta_T, for alpha from -0.5 to 1.5: theta_T is the run's last checkpoint
(read as eval.py reads one), theta_0 its initial weights, rebuilt exactly as the run built them (its seed, then its
model from the checkpoint's settings). For MNIST MLPs trained with SGD they found the loss falling monotonically
along the line, with no barrier; Lucas et al. (2021) find that Adam's runs, whose weights travel further, can
break that. The training loss is measured on the first ``--train-images`` training images, the validation loss
on the whole validation split, both with the run's own loss function and input scaling.

    python train.py optimizer=sgd hydra.run.dir=outputs/line/sgd
    python train.py optimizer=adam hydra.run.dir=outputs/line/adam
    python scripts/linear_path.py outputs/line/sgd outputs/line/adam --out outputs/line/linear_path.png

Writes the picture (one panel per run) and, beside it, the numbers (``.json``); never over an existing file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import yaml

from experiments.errors import ExperimentError, RunDirectoryError
from experiments.lit.classifier import Classifier
from experiments.read_back import damaged, read_yaml

ALPHAS = [round(-0.5 + 0.05 * i, 2) for i in range(41)]  # -0.5 ... 1.5


def run_seed(run_dir: Path) -> int:
    """The seed the run trained with, from its composed config (a file read back: only an integer is taken)."""
    source = run_dir / ".hydra" / "config.yaml"
    if not source.is_file():
        raise RunDirectoryError(f"{run_dir} has no .hydra/config.yaml: name the directory of a run of train.py")
    try:
        cfg = read_yaml(source)
    except (OSError, yaml.YAMLError):
        raise damaged(source, "the file", "cannot be read as YAML") from None
    seed = cfg.get("seed") if isinstance(cfg, dict) else None
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise damaged(source, "seed", f"is {seed!r}, not a seed a run takes")
    return seed


def initial_and_final(run_dir: Path) -> tuple[Classifier, Classifier, L.LightningDataModule]:
    """The run's network at its start and at its end, and its data, scaled as in its training."""
    from hydra import compose, initialize_config_dir

    from experiments.names import CONF_DIR
    from experiments.run.checkpoints import model_and_data
    from experiments.run.resolvers import register_resolvers

    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise RunDirectoryError(f"{run_dir} has no checkpoints/last.ckpt: name a run that finished its training")
    seed = run_seed(run_dir)
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        data = compose("config").data
    final, datamodule = model_and_data(last, data)
    L.seed_everything(seed, workers=True, verbose=False)  # as the run seeded itself, then built its network
    initial = Classifier(**final.hparams)
    datamodule.prepare_data()
    return initial.eval(), final.eval(), datamodule


@torch.no_grad()
def loss_along(initial: Classifier, final: Classifier, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The loss on ``(x, y)`` at each of ``ALPHAS``, every weight and buffer of floating point interpolated."""
    start, end = initial.state_dict(), final.state_dict()
    probe = Classifier(**final.hparams).eval()
    losses = []
    for alpha in ALPHAS:
        probe.load_state_dict(
            {k: torch.lerp(start[k], v, alpha) if v.is_floating_point() else v for k, v in end.items()}
        )
        losses.append(float(probe.loss_fn(probe(x), y)))
    return losses


def measure(run_dir: Path, train_images: int) -> dict[str, object]:
    initial, final, data = initial_and_final(run_dir)
    train_y, val_y = data.tensors["train_y"][:train_images], data.tensors["val_y"]
    optimizer = final.hparams.optimizer
    train_loss = loss_along(initial, final, data.images("train", train_images), train_y)
    start_to_end = train_loss[ALPHAS.index(0.0) : ALPHAS.index(1.0) + 1]
    return {
        "optimizer": f"{optimizer['_target_'].rpartition('.')[2]} lr={optimizer.get('lr')}",
        "alpha": ALPHAS,
        "train_loss": train_loss,
        "val_loss": loss_along(initial, final, data.images("val"), val_y),
        # the paper's finding: the training loss never rises on the way from the start to the end
        "monotone": all(later <= earlier for earlier, later in zip(start_to_end, start_to_end[1:])),
    }


def draw(found: dict[str, dict], out: Path) -> None:
    fig, axes = plt.subplots(1, len(found), figsize=(5 * len(found), 3.8), squeeze=False, sharey=True)
    for ax, (name, curves) in zip(axes[0], found.items()):
        ax.plot(curves["alpha"], curves["train_loss"], color="tab:blue", label="training loss")
        ax.plot(curves["alpha"], curves["val_loss"], color="tab:orange", linestyle="--", label="validation loss")
        for alpha, what in ((0, "start"), (1, "end")):
            ax.axvline(alpha, color="grey", linewidth=0.7)
            ax.annotate(
                what,
                (alpha, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
            )
        ax.set_xlabel("α: θ = (1 − α)·θ₀ + α·θ_T")
        shape = "falls all the way" if curves["monotone"] else "rises on the way: a barrier"
        ax.set_title(f"{name}: {curves['optimizer']}\ntraining loss from start to end {shape}", fontsize=9)
        ax.grid(alpha=0.25)
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", type=Path, nargs="+", help="run directories of train.py (each with checkpoints/last.ckpt)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("linear_path.png"), help="the picture (default linear_path.png)"
    )
    parser.add_argument("--train-images", type=int, default=10_000, help="training images measured (default 10000)")
    args = parser.parse_args(argv)
    if args.train_images < 1:
        parser.error("--train-images must be at least 1")
    numbers = args.out.with_suffix(".json")
    for file in (args.out, numbers):
        if file.exists():
            parser.error(f"{file} exists: name another --out (nothing is written over)")
    try:
        found = {str(run): measure(run, args.train_images) for run in args.runs}
    except ExperimentError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(found, args.out)
    numbers.write_text(json.dumps(found, indent=1))
    print(args.out)
    print(numbers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
