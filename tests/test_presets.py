"""Each preset of conf/experiment/: its parameters, and the effect it exists to show, through train.py."""

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import CONF, FAST, compose_config, read_metrics, run_script
from experiments.data.datamodule import MNISTDataModule
from experiments.lit.diagnostics import unit_stats
from experiments.run.checkpoints import load_classifier
from experiments.run.recipe import build_datamodule, build_module

PARAMETERS = {  # preset: (key, value) pairs its README row promises
    "hands_on": {
        "model.hidden_sizes": [64, 64, 64],
        "activation._target_": "torch.nn.ReLU",
        "optimizer.lr": 0.003,
        "data.batch_size": 256,
        "trainer.max_epochs": 2,
    },
    "hands_on_keras": {
        "model.init": "xavier_uniform",
        "model.bias_init": 0.0,
        "optimizer.eps": 1e-7,
        "data.batch_size": 64,
        "data.normalize": "unit",
        "trainer.max_epochs": 1,
    },
    "dying_relu": {
        "optimizer._target_": "torch.optim.Adam",
        "optimizer.lr": 0.05,
        "trainer.max_epochs": 2,
        "show": ["diag/dead_frac/total"],
    },
    "dying_relu_lr": {
        "model.hidden_sizes": [256, 256, 256],
        "optimizer._target_": "torch.optim.Adam",
        "data.normalize": "unit",
        "trainer.max_epochs": 1,
        "show": ["diag/dead_frac/layer1"],
    },
    "vanishing_gradients": {
        "model.hidden_sizes": [64] * 10,
        "activation._target_": "torch.nn.Sigmoid",
        "optimizer._target_": "torch.optim.SGD",
        "show": ["diag/grad_norm/layer1", "diag/grad_norm/output"],
    },
    "linear_collapse": {"activation._target_": "torch.nn.Identity", "show": ["collapse/test_acc"]},
    "snn": {
        "model.hidden_sizes": [512, 256],
        "model.init": "lecun_normal",
        "model.bias_init": 0.0,
        "model.dropout": 0.05,
        "activation._target_": "torch.nn.SELU",
        "optimizer._target_": "torch.optim.SGD",
        "optimizer.lr": 0.001,
        "optimizer.momentum": 0.0,
        "data.batch_size": 128,
        "trainer.max_epochs": 20,
        "show": ["val/acc", "train/loss"],
    },
}
SWEEPS = {
    "dying_relu": {"activation": "relu,leaky_relu,alrelu,elu"},
    "dying_relu_lr": {"activation": "relu,leaky_relu", "optimizer.lr": "0.001,0.01,0.03,0.1", "seed": "0,1"},
    "vanishing_gradients": {"activation": "sigmoid,relu"},
    "linear_collapse": {"activation": "identity,relu"},
    "snn": {"activation": "selu,relu"},
}


def test_every_preset_is_covered_here():
    from conftest import ROOT

    assert sorted(PARAMETERS) == sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("preset", sorted(PARAMETERS))
def test_each_preset_sets_what_it_promises_and_sweeps_its_comparison(preset):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_config([f"experiment={preset}"]), resolve=True)
    for key, value in PARAMETERS[preset].items():
        found = cfg
        for part in key.split("."):
            found = found[part]
        assert found == value, (preset, key, found)
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        full = compose(config_name="config", overrides=[f"experiment={preset}"], return_hydra_config=True)
    assert dict(full.hydra.sweeper.params or {}) == SWEEPS.get(preset, {})


def test_the_snn_preset_keeps_selu_activations_normalised_through_depth():
    """SELU's claim: with LeCun-normal weights and zero biases, standardised inputs stay near mean 0 and
    variance 1 from layer to layer (before any training); with the same weights ReLU's variance shrinks."""
    stats = {}
    for activation in ("selu", "relu"):
        cfg = compose_config(["experiment=snn", f"activation={activation}", "model.hidden_sizes=[512,512,512,512]"])
        torch.manual_seed(0)
        data = build_datamodule(cfg)
        data.prepare_data()
        net = build_module(cfg, data).net.eval()
        x = data.images("val", 2000)
        with torch.no_grad():
            for layer in net.hidden:
                x = layer(x)
        stats[activation] = (x.mean().item(), x.var().item())
    mean, var = stats["selu"]
    assert abs(mean) < 0.15 and 0.7 < var < 1.3, stats
    assert stats["relu"][1] < 0.2, stats  # about halved per layer: 1/16 after four


@pytest.mark.slow
def test_dying_relu_kills_relus_and_not_leaky_ones(dying_relu_sweep):
    sweep, proc = dying_relu_sweep
    runs = {
        read_metrics(j.parent)["choices"]["activation"]: read_metrics(j.parent) for j in sweep.glob("*/metrics.json")
    }
    assert runs["relu"]["diag/dead_frac/total"] > 0.3 and runs["leaky_relu"]["diag/dead_frac/total"] == 0
    assert runs["relu"]["diag/born_dead_frac/total"] < 0.1  # they died in training, not at birth
    shows_its_evidence(proc, sweep, "diag/dead_frac/total", runs["relu"])


def shows_its_evidence(proc, tmp_path, name: str, record: dict) -> None:
    """The preset's ``show``: the job's last line and the sweep's summary.md show what it exists to show."""
    assert f" {name}={record[name]:.4g} " in proc.stdout
    (summary,) = tmp_path.glob("**/summary.md")
    assert f" {name} |" in next(line for line in summary.read_text().splitlines() if line.startswith("| # |"))


@pytest.mark.slow
def test_vanishing_gradients_and_a_real_runs_saturated_fraction(tmp_path):
    proc = run_script(
        [
            "-m",
            "experiment=vanishing_gradients",
            *FAST,
            "trainer.limit_train_batches=30",
            "diagnostics.histograms=null",
            "diagnostics.dead_units.probe_size=500",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = {
        read_metrics(j.parent)["choices"]["activation"]: j.parent
        for j in tmp_path.glob("outputs/multirun/*/*/*/metrics.json")
    }
    sigmoid, relu = read_metrics(jobs["sigmoid"]), read_metrics(jobs["relu"])
    # the gradient shrinks by orders of magnitude on its way back through ten sigmoid layers
    assert sigmoid["diag/grad_norm/layer1"] < 1e-2 * sigmoid["diag/grad_norm/layer10"]
    assert relu["diag/grad_norm/layer1"] > 0.1 * relu["diag/grad_norm/layer10"]
    shows_its_evidence(proc, tmp_path, "diag/grad_norm/output", sigmoid)
    # the saturated fraction is measured for sigmoid (and only there), as the final weights give it
    assert "diag/saturated_frac/total" in sigmoid and "diag/saturated_frac/total" not in relu
    data = MNISTDataModule()
    data.prepare_data()
    expected = unit_stats(load_classifier(jobs["sigmoid"] / "checkpoints" / "last.ckpt").net, data.images("val", 500))
    for key in ("diag/saturated_frac/layer1", "diag/saturated_frac/layer10", "diag/saturated_frac/total"):
        assert sigmoid[key] == pytest.approx(expected[key]), key
    assert len(sigmoid["history"]["diag/saturated_frac/total"]) == 1 and not math.isnan(sigmoid[key])


@pytest.mark.slow
def test_dying_relu_lr_kills_more_at_the_higher_learning_rate(tmp_path):
    proc = run_script(
        [
            "-m",
            "experiment=dying_relu_lr",
            "activation=relu",
            "optimizer.lr=0.001,0.1",
            "seed=0",
            *FAST,
            "trainer.limit_train_batches=60",
            "diagnostics.histograms=null",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = {}
    for job in tmp_path.glob("outputs/multirun/*/*/*/metrics.json"):
        metrics = read_metrics(job.parent)
        lr = next(o for o in metrics["overrides"] if o.startswith("optimizer.lr=")).split("=")[1]
        runs[float(lr)] = metrics["diag/dead_frac/layer1"]
    assert runs[0.1] > 0.8 and runs[0.001] < 0.1, runs
    assert f" diag/dead_frac/layer1={runs[0.1]:.4g} " in proc.stdout
    (sweep,) = tmp_path.glob("outputs/multirun/*/*")
    assert (sweep / "dead_vs_lr.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset, name", [("debug=overfit", "train/loss"), ("experiment=linear_collapse", "collapse/test_acc")]
)
def test_a_single_run_s_last_line_shows_its_preset_s_evidence(tmp_path, preset, name):
    proc = run_script([preset, *FAST, "trainer.max_epochs=2", "diagnostics.histograms=null"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (record,) = (read_metrics(p.parent) for p in tmp_path.glob("outputs/**/metrics.json"))
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("test/acc=") and f" {name}={record[name]:.4g} " in last
