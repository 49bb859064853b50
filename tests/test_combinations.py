"""Every activation x loss x optimizer composes from its config groups and trains (a few steps, tiny slice)."""

import functools
import itertools

import pytest
import torch

from conftest import compose_config
from experiments.data import MNISTDataModule
from experiments.mnist import load_mnist
from experiments.optimizers import build_optimizer
from experiments.training import build_module

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "alrelu", "prelu", "rrelu", "elu", "selu",
               "gelu", "swish", "silu", "mish", "relu6", "softplus"]
LOSSES = ["cross_entropy", "nll", "mse", "bce"]
OPTIMIZERS = ["gd", "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"]


@functools.cache
def group(name: str, option: str):
    """One group's composed config; combined below so 512 combinations need only 28 compositions."""
    return compose_config([f"{name}={option}"])[name]


@pytest.fixture(scope="module")
def base():
    """The composed config the combinations start from (each test sets all three groups on it)."""
    return compose_config(["model.hidden_sizes=[16,16]"])


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_mnist()
    return data["train_x"][:128], data["train_y"][:128]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_combination_trains(activation, batch, base):
    x, y = batch
    dm = MNISTDataModule()
    cfg = base
    for loss, opt in itertools.product(LOSSES, OPTIMIZERS):
        torch.manual_seed(0)
        cfg.activation, cfg.loss, cfg.optimizer = group("activation", activation), group("loss", loss), group(
            "optimizer", opt)
        module = build_module(cfg, dm)
        optimizer = build_optimizer(module.hparams.optimizer, module.parameters())
        before = [p.detach().clone() for p in module.parameters()]
        for _ in range(3):
            optimizer.zero_grad()
            value = module.loss_fn(module(x), y)
            value.backward()
            optimizer.step()
        assert torch.isfinite(value), (activation, loss, opt)
        changed = sum(not torch.equal(b, p) for b, p in zip(before, module.parameters()))
        assert changed == len(before), (activation, loss, opt)
