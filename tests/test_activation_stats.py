"""``lit/activation_stats.py``: each hidden layer's activation mean and spread, read every few steps."""

from types import SimpleNamespace

import pytest
import torch
from test_diagnostics import ProbeData, RecordingLogger, fake_trainer

from experiments.lit.activation_stats import ActivationStatsMonitor, activation_stats
from experiments.nn.activations import activation_factory
from experiments.nn.model import MLP


def test_activation_stats_are_each_layers_mean_and_spread_in_evaluation_mode():
    torch.manual_seed(0)
    net = MLP(6, 3, [5, 4, 4], activation_factory({"_target_": "torch.nn.Sigmoid"}), dropout=0.5)
    x = torch.randn(50, 6)
    net.train()
    stats = activation_stats(net, x)
    assert net.training  # the caller's mode is given back
    expected, a = {}, x
    for i, layer in enumerate(net.hidden, 1):  # by hand: no dropout, every unit and input pooled
        a = torch.sigmoid(a @ layer.linear.weight.T + layer.linear.bias)
        expected[f"diag/act_mean/layer{i}"] = a.mean().item()
        expected[f"diag/act_std/layer{i}"] = a.std().item()
    assert stats == pytest.approx(expected, rel=1e-6)
    assert stats["diag/act_std/layer1"] != stats["diag/act_std/layer2"]  # each layer its own


def test_activation_stats_are_read_at_initialisation_and_every_n_steps_once_per_step():
    torch.manual_seed(0)
    net = MLP(6, 3, [5, 4], activation_factory({"_target_": "torch.nn.Tanh"}))
    images = torch.randn(40, 6)
    data = ProbeData(images, split="test")
    module = SimpleNamespace(net=net, device=torch.device("cpu"))
    monitor = ActivationStatsMonitor(every_n_steps=3, probe_size=30, split="test")
    logger = RecordingLogger()
    monitor.on_train_start(fake_trainer(0, loggers=[logger], data=data), module)
    # steps 3 and 6 twice each: two batches per optimizer step (accumulate_grad_batches=2) read once
    for step in (1, 2, 3, 3, 4, 5, 6, 6):
        monitor.on_train_batch_end(fake_trainer(step, loggers=[logger], data=data), module, None, None, 0)
    assert [step for _, step in logger.calls] == [0, 3, 6] and data.sizes == [30]  # the probe drawn once
    assert monitor.history["diag/act_step"] == [0, 3, 6]
    expected = activation_stats(net, images[:30])
    assert logger.calls[-1][0] == expected and monitor.latest == expected
    assert set(monitor.history) == {*expected, "diag/act_step"}
    assert all(monitor.history[k] == [v] * 3 for k, v in expected.items())
    resumed = ActivationStatsMonitor()
    resumed.load_state_dict(monitor.state_dict())
    resumed.on_train_start(fake_trainer(6, loggers=[logger], data=data), module)  # a resumed run: no second start
    assert resumed.history == monitor.history and resumed.latest == monitor.latest and len(logger.calls) == 3
    monitor.state_dict()["history"]["diag/act_step"].append(99)  # copies, not shared lists
    assert monitor.history["diag/act_step"] == [0, 3, 6]


def test_an_activation_probe_from_the_training_images_is_refused():
    with pytest.raises(ValueError, match=r"diagnostics.activation_stats.split='train': must be val or test"):
        ActivationStatsMonitor(split="train")
