"""Each preset of conf/experiment/: its parameters, and the effect it exists to show, through train.py."""

import math

import pytest
import torch
import yaml
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
    "init_saturation": {
        "model.hidden_sizes": [1000] * 5,
        "model.init": "default",
        "model.bias_init": 0.0,
        "activation._target_": "torch.nn.Sigmoid",
        "optimizer._target_": "torch.optim.SGD",
        "data.batch_size": 10,
        "diagnostics.activation_stats.probe_size": 300,
        "diagnostics.activation_stats.split": "test",
        "show": ["diag/act_mean/layer5", "diag/act_std/layer5"],
    },
    "init_depth": {
        "model.hidden_sizes": [256] * 30,
        "model.bias_init": 0.0,
        "activation._target_": "torch.nn.ReLU",
        "show": ["diag/act_std/layer30", "train/loss"],
    },
    "optimizers_mnist": {
        "model.hidden_sizes": [1000, 1000],
        "model.dropout": 0.5,
        "activation._target_": "torch.nn.ReLU",
        "data.batch_size": 128,
        "show": ["train/loss"],
    },
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
    "init_saturation": {"activation": "sigmoid,tanh,softsign", "model.init": "default,xavier_uniform"},
    "init_depth": {"model.init": "xavier_normal,kaiming_normal"},
    "optimizers_mnist": {"optimizer": "adam,adagrad,rmsprop,nesterov,adadelta"},
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


OPTIMIZERS = {  # Kingma & Ba's five, as the preset names them, and the class each builds
    "adam": "torch.optim.Adam",
    "adagrad": "torch.optim.Adagrad",
    "rmsprop": "torch.optim.RMSprop",
    "nesterov": "torch.optim.SGD",
    "adadelta": "torch.optim.Adadelta",
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_each_optimizer_of_the_adam_paper_preset_trains_at_its_own_chosen_rate(optimizer):
    cfg = compose_config(["experiment=optimizers_mnist", f"optimizer={optimizer}"])
    assert sorted(cfg.search.lr) == sorted(OPTIMIZERS)  # a rate for each of the five, and no other
    assert cfg.optimizer._target_ == OPTIMIZERS[optimizer]
    assert cfg.optimizer.lr == cfg.search.lr[optimizer]
    assert cfg.optimizer.get("nesterov", False) is (optimizer == "nesterov")
    # the grid's command: a rate typed on the command line wins over the table
    typed = compose_config(["experiment=optimizers_mnist", f"optimizer={optimizer}", "optimizer.lr=0.5"])
    assert typed.optimizer.lr == 0.5


def initial_layers(preset: str, init: str, activation: str | None = None):
    """The preset's network as a run builds it (seed 0), and its linear layers."""
    overrides = [f"experiment={preset}", f"model.init={init}", *([f"activation={activation}"] if activation else [])]
    cfg = compose_config(overrides)
    torch.manual_seed(0)
    data = build_datamodule(cfg)
    data.prepare_data()
    net = build_module(cfg, data).net
    return net, data, [*(h.linear for h in net.hidden), net.output]


def test_glorots_standard_initialisation_is_pytorchs_default_and_the_normalised_one_xavier_uniform():
    """The preset's claim in its comment: U[-1/sqrt(n), 1/sqrt(n)] and U[+-sqrt(6)/sqrt(n_in + n_out)], biases 0."""
    for init in ("default", "xavier_uniform"):
        _, _, linears = initial_layers("init_saturation", init)
        for layer in linears:
            fan_out, fan_in = layer.weight.shape
            bound = 1 / math.sqrt(fan_in) if init == "default" else math.sqrt(6 / (fan_in + fan_out))
            w = layer.weight.detach()
            assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound, (init, layer)
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # uniform: variance bound^2 / 3
            assert not layer.bias.any()


def test_at_thirty_layers_xaviers_signal_shrinks_layer_by_layer_and_kaimings_keeps_its_spread():
    from experiments.lit.activation_stats import activation_stats

    spread = {}
    for init in ("xavier_normal", "kaiming_normal"):
        net, data, _ = initial_layers("init_depth", init)
        stats = activation_stats(net, data.images("val", 300))
        spread[init] = [stats[f"diag/act_std/layer{i}"] for i in range(1, 31)]
    xavier, kaiming = spread["xavier_normal"], spread["kaiming_normal"]
    # ReLU halves the variance at each layer under variance 1/n: about 2^-14.5 from layer 1 to layer 30
    assert xavier[29] < 1e-3 * xavier[0] and all(b < a for a, b in zip(xavier, xavier[1:]))
    assert 1 / 3 < kaiming[29] / kaiming[0] < 3


@pytest.mark.slow
def test_the_round_two_presets_run_end_to_end_and_draw_their_pictures(tmp_path):
    """Each preset's sweep in a quick form (a few batches): every job completes and the report draws the
    picture its README row names; where a few batches suffice, the effect too."""
    quick = ["trainer.limit_train_batches=30", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    quick += ["trainer.max_epochs=1", "print_config=false", "callbacks.progress_bar=null"]
    picture = {
        "init_saturation": "activations.png",
        "init_depth": "activation_spread.png",
        "optimizers_mnist": "train_loss_per_epoch.png",
    }
    runs = {}
    for preset, png in picture.items():
        extra = ["diagnostics.activation_stats.every_n_steps=10"] if preset == "init_saturation" else []
        proc = run_script(["-m", f"experiment={preset}", *quick, *extra, f"hydra.sweep.dir={preset}"], tmp_path)
        assert proc.returncode == 0, (preset, proc.stderr[-2000:])
        records = [read_metrics(m.parent) for m in (tmp_path / preset).glob("*/metrics.json")]
        assert len(records) == math.prod(len(v.split(",")) for v in SWEEPS[preset].values()), preset
        assert all(r["status"] == "completed" for r in records), preset
        assert (tmp_path / preset / png).stat().st_size > 10_000, (preset, png)
        runs[preset] = records
    xavier = next(r for r in runs["init_depth"] if "model.init=xavier_normal" in r["overrides"])
    kaiming = next(r for r in runs["init_depth"] if "model.init=kaiming_normal" in r["overrides"])
    assert xavier["history"]["diag/act_std/layer30"][0] < 1e-3 < kaiming["history"]["diag/act_std/layer30"][0]
    assert kaiming["train/loss"] < xavier["train/loss"] and xavier["train/loss"] == pytest.approx(2.30, abs=0.02)
    sigmoid = [r for r in runs["init_saturation"] if r["choices"]["activation"] == "sigmoid"]
    for record in sigmoid:  # read at initialisation and every 10 of the 30 steps
        assert record["history"]["diag/act_step"] == [0, 10, 20, 30]
    chosen = compose_config(["experiment=optimizers_mnist"]).search.lr
    trained = {}
    for job in (tmp_path / "optimizers_mnist").glob("*/metrics.json"):
        hparams = yaml.safe_load((job.parent / "tensorboard" / "hparams.yaml").read_text())
        trained[read_metrics(job.parent)["choices"]["optimizer"]] = hparams["optimizer.lr"]
    assert trained == dict(chosen)  # each trained at its own rate, as recorded beside its metrics
