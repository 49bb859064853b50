"""The framework-free reference: the course's MLP trained by a plain PyTorch loop.

Does the same work as ``python train.py`` with defaults (MD5-verified data, 5,000 validation images,
2 epochs with a validation pass each, a test pass) with nothing else: no Lightning, no Hydra, no
logging, no checkpoints. ``scripts/benchmark.py`` times it against the framework.

    python scripts/plain_mnist.py [--device cpu|cuda] [--epochs 2] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from experiments.data.idx import load, split


def build_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 5000) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum() for i in range(0, len(x), batch))
    model.train()
    return float(correct) / len(x)


def train(device: str, epochs: int, batch_size: int | str, seed: int = 42, optimizer: str = "adam") -> dict:
    """Returns per-epoch seconds (train + validation pass) and the final accuracies.

    ``optimizer``: ``adam`` (lr 0.003) or ``gd`` (plain gradient descent, lr 0.5, as ``optimizer=gd``).
    """
    torch.manual_seed(seed)
    t = {k: v.to(device) for k, v in split(load(), val_size=5000, split_seed=0).items()}
    bs = len(t["train_x"]) if batch_size == "full" else batch_size
    model = build_mlp().to(device)
    if optimizer == "gd":
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=0.003)
    loss_fn = nn.CrossEntropyLoss()
    n = len(t["train_x"])
    epoch_seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).to(device)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            loss = loss_fn(model(t["train_x"][idx]), t["train_y"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_acc = evaluate(model, t["val_x"], t["val_y"])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - start)
    return {"epoch_seconds": epoch_seconds, "val_acc": val_acc, "test_acc": evaluate(model, t["test_x"], t["test_y"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", default="256")
    parser.add_argument("--optimizer", choices=["adam", "gd"], default="adam")
    args = parser.parse_args()
    batch = "full" if args.batch_size == "full" else int(args.batch_size)
    result = train(args.device, args.epochs, batch, optimizer=args.optimizer)
    print(
        f"test/acc={result['test_acc']:.4f} val/acc={result['val_acc']:.4f} "
        f"epoch_seconds={[round(s, 3) for s in result['epoch_seconds']]}"
    )


if __name__ == "__main__":
    main()
