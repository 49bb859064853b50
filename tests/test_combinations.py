"""Every activation x loss x optimizer composes from its config groups and trains (a few steps, tiny slice)."""

import functools
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, compose_config
from experiments.data.datamodule import MNISTDataModule
from experiments.data.idx import load
from experiments.nn.optimizers import build_optimizer
from experiments.run.recipe import build_module

ACTIVATIONS = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "alrelu",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "mish",
    "relu6",
    "softplus",
    "softsign",
]
LOSSES = ["cross_entropy", "nll", "mse", "bce"]
OPTIMIZERS = ["gd", "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad", "adadelta"]


@functools.cache
def group(name: str, option: str) -> dict:
    """One group option's YAML as a plain dict (a ``# @package _global_`` file: its ``name`` key). Read
    directly, not composed: 28 compositions took 7 s; that every option composes is
    ``test_rules.py``'s test, this one is that every combination trains."""
    text = (Path(CONF) / name / f"{option}.yaml").read_text()
    cfg = OmegaConf.create(text)
    return OmegaConf.to_container(cfg[name] if "# @package _global_" in text else cfg)


@pytest.fixture(scope="module")
def base():
    """The composed config the combinations start from (each test sets all three groups on it)."""
    return compose_config(["model.hidden_sizes=[16,16]"])


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = load()
    return data["train_x"][:128], data["train_y"][:128]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_combination_trains(activation, batch, base):
    x, y = batch
    dm = MNISTDataModule()
    cfg = base
    for loss in LOSSES:
        torch.manual_seed(0)
        cfg.activation, cfg.loss = group("activation", activation), group("loss", loss)
        module = build_module(cfg, dm)  # one module per activation and loss, back to its start for each optimizer
        start = {k: v.clone() for k, v in module.state_dict().items()}
        for opt in OPTIMIZERS:
            module.load_state_dict(start)
            optimizer = build_optimizer(group("optimizer", opt), module.parameters())
            for _ in range(3):
                optimizer.zero_grad()
                value = module.loss_fn(module(x), y)
                value.backward()
                optimizer.step()
            assert torch.isfinite(value), (activation, loss, opt)
            changed = sum(not torch.equal(start[k], p) for k, p in module.named_parameters())
            assert changed == len(list(module.parameters())), (activation, loss, opt)
