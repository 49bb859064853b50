import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAST, compose_config, read_metrics, run_script
from experiments.activations import activation_factory
from experiments.classifier import load_classifier
from experiments.data import MNISTDataModule
from experiments.diagnostics import add_histogram, born_dead, unit_stats
from experiments.model import MLP

PROBE = torch.linspace(-2, 2, 41).unsqueeze(1)  # one input feature, both signs


def hand_built(act: str, biases: list[float], weights: list[float]) -> MLP:
    net = MLP(1, 2, [len(biases)], activation_factory({"_target_": act}))
    with torch.no_grad():
        net.hidden[0].linear.weight.copy_(torch.tensor(weights).unsqueeze(1))
        net.hidden[0].linear.bias.copy_(torch.tensor(biases))
    return net


# unit 0: z = -1 always (dead, inactive); unit 1: z = 1 (alive); unit 2: z = x (alive);
# unit 3: z = 0 always (inactive, and ReLU'(0) = 0 so dead); unit 4: z = x - 5 < 0 (dead, inactive)
BIASES, WEIGHTS = [-1.0, 1.0, 0.0, 0.0, -5.0], [0.0, 0.0, 1.0, 0.0, 1.0]


def test_relu_dead_and_inactive_counts_on_a_hand_built_layer():
    stats = unit_stats(hand_built("torch.nn.ReLU", BIASES, WEIGHTS), PROBE)
    assert stats["diag/dead_frac/layer1"] == pytest.approx(3 / 5)
    assert stats["diag/inactive_frac/layer1"] == pytest.approx(3 / 5)
    assert "diag/saturated_frac/layer1" not in stats  # ReLU does not saturate


@pytest.mark.parametrize("act", ["torch.nn.LeakyReLU", "experiments.activations.ALReLU", "torch.nn.ELU"])
def test_leaky_units_are_never_dead_but_can_be_inactive(act):
    stats = unit_stats(hand_built(act, BIASES, WEIGHTS), PROBE)
    assert stats["diag/dead_frac/layer1"] == 0.0
    assert stats["diag/inactive_frac/layer1"] == pytest.approx(3 / 5)


def test_sigmoid_saturation():
    # unit 0: z = 10 (saturated), unit 1: z = -10 (saturated), unit 2: z = x (not)
    stats = unit_stats(hand_built("torch.nn.Sigmoid", [10.0, -10.0, 0.0], [0.0, 0.0, 1.0]), PROBE)
    assert stats["diag/saturated_frac/layer1"] == pytest.approx(2 / 3)
    assert stats["diag/dead_frac/layer1"] == 0.0  # sigma' is tiny, not exactly 0


def test_born_dead_means_one_layer_entirely_dead():
    assert born_dead(hand_built("torch.nn.ReLU", [-1.0, -2.0], [0.0, 1.0]), PROBE)
    assert not born_dead(hand_built("torch.nn.ReLU", BIASES, WEIGHTS), PROBE)


def test_totals_weight_layers_by_units():
    net = MLP(1, 2, [5, 3], activation_factory({"_target_": "torch.nn.ReLU"}))
    with torch.no_grad():
        net.hidden[0].linear.weight.copy_(torch.tensor(WEIGHTS).unsqueeze(1))
        net.hidden[0].linear.bias.copy_(torch.tensor(BIASES))
        net.hidden[1].linear.weight.zero_()
        net.hidden[1].linear.bias.fill_(1.0)
    stats = unit_stats(net, PROBE)
    assert stats["diag/dead_frac/total"] == pytest.approx(3 / 8)


@pytest.mark.parametrize("name, sweep", [("hands_on", None), ("dying_relu", "relu,leaky_relu,alrelu,elu"),
                                         ("vanishing_gradients", "sigmoid,relu"), ("linear_collapse", "identity,relu")])
def test_presets_compose(name, sweep):
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.get("activation") == sweep if sweep else True
    assert compose_config([f"experiment={name}", "activation=tanh"]).activation._target_ == "torch.nn.Tanh"


@pytest.mark.slow
def test_a_run_logs_diagnostics_to_tensorboard_and_metrics(tmp_path):
    proc = run_script([*FAST, "experiment=dying_relu", "trainer.log_every_n_steps=5", "diagnostics.dead_units.probe_size=500"],
                      tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = next(tmp_path.glob("outputs/runs/*/*"))
    metrics = read_metrics(run_dir)
    # the final fractions are those of the final weights on the probe (the first 500 validation images)
    module = load_classifier(run_dir / "checkpoints" / "last.ckpt")
    data = MNISTDataModule()
    data.prepare_data()
    expected = unit_stats(module.net, data.images("val", 500))
    for key in ("diag/dead_frac/layer1", "diag/dead_frac/layer3", "diag/dead_frac/total", "diag/inactive_frac/layer2"):
        assert metrics[key] == pytest.approx(expected[key]), key
    assert metrics["diag/dead_frac/total"] > 0  # lr 0.05 kills ReLUs within 20 steps
    assert 0 < metrics["diag/grad_norm/output"] and 0 <= metrics["diag/grad_norm/layer1"]
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert {"diag/dead_frac/layer2", "diag/born_dead_frac/layer1", "grad_norm/layer3"} <= set(events.Tags()["scalars"])
    assert {"weights/layer1", "activations/layer3"} <= set(events.Tags()["histograms"])
    # at the logging interval's optimizer steps
    assert [e.step for e in events.Scalars("grad_norm/layer3")] == [0, 5, 10, 15]


def test_histograms_count_every_value_between_its_min_and_max(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    values = torch.cat([torch.zeros(500), torch.linspace(-2, 3, 1500)])
    writer = SummaryWriter(str(tmp_path))
    add_histogram(writer, "h", values, step=7, bins=10)
    writer.close()
    (event,) = EventAccumulator(str(tmp_path)).Reload().Histograms("h")
    h = event.histogram_value
    assert event.step == 7 and h.num == 2000 and (h.min, h.max) == (-2.0, 3.0)
    assert sum(h.bucket) == 2000 and len(h.bucket) == 10
    assert h.bucket[4] >= 500  # the zeros fall in the fifth of ten buckets over [-2, 3]
    assert h.sum == pytest.approx(float(values.sum()), abs=1e-3)


@pytest.mark.slow
def test_linear_collapse_preset_tests_the_single_layer(tmp_path):
    proc = run_script([*FAST, "experiment=linear_collapse", "trainer.limit_test_batches=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = read_metrics(next(tmp_path.glob("outputs/runs/*/*")))
    assert metrics["collapse/max_abs_diff"] < 1e-3
    assert metrics["collapse/test_acc"] == pytest.approx(metrics["test/acc"], abs=2e-4)
    assert metrics["collapse/parameters_single"] == 784 * 10 + 10


@pytest.mark.parametrize("activation", ["identity", "relu"])
def test_linear_collapse_check_in_process_tests_the_single_layer_only_without_non_linearity(tmp_path, activation):
    from experiments.training import run
    args = ["experiment=linear_collapse", f"activation={activation}", "trainer.limit_train_batches=5",
            "trainer.log_every_n_steps=5",
            "trainer.limit_val_batches=1", "trainer.max_epochs=1", "callbacks.progress_bar=null",
            "diagnostics.histograms=null"]
    result = run(compose_config(args, output_dir=str(tmp_path)), tmp_path, {"activation": activation}, args)
    if activation == "relu":  # nothing to collapse: no collapse/* keys
        assert not any(k.startswith("collapse/") for k in result)
        return
    assert result["collapse/max_abs_diff"] < 1e-3 and result["collapse/parameters_single"] == 784 * 10 + 10
    assert result["collapse/test_acc"] == pytest.approx(result["test/acc"], abs=2e-4)  # all 10,000 test images


def test_monitor_histories_are_epoch_means_and_survive_a_checkpoint_round_trip():
    from experiments.diagnostics import DeadUnitMonitor, GradNormMonitor
    grads = GradNormMonitor(every_n_steps=1)
    grads.epoch_readings = {"diag/grad_norm/layer1": [1.0, 3.0]}
    grads.on_train_epoch_end(None, None)
    grads.epoch_readings = {"diag/grad_norm/layer1": [5.0]}
    assert grads.history == {"diag/grad_norm/layer1": [2.0]}  # the epoch's mean
    state = grads.state_dict()
    restored = GradNormMonitor(every_n_steps=1)
    restored.load_state_dict(state)
    assert restored.history == {"diag/grad_norm/layer1": [2.0]}
    assert restored.epoch_readings == {"diag/grad_norm/layer1": [5.0]}  # a mid-epoch resume keeps them
    restored.on_train_epoch_end(None, None)
    assert restored.history == {"diag/grad_norm/layer1": [2.0, 5.0]} and restored.epoch_readings == {}
    state["history"]["diag/grad_norm/layer1"].append(9.0)  # copies, not shared lists
    assert restored.history["diag/grad_norm/layer1"] == [2.0, 5.0]
    dead = DeadUnitMonitor()
    dead.history = {"diag/dead_frac/layer1": [0.1, 0.2]}
    again = DeadUnitMonitor()
    again.load_state_dict(dead.state_dict())
    assert again.history == {"diag/dead_frac/layer1": [0.1, 0.2]} and again.latest == {}
