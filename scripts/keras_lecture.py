"""The lecture's Keras exercise, run by Keras 3 on PyTorch (no TensorFlow), on this project's MNIST files.

The lecture builds ``Sequential`` of Dense 64 relu x 3 and Dense 10 softmax, compiles it with Adam 0.003
and ``sparse_categorical_crossentropy``, and fits one epoch at batch 64 on pixels in [0, 1]. This is
that program, so its test accuracy can be put beside ``python train.py experiment=hands_on_keras``,
the same settings in this framework (tests/test_keras_lecture.py compares the two over three seeds).

    pip install -e ".[keras]"
    python scripts/keras_lecture.py --seeds 0 1 2      # prints one JSON line per seed

It trains on the framework's 55,000-image training split (``--val-size 5000``, the same images the
framework trains on) unless ``--val-size 0`` asks for all 60,000, as the lecture does; it tests on the
official 10,000 test images.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: this program is the PyTorch-backend one

import keras

from experiments.data.idx import load, split


def train(seed: int, val_size: int = 5000, epochs: int = 1) -> dict[str, float]:
    keras.utils.set_random_seed(seed)
    data = load(raw=True)
    if val_size:
        data = split(data, val_size, split_seed=0)
    x_train, x_test = (data[k].numpy().astype("float32") / 255 for k in ("train_x", "test_x"))
    y_train, y_test = data["train_y"].numpy(), data["test_y"].numpy()
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
    seconds = time.perf_counter() - start
    loss, acc = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    return {
        "seed": seed,
        "test/acc": float(acc),
        "test/loss": float(loss),
        "train_seconds": round(seconds, 2),
        "train_images": len(x_train),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--val-size",
        type=int,
        default=5000,
        help="images held out of training as the framework does (0: train on all 60,000)",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    args = parser.parse_args()
    if not 0 <= args.val_size < 60_000:
        parser.error("--val-size must be in [0, 60000)")
    if args.epochs < 1 or any(s < 0 for s in args.seeds):
        parser.error("--epochs must be >= 1 and --seeds >= 0")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    for seed in args.seeds:
        print(json.dumps(train(seed, args.val_size, args.epochs)), flush=True)


if __name__ == "__main__":
    main()
