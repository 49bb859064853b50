import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import FAST, compose_config, read_metrics, run_script
from experiments.data.datamodule import MNISTDataModule
from experiments.lit.diagnostics import add_histogram, born_dead, unit_stats
from experiments.nn.activations import activation_factory
from experiments.nn.model import MLP
from experiments.run.checkpoints import load_classifier

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


@pytest.mark.parametrize("act", ["torch.nn.LeakyReLU", "experiments.nn.activations.ALReLU", "torch.nn.ELU"])
def test_leaky_units_are_never_dead_but_can_be_inactive(act):
    stats = unit_stats(hand_built(act, BIASES, WEIGHTS), PROBE)
    assert stats["diag/dead_frac/layer1"] == 0.0
    assert stats["diag/inactive_frac/layer1"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("act", ["torch.nn.ReLU", "torch.nn.LeakyReLU", "torch.nn.ELU"])
def test_an_in_place_activation_is_measured_as_its_out_of_place_twin(act):
    # +activation.inplace=true: the activation may not overwrite the pre-activations it is differentiated at
    stats = unit_stats(hand_built(act, BIASES, WEIGHTS), PROBE)
    net = MLP(1, 2, [len(BIASES)], activation_factory({"_target_": act, "inplace": True}))
    net.load_state_dict(hand_built(act, BIASES, WEIGHTS).state_dict())
    assert unit_stats(net, PROBE) == stats


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


@pytest.mark.parametrize(
    "name, sweep",
    [
        ("hands_on", None),
        ("dying_relu", "relu,leaky_relu,alrelu,elu"),
        ("vanishing_gradients", "sigmoid,relu"),
        ("linear_collapse", "identity,relu"),
    ],
)
def test_presets_compose(name, sweep):
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params.get("activation") == sweep if sweep else True
    assert compose_config([f"experiment={name}", "activation=tanh"]).activation._target_ == "torch.nn.Tanh"


@pytest.mark.slow
def test_a_run_logs_diagnostics_to_tensorboard_and_metrics(dying_relu_sweep):
    sweep, _ = dying_relu_sweep  # experiment=dying_relu, logged every 5 steps, the probe 500 images
    (run_dir,) = sweep.glob("*activation=relu,*")
    metrics = read_metrics(run_dir)
    # the final fractions are those of the final weights on the probe (the first 500 validation images)
    module = load_classifier(run_dir / "checkpoints" / "last.ckpt")
    data = MNISTDataModule()
    data.prepare_data()
    expected = unit_stats(module.net, data.images("val", 500))
    for key in ("diag/dead_frac/layer1", "diag/dead_frac/layer3", "diag/dead_frac/total", "diag/inactive_frac/layer2"):
        assert metrics[key] == pytest.approx(expected[key]), key
    assert metrics["diag/dead_frac/total"] > 0  # lr 0.05 kills ReLUs within 60 steps
    assert metrics["diag/grad_norm/output"] > 0 and metrics["diag/grad_norm/layer1"] >= 0
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert {"diag/dead_frac/layer2", "diag/born_dead_frac/layer1", "grad_norm/layer3"} <= set(events.Tags()["scalars"])
    assert {"weights/layer1", "activations/layer3"} <= set(events.Tags()["histograms"])
    # at the logging interval's optimizer steps
    assert [e.step for e in events.Scalars("grad_norm/layer3")] == list(range(0, metrics["global_step"], 5))
    # the activation readings: in TensorBoard at the steps the record lists, the last one as the final value
    steps = metrics["history"]["diag/act_step"]
    assert steps == list(range(0, metrics["global_step"] + 1, 5))
    assert [e.step for e in events.Scalars("diag/act_std/layer2")] == steps
    assert [e.value for e in events.Scalars("diag/act_mean/layer3")] == pytest.approx(
        metrics["history"]["diag/act_mean/layer3"]
    )
    assert metrics["diag/act_std/layer1"] == metrics["history"]["diag/act_std/layer1"][-1]


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
    assert h.sum_squares == pytest.approx(float(values.square().sum()), rel=1e-5)


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
    from experiments.run.recipe import run

    args = [
        "experiment=linear_collapse",
        f"activation={activation}",
        "trainer.limit_train_batches=5",
        "trainer.log_every_n_steps=5",
        "trainer.limit_val_batches=1",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        "diagnostics.histograms=null",
    ]
    result = run(compose_config(args, output_dir=str(tmp_path)), tmp_path, {"activation": activation}, args)
    if activation == "relu":  # nothing to collapse: no collapse/* keys
        assert not any(k.startswith("collapse/") for k in result)
        return
    assert result["collapse/max_abs_diff"] < 1e-3 and result["collapse/parameters_single"] == 784 * 10 + 10
    assert result["collapse/test_acc"] == pytest.approx(result["test/acc"], abs=2e-4)  # all 10,000 test images


def test_monitor_histories_are_epoch_means_and_survive_a_checkpoint_round_trip():
    from experiments.lit.diagnostics import DeadUnitMonitor, GradNormMonitor

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


class RecordingLogger:
    """What a Lightning logger receives from the monitors' ``log_metrics`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, int]] = []

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.calls.append((dict(metrics), step))


class ProbeData:
    """A datamodule's ``images`` as the monitors call it; remembers the sizes asked for."""

    def __init__(self, images: torch.Tensor, split: str = "val") -> None:
        self.images_, self.sizes, self.split = images, [], split

    def images(self, split: str, size: int | None = None) -> torch.Tensor:
        assert split == self.split  # the validation images, unless a monitor is told to watch the test set
        self.sizes.append(size)
        return self.images_[:size]


def fake_trainer(step: int = 0, epoch: int = 0, loggers=None, data=None):
    from types import SimpleNamespace

    return SimpleNamespace(
        global_step=step, current_epoch=epoch, loggers=loggers or [RecordingLogger()], datamodule=data
    )


def test_gradient_norms_are_each_layers_weight_gradient_norm_at_the_interval():
    from types import SimpleNamespace

    from experiments.lit.diagnostics import GradNormMonitor

    torch.manual_seed(0)
    net = MLP(6, 3, [5, 4, 4], activation_factory({"_target_": "torch.nn.Tanh"}))
    net(torch.randn(8, 6)).square().sum().backward()
    module = SimpleNamespace(net=net)
    monitor = GradNormMonitor(every_n_steps=4)
    logger = RecordingLogger()
    for step in (0, 3, 4, 6):
        monitor.on_before_optimizer_step(fake_trainer(step, loggers=[logger]), module, None)
    assert [step for _, step in logger.calls] == [0, 4]  # at multiples of the interval, at that step
    weights = [h.linear.weight for h in net.hidden] + [net.output.weight]
    expected = {f"grad_norm/layer{i}": w.grad.norm().item() for i, w in enumerate(weights[:-1], 1)}
    expected["grad_norm/output"] = weights[-1].grad.norm().item()
    every_grad = torch.cat([p.grad.flatten() for p in net.parameters()])  # biases too
    expected["grad_norm/total"] = every_grad.norm().item()
    assert logger.calls[0][0] == pytest.approx(expected, rel=1e-5)
    assert monitor.latest == pytest.approx({f"diag/{k}": v for k, v in expected.items()}, rel=1e-5)
    assert monitor.epoch_readings["diag/grad_norm/layer3"] == pytest.approx([expected["grad_norm/layer3"]] * 2)


def test_born_dead_fractions_are_measured_once_before_the_first_step_on_the_probe():
    from types import SimpleNamespace

    from experiments.lit.diagnostics import DeadUnitMonitor

    net = hand_built("torch.nn.ReLU", BIASES, WEIGHTS)
    data = ProbeData(torch.cat([PROBE, torch.full((10, 1), 99.0)]))  # images past the probe size would revive unit 4
    monitor = DeadUnitMonitor(probe_size=41, saturation_threshold=0.3)
    logger = RecordingLogger()
    module = SimpleNamespace(net=net, device=torch.device("cpu"))
    monitor.on_train_start(fake_trainer(7, loggers=[logger], data=data), module)  # a resumed run: not at birth
    assert logger.calls == [] and monitor.latest == {}
    monitor.on_train_start(fake_trainer(0, loggers=[logger], data=data), module)
    assert data.sizes == [41]
    ((logged, step),) = logger.calls
    assert step == 0 and logged == pytest.approx(
        {
            "diag/born_dead_frac/layer1": 0.6,
            "diag/born_inactive_frac/layer1": 0.6,
            "diag/born_dead_frac/total": 0.6,
            "diag/born_inactive_frac/total": 0.6,
        }
    )
    # into metrics.json: every total and every layer's dead fraction
    assert sorted(monitor.latest) == [
        "diag/born_dead_frac/layer1",
        "diag/born_dead_frac/total",
        "diag/born_inactive_frac/total",
    ]
    net2 = hand_built("torch.nn.Sigmoid", [0.0, 3.0], [0.0, 0.0])  # derivative 0.25 (z = 0) and 0.045 (z = 3)
    monitor = DeadUnitMonitor(probe_size=41, saturation_threshold=0.25)
    monitor.on_train_start(fake_trainer(0, data=ProbeData(PROBE)), SimpleNamespace(net=net2, device="cpu"))
    # saturated means |f'(z)| strictly below the configured threshold: the unit at exactly 0.25 is not
    assert monitor.latest == {
        "diag/born_dead_frac/layer1": 0.0,
        "diag/born_dead_frac/total": 0.0,
        "diag/born_inactive_frac/total": 0.5,
        "diag/born_saturated_frac/total": 0.5,
    }
    monitor.on_train_epoch_end(fake_trainer(5, data=ProbeData(PROBE)), SimpleNamespace(net=net2, device="cpu"))
    monitor.on_train_epoch_end(fake_trainer(9, data=ProbeData(PROBE)), SimpleNamespace(net=net2, device="cpu"))
    assert monitor.history["diag/saturated_frac/total"] == [0.5, 0.5] and monitor.history["diag/dead_frac/layer1"] == [
        0,
        0,
    ]


def test_histograms_are_written_every_n_epochs_at_the_step_with_the_configured_bins(tmp_path):
    from types import SimpleNamespace

    from lightning.pytorch.loggers import TensorBoardLogger

    from experiments.lit.diagnostics import HistogramMonitor

    net = MLP(1, 2, [3, 3], activation_factory({"_target_": "torch.nn.ReLU"}))
    data = ProbeData(PROBE)
    module = SimpleNamespace(net=net, device=torch.device("cpu"))
    HistogramMonitor(every_n_epochs=1).on_train_epoch_end(fake_trainer(0, data=data), module)  # no TensorBoard
    assert data.sizes == []
    logger = TensorBoardLogger(str(tmp_path), name="", version="")
    monitor = HistogramMonitor(every_n_epochs=2, probe_size=30, bins=5)
    for epoch, step in ((0, 10), (1, 20), (2, 30)):
        monitor.on_train_epoch_end(fake_trainer(step, epoch, loggers=[logger], data=data), module)
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0}).Reload()  # 0: keep every event
    assert sorted(events.Tags()["histograms"]) == [
        "activations/layer1",
        "activations/layer2",
        "weights/layer1",
        "weights/layer2",
        "weights/output",
    ]
    hist = events.Histograms("activations/layer1")
    assert [e.step for e in hist] == [10, 30] and data.sizes == [30]  # the probe is drawn once
    assert hist[0].histogram_value.num == 30 * 3 and len(hist[0].histogram_value.bucket) == 5


def test_the_monitors_defaults_are_the_diagnostics_configs():
    from omegaconf import OmegaConf

    from conftest import CONF
    from experiments.lit.activation_stats import ActivationStatsMonitor
    from experiments.lit.diagnostics import DeadUnitMonitor, GradNormMonitor, HistogramMonitor

    cfg = OmegaConf.load(f"{CONF}/diagnostics/default.yaml")
    dead, hist = DeadUnitMonitor(), HistogramMonitor()
    assert (dead.probe_size, dead.saturation_threshold) == (
        cfg.dead_units.probe_size,
        cfg.dead_units.saturation_threshold,
    )
    assert (hist.every_n_epochs, hist.probe_size, hist.bins) == (
        cfg.histograms.every_n_epochs,
        cfg.histograms.probe_size,
        cfg.histograms.bins,
    )
    trainer_cfg = OmegaConf.load(f"{CONF}/trainer/default.yaml")
    assert GradNormMonitor().every_n_steps == trainer_cfg.log_every_n_steps and GradNormMonitor().latest == {}
    stats = ActivationStatsMonitor()
    assert (stats.every_n_steps, stats.probe_size, stats.split) == (
        trainer_cfg.log_every_n_steps,
        cfg.activation_stats.probe_size,
        cfg.activation_stats.split,
    )


def test_totals_count_each_kind_over_every_hidden_unit_and_saturation_only_for_saturating_layers():
    from torch import nn

    net = MLP(1, 2, [2, 2], activation_factory({"_target_": "torch.nn.Tanh"}))
    net.hidden[1].activation = nn.ReLU()  # a tanh layer, then a ReLU layer
    with torch.no_grad():
        # tanh layer: a saturated unit (z = 4: tanh' = 1.3e-3) and z = x; ReLU layer: z = -1 (dead) and z = tanh(x)
        net.hidden[0].linear.weight.copy_(torch.tensor([[0.0], [1.0]]))
        net.hidden[0].linear.bias.copy_(torch.tensor([4.0, 0.0]))
        net.hidden[1].linear.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
        net.hidden[1].linear.bias.copy_(torch.tensor([-1.0, 0.0]))
    stats = unit_stats(net, PROBE)
    assert stats == pytest.approx(
        {
            "diag/dead_frac/layer1": 0.0,
            "diag/inactive_frac/layer1": 0.0,
            "diag/saturated_frac/layer1": 0.5,
            "diag/dead_frac/layer2": 0.5,
            "diag/inactive_frac/layer2": 0.5,
            "diag/dead_frac/total": 0.25,
            "diag/inactive_frac/total": 0.25,
            "diag/saturated_frac/total": 0.25,
        }
    )
    relu_only = unit_stats(hand_built("torch.nn.ReLU", BIASES, WEIGHTS), PROBE)
    assert not any("saturated" in key for key in relu_only)
