"""Wrong overrides end in one clean line naming the key, a non-zero exit, and no traceback."""

import copy
import math
import shutil

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import ROOT, Finished, compose_config, run_script, write_idx_set
from experiments.config.rules import (
    ConfigError,
    advice,
    misspelt_keys,
    parameters,
    problems,
    sweep_problems,
    validate,
)

BAD = [  # (override, text the error must contain)
    ("optimizer.lr=0", "optimizer.lr"),
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("optimizer.lr=abc", "optimizer.lr"),
    ("optimizer.lr=1e300", "optimizer.lr"),
    ("optimizer.lr=nan", "optimizer.lr"),
    ("optimizer.lr=inf", "optimizer.lr"),
    ("optimizer=momentum optimizer.momentum=1.5", "optimizer.momentum"),
    ("optimizer=momentum_lecture optimizer.momentum=1.0", "optimizer.momentum"),
    ("data.normalize=minmax", "data.normalize"),
    ("data.normalize=null", "data.normalize"),
    ("optimizer=momentum optimizer.momentum=-0.1", "optimizer.momentum"),
    ("optimizer.betas=[0.9]", "optimizer.betas"),
    ("optimizer.betas=[1.0,0.9]", "optimizer.betas"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay"),
    ("data.batch_size=0", "data.batch_size"),
    ("data.batch_size=-5", "data.batch_size"),
    ("data.batch_size=abc", "data.batch_size"),
    ("data.batch_size=1000000", "data.batch_size"),
    ("data.batch_size=2.5", "data.batch_size"),
    ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("data.val_size=0", "data.val_size"),
    ("data.val_size=60000", "data.val_size"),
    ("data.val_size=-1", "data.val_size"),
    ("data.root=/does/not/exist", "data.root"),
    ("data.limit_train=0", "data.limit_train"),
    ("data.on_device=maybe", "data.on_device"),
    ("model.hidden_sizes=[]", "model.hidden_sizes"),
    ("model.hidden_sizes=[64,0]", "model.hidden_sizes"),
    ("model.hidden_sizes=[64,-3]", "model.hidden_sizes"),
    ("model.hidden_sizes=64", "model.hidden_sizes"),
    ("model.hidden_sizes=[a,b]", "model.hidden_sizes"),
    ("model.hidden_sizes=[10000000]", "model.hidden_sizes"),
    ("model.init=he", "model.init"),
    ("model.dropout=1.0", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"),
    ("model.output_activation=relu", "model.output_activation"),
    ("model.batch_norm=2", "model.batch_norm"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.max_epochs=-1", "trainer.max_epochs"),
    ("trainer.max_epochs=1.5", "trainer.max_epochs"),
    ("trainer.max_epochs=two", "trainer.max_epochs"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches"),
    ("trainer.accelerator=quantum", "trainer.accelerator"),
    ("trainer.precision=7", "trainer.precision"),
    ("seed=-1", "seed"),
    ("seed=abc", "seed"),
    ("deterministic=sometimes", "deterministic"),
    ("threads=0", "threads"),
    ("ckpt_path=/no/such.ckpt", "ckpt_path"),
    ("activation=leaky_relu activation.negative_slope=-0.1", "activation.negative_slope"),
    ("activation=elu activation.alpha=0", "activation.alpha"),
    ("activation=alrelu activation.alpha=-1", "alpha"),
    ("activation=prelu activation.num_parameters=7", "activation.num_parameters"),
    ("loss.label_smoothing=1.0", "loss.label_smoothing"),
    ("optimizer=gd data.batch_size=64", "data.batch_size"),
    ("+trainer.enable_checkpointing=false", "trainer.enable_checkpointing=false with checkpoint callbacks"),
    ("loss=mse model.output_activation=log_softmax", "model.output_activation=log_softmax with SoftmaxMSELoss"),
    ("loss=bce model.output_activation=softmax", "model.output_activation=softmax with OneHotBCELoss"),
    ("trainer.gradient_clip_algorithm=clip", "trainer.gradient_clip_algorithm"),
    ("+trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches"),
    ("trainer.max_steps=0", "trainer.max_steps"),
    ("data.shuffle_seed=-1", "data.shuffle_seed"),
    ("optimizer.lr=${nope}", "optimizer.lr cannot be resolved"),
    ("+search.width=${nope}", "search.width cannot be resolved"),
    ("activation=gelu activation.approximate=bogus", "activation.approximate='bogus'"),
    ("callbacks.progress_bar.refresh_rate=0", "callbacks.progress_bar.refresh_rate=0"),
    ("diagnostics.histograms.bins=0", "diagnostics.histograms.bins=0"),
    ("diagnostics.grad_norms.every_n_steps=0", "diagnostics.grad_norms.every_n_steps=0"),
    ("diagnostics.dead_units.probe_size=-1", "diagnostics.dead_units.probe_size=-1"),
    ("scheduler=cosine scheduler.scheduler.eta_min=-1", "scheduler.scheduler.eta_min=-1"),
    ("scheduler=onecycle scheduler.scheduler.max_lr=-1", "scheduler.scheduler.max_lr=-1"),
    ("scheduler=step scheduler.interval=bogus", "scheduler.interval='bogus'"),
    ("scheduler=step scheduler.scheduler.gamma=0", "scheduler.scheduler.gamma"),
    ("trainer.devices=99", "trainer.devices=99 is invalid: this machine has"),
    ("trainer.devices=0", "trainer.devices=0"),
    ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is not available"),
    ("callbacks=early_stopping callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience=-1"),
    ("callbacks=early_stopping callbacks.early_stopping.mode=up", "callbacks.early_stopping.mode='up'"),
    ("callbacks.model_checkpoint.monitor=val/accuracy", "callbacks.model_checkpoint.monitor='val/accuracy'"),
    (
        "callbacks=step_checkpoint callbacks.step_checkpoint.every_n_train_steps=0",
        "callbacks.step_checkpoint.every_n_train_steps=0",
    ),
    # what Lightning takes without complaint though it makes no sense, or refuses only with a traceback
    ("+trainer.fast_dev_run=-1", "trainer.fast_dev_run=-1"),
    ("+trainer.overfit_batches=1.5", "trainer.overfit_batches=1.5"),
    ("+trainer.val_check_interval=-1", "trainer.val_check_interval=-1"),
    ("+trainer.profiler=bogus", "trainer.profiler='bogus'"),
    ("+trainer.detect_anomaly=sometimes", "trainer.detect_anomaly='sometimes'"),
    ("trainer.num_sanity_val_steps=-5", "trainer.num_sanity_val_steps=-5"),
    ("+trainer.min_epochs=-3", "trainer.min_epochs=-3"),
    ("+callbacks.model_checkpoint.save_last=sometimes", "callbacks.model_checkpoint.save_last='sometimes'"),
    ("callbacks.model_checkpoint.auto_insert_metric_name=maybe", "callbacks.model_checkpoint.auto_insert_metric_name"),
    ("callbacks=early_stopping +callbacks.early_stopping.verbose=loud", "callbacks.early_stopping.verbose='loud'"),
    ("callbacks=early_stopping +callbacks.early_stopping.stopping_threshold=x", "early_stopping.stopping_threshold"),
    ("logger=csv +logger.csv.flush_logs_every_n_steps=-1", "logger.csv.flush_logs_every_n_steps=-1"),
    ("+logger.tensorboard.flush_secs=-1", "logger.tensorboard.flush_secs=-1"),
    ("+logger.tensorboard.max_queue=0", "logger.tensorboard.max_queue=0"),
    ("optimized_metric=accuracy", "optimized_metric='accuracy'"),
    ("print_config=maybe", "print_config='maybe'"),
    # a key added with + composes, and would reach the constructor as an unexpected argument
    ("+optimizer.lrr=0.1", "optimizer.lrr is not an argument of torch.optim.Adam: did you mean optimizer.lr?"),
    (
        "optimizer=momentum_lecture +optimizer.nesterov=true",
        "optimizer.nesterov is not an argument of experiments.nn.optimizers.LectureMomentum",
    ),
    (
        "+model.foo=1",
        "model.foo is not an argument of experiments.nn.model.MLP: it takes batch_norm, bias_init, dropout, "
        "hidden_sizes, init, output_activation",
    ),
    ("+model.activation=x", "model.activation is set by the project, not the config: use activation=<option>"),
    ("+model.num_classes=3", "model.num_classes is set by the project"),
    ("+optimizer.params=[]", "optimizer.params is set by the project"),
    (
        "+trainer.deterministic=true",
        "trainer.deterministic is set by the project, not the config: use deterministic=true",
    ),
    ("+trainer.callbacks=[]", "trainer.callbacks is set by the project"),
    (
        "+trainer.max_epoch=3",
        "trainer.max_epoch is not an argument of lightning.Trainer: did you mean trainer.max_epochs?",
    ),
    (
        "+data.batchsize=3",
        "data.batchsize is not an argument of experiments.data.datamodule.MNISTDataModule: did you mean "
        "data.batch_size?",
    ),
    ("+activation.foo=1", "activation.foo is not an argument of torch.nn.ReLU: it takes inplace"),
    (
        "loss=nll +loss.weight=1",
        "loss.weight is not an argument of experiments.nn.losses.NLLOnLogSoftmax: it takes none",
    ),
    (
        "+callbacks.progress_bar.refresh=3",  # read through the project's bar to Lightning's arguments
        "callbacks.progress_bar.refresh is not an argument of experiments.lit.callbacks.RichProgressBar: did you mean "
        "callbacks.progress_bar.refresh_rate?",
    ),
    ("+diagnostics.dead_units.probe=10", "did you mean diagnostics.dead_units.probe_size?"),
    ("scheduler=step +scheduler.scheduler.setp_size=3", "did you mean scheduler.scheduler.step_size?"),
    ("scheduler=step +scheduler.scheduler.optimizer=1", "scheduler.scheduler.optimizer is set by the project"),
    ("activation._target_=no_such_module.Act", "activation._target_='no_such_module.Act' cannot be imported"),
    # a fraction of batches that leaves a stage none: Lightning refuses it only when the stage starts
    (
        "trainer.limit_train_batches=0.0001",
        "trainer.limit_train_batches=0.0001 is too small: 0.0001 of the 215 "
        "train batches is less than one; use at least 0.0047",
    ),
    ("trainer.limit_val_batches=0.5", "trainer.limit_val_batches=0.5 is too small: 0.5 of the 1 val batches"),
    ("data.limit_train=1000 trainer.limit_train_batches=0.004", "0.004 of the 4 train batches"),
    ("optimizer=gd data.batch_size=full trainer.limit_train_batches=0.5", "0.5 of the 1 train batches"),
    (
        "data.eval_batch_size=100 trainer.limit_test_batches=0.001",
        "0.001 of the 100 test batches is less than one; use at least 0.01",
    ),
    # an entry of callbacks, diagnostics or logger must be off or a class to build
    (
        "callbacks.progress_bar=5",
        "callbacks.progress_bar=5 is invalid: must be null (off) or a section whose _target_ names a callback class",
    ),
    ("diagnostics.dead_units=abc", "diagnostics.dead_units='abc' is invalid"),
    ("+logger.foo.x=1", "logger.foo={'x': 1} is invalid"),
]
# Hydra's own refusals (unknown keys and options) come before this project's code runs
HYDRA_BAD = [
    ("unknown_key=1", "unknown_key"),
    ("model.widths=[3]", "model.widths"),
    ("activation=relux", "relu"),
    ("optimizer=adamm", "adam"),
    ("loss=ce", "cross_entropy"),
    ("trainer=gpus", "ddp"),
    ("callbacks=some", "early_stopping"),
    ("logger=wandb2", "mlflow"),
]


def run_train(args: list[str], tmp_path, env: dict | None = None) -> Finished:
    """train.py with ``args`` on a run of one batch, in this process."""
    base = ["print_config=false", "trainer.max_epochs=1", "trainer.limit_train_batches=1"]
    if not any(a.startswith("callbacks.progress_bar") for a in args):
        base.append("callbacks.progress_bar=null")
    return run_script([f"hydra.run.dir={tmp_path}/run", *base, *args], tmp_path, env=env)


def with_overrides(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """The config ``overrides`` compose to: group choices composed (cached), values set on a copy."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = tuple(o.input_line for o in parsed if "." not in o.key_or_group and o.key_or_group in GROUPS)
    cfg = compose_config(list(choices))  # a copy of the composition kept for these choices
    for o in parsed:
        if o.input_line not in choices:
            with open_dict(cfg):
                OmegaConf.update(cfg, o.key_or_group.lstrip("+"), o.value(), merge=False)
    return cfg, dict(c.split("=") for c in choices)


@pytest.mark.parametrize("override, words", BAD, ids=[b[0] for b in BAD])
def test_a_wrong_value_is_one_problem_naming_key_value_and_range(override, words):
    cfg, choices = with_overrides(override.split())
    found = problems(cfg, choices=choices)
    assert len(found) == 1 and words in found[0], found
    if "is invalid: must be" in found[0]:  # the value and the valid range
        assert found[0].split(" is invalid: must be ")[1].strip()


def problems_of(override: str) -> str:
    cfg, choices = with_overrides(override.split())
    return "\n".join(problems(cfg, choices=choices))


@pytest.mark.parametrize("override, words", HYDRA_BAD, ids=[b[0] for b in HYDRA_BAD])
def test_an_unknown_key_or_option_is_hydras_error_naming_it(override, words, tmp_path):
    proc = run_train(override.split(), tmp_path)
    assert proc.returncode != 0 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_full_error_env_shows_the_traceback(tmp_path):
    proc = run_train(["optimizer.lr=0"], tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("experiments.errors.ConfigError: optimizer.lr=0 is invalid")


def test_errors_come_before_the_config_dump(tmp_path):
    proc = run_train(["print_config=true", "optimizer.lr=0"], tmp_path)
    assert proc.returncode == 2 and "optimizer.lr=0" in proc.stderr and "hidden_sizes" not in proc.stdout


def test_every_problem_is_listed_at_once():
    cfg = compose_config(["optimizer.lr=0", "trainer.max_epochs=0", "data.batch_size=-1"])
    found = problems(cfg)
    assert sorted(f.split("=")[0] for f in found) == ["data.batch_size", "optimizer.lr", "trainer.max_epochs"]
    assert all("is invalid: must be" in f for f in found)
    with pytest.raises(ConfigError):
        validate(cfg)


def test_full_batch_gradient_descent_refuses_mini_batches_by_the_group_choice():
    cfg = compose_config(["optimizer=gd", "data.batch_size=64"])
    assert problems(cfg, choices={"optimizer": "gd"})[0].startswith("data.batch_size=64 with optimizer=gd")
    assert problems(cfg, choices={"optimizer": "sgd"}) == []


def test_ddp_is_refused_inside_a_multirun_only():
    cfg = compose_config(["trainer=ddp", "trainer.accelerator=cpu"])
    assert problems(cfg, multirun=False) == []
    assert "in a multirun" in problems(cfg, multirun=True)[0]


GROUPS = (
    "activation",
    "loss",
    "optimizer",
    "scheduler",
    "callbacks",
    "logger",
    "diagnostics",
    "experiment",
    "trainer",
    "data",
    "model",
)


def test_defaults_and_every_group_option_are_valid():
    base = compose_config()
    assert problems(base) == []
    for group in GROUPS:
        for path in (ROOT / "conf" / group).glob("*.yaml"):
            text = path.read_text()
            if "@package _global_" in text or "defaults:" in text:  # places keys elsewhere: compose it
                cfg = compose_config([f"{group}={path.stem}"])
            else:
                cfg = copy.deepcopy(base)
                cfg[group] = OmegaConf.load(path)
            found = problems(cfg, choices={group: path.stem})
            if (group, path.stem) == ("trainer", "gpu") and not torch.cuda.is_available():
                assert found == [
                    "trainer.accelerator='gpu' is not available: PyTorch sees no CUDA GPU here; use auto or cpu"
                ]
                continue
            assert found == [], (group, path.stem)


@pytest.mark.parametrize(
    "overrides, warned",
    [
        (["activation=selu"], True),
        (["activation=selu", "model.init=lecun_normal"], True),  # PyTorch's uniform biases remain
        (["activation=selu", "model.bias_init=0"], True),
        (["activation=selu", "model.init=lecun_normal", "model.bias_init=0"], False),
        (["experiment=snn"], False),
        (["experiment=snn", "activation=relu"], False),
        (["activation=relu"], False),
    ],
)
def test_selu_without_lecun_normal_weights_and_zero_biases_is_warned_about(overrides, warned):
    found = advice(compose_config(overrides))
    assert bool(found) == warned
    if warned:
        assert "model.init=lecun_normal model.bias_init=0" in found[0]


@pytest.mark.parametrize("preset, normalize", [("dying_relu", "standardize"), ("dying_relu_lr", "unit")])
def test_the_dying_relu_presets_state_their_pixel_scaling(preset, normalize):
    import yaml

    text = (ROOT / "conf" / "experiment" / f"{preset}.yaml").read_text()
    assert yaml.safe_load(text)["data"]["normalize"] == normalize  # in the file, not inherited
    assert compose_config([f"experiment={preset}"]).data.normalize == normalize


@pytest.mark.parametrize(
    "override",
    [
        "trainer.limit_train_batches=0.0047",
        "trainer.limit_test_batches=0.5",
        "callbacks.model_checkpoint.monitor=val/loss callbacks.model_checkpoint.mode=min",
        "data.eval_batch_size=100 trainer.limit_val_batches=0.02",
    ],
)
def test_a_fraction_that_leaves_a_stage_one_batch_is_enough(override):
    assert problems_of(override) == ""


@pytest.mark.parametrize(
    "override",
    [
        "+logger.tensorboard.flush_secs=5",
        "+activation.inplace=false",
        "optimizer=sgd +optimizer.maximize=false",
        "+trainer.benchmark=false",
    ],
)
def test_a_key_the_class_takes_may_be_added(override):
    assert problems_of(override) == ""  # TensorBoardLogger passes any other keyword on to its writer


def test_what_a_class_takes_is_read_through_inits_that_only_pass_arguments_on():
    class Base:
        def __init__(self, a: int, *, b: int = 1) -> None: ...

    class PassesOn(Base):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)

    class TakesAny(Base):
        def __init__(self, a: int, **kwargs: object) -> None: ...

    class Bare(torch.nn.Module):
        pass

    assert parameters(Base) == parameters(PassesOn) == {"a", "b"}
    assert parameters(TakesAny) is None
    assert parameters(Bare) == set()  # nn.Module's own __init__ takes no settings


@pytest.mark.parametrize(
    "override, meant, setting",
    [
        ("+max_epochs=3", "trainer.max_epochs", "trainer.max_epochs=3"),
        ("+seeds=3", "seed", "seed=3"),
        ("+lr=0.1", "optimizer.lr", "optimizer.lr=0.1"),
        ("+optimiser=sgd", "optimizer", "optimizer=sgd"),  # Hydra's advice for a misspelt group, taken
        ("+actvation=elu", "activation", "activation=elu"),
        ("+optimiser.lr=0.1", "optimizer", "optimizer.lr=0.1"),
        ("+modle.hidden_sizes=[8,8]", "model", "model.hidden_sizes=[8,8]"),  # a section: not the leaf 'mode'
    ],
)
def test_a_top_level_key_nothing_reads_that_is_a_near_miss_is_refused_naming_the_likely_one(override, meant, setting):
    cfg, _ = with_overrides([override])
    key = override[1:].split("=")[0].split(".")[0]
    assert misspelt_keys(cfg) == [
        f"{key} is not read by train.py (did you mean {meant}?): write {setting}, without the '+'"
    ]
    assert not any(w.startswith(key) for w in advice(cfg))


@pytest.mark.parametrize("override", ["+note=first_try", "+regularizer.p=0.1"])
def test_a_top_level_key_nothing_reads_and_no_near_miss_is_a_warning(override):
    cfg, _ = with_overrides([override])
    key = override[1:].split("=")[0].split(".")[0]
    assert misspelt_keys(cfg) == []
    assert advice(cfg) == [f"{key} is set but train.py does not read it; it is kept in the run's config only"]


def test_a_top_level_key_read_through_an_interpolation_is_neither_refused_nor_warned_about():
    cfg, _ = with_overrides(["+width=32", "model.hidden_sizes=[${width},${width}]"])
    assert misspelt_keys(cfg) == [] and advice(cfg) == []


@pytest.mark.parametrize(
    "override, warning",
    [
        (
            "callbacks.model_checkpoint.monitor=val/loss",
            "callbacks.model_checkpoint.mode=max with monitor val/loss keeps "
            "the worst epoch; add callbacks.model_checkpoint.mode=min unless "
            "that is what you want",
        ),
        (
            "callbacks=early_stopping callbacks.early_stopping.mode=min",
            "callbacks.early_stopping.mode=min with monitor val/acc keeps the worst epoch; add "
            "callbacks.early_stopping.mode=max",
        ),
    ],
)
def test_a_mode_that_keeps_the_worst_epoch_is_a_warning(override, warning):
    cfg, choices = with_overrides(override.split())
    assert problems(cfg, choices=choices) == [] and len(advice(cfg)) == 1 and advice(cfg)[0].startswith(warning)


@pytest.mark.parametrize(
    "overrides", [["+width=32", "model.hidden_sizes=[${width},${width}]"], ["hparams_search=lr_width"], []]
)
def test_a_top_level_key_an_interpolation_reads_is_no_warning(overrides):
    cfg = compose_config(overrides)
    assert advice(cfg) == [] and problems(cfg) == []


def test_a_refused_argument_is_one_line_before_training(tmp_path):
    proc = run_train(["+optimizer.lrr=0.1"], tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "optimizer.lrr is not an argument of torch.optim.Adam: did you mean optimizer.lr?" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "overrides, found",
    [
        ([], []),
        (["hydra/launcher=fused"], []),
        (["hydra/launcher=joblib"], []),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], []),
        (["hparams_search=lr_width"], []),
        (
            ["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"],
            ["hydra.launcher.n_jobs=0 is invalid: must be a non-zero integer (-1: every core)"],
        ),
        (
            ["hparams_search=lr_width", "hydra.sweeper.n_trials=0", "hydra.sweeper.n_jobs=-2"],
            [
                "hydra.sweeper.n_trials=0 is invalid: must be an integer >= 1",
                "hydra.sweeper.n_jobs=-2 is invalid: must be an integer >= 1",
            ],
        ),
    ],
)
def test_launcher_and_sweeper_settings_that_would_fail_mid_sweep(overrides, found):
    from hydra.core.hydra_config import HydraConfig

    compose_config(overrides)
    assert sweep_problems(HydraConfig.get()) == found


def test_a_network_larger_than_the_machines_memory_is_refused_before_it_is_built(monkeypatch):
    import os

    from experiments.nn.model import training_bytes

    wide = "model.hidden_sizes=[" + ",".join(["65536"] * 100) + "]"  # 1.7 TB of weights alone
    found = problems_of(f"{wide} trainer.accelerator=cpu")
    assert found.startswith(f"model.hidden_sizes=[{', '.join(['65536'] * 100)}] with data.batch_size=256 needs about ")
    assert "GiB (weights, gradients, optimizer state, a batch's activations; float32), and this machine has" in found
    # the estimate against a machine of 1 GiB: two 8192-wide layers need more, the course's MLP far less
    pages = {"SC_PHYS_PAGES": 2**18, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert training_bytes(784, [8192, 8192], 10, 256, 5000) > 2**30
    assert "and this machine has 1 GiB: use smaller widths" in problems_of(
        "model.hidden_sizes=[8192,8192] trainer.accelerator=cpu"
    )
    assert problems_of("trainer.accelerator=cpu") == ""


def test_a_ray_address_must_answer_before_the_sweep_starts():
    import socket

    from experiments.config.rules import ray_address

    assert ray_address(None) is None and ray_address("auto") is None and ray_address("ray://head:10001") is None
    assert "host:port" in ray_address("head")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert ray_address(f"127.0.0.1:{port}") is None
    said = ray_address(f"127.0.0.1:{port}")  # closed now: nothing answers
    assert (
        said.startswith("the address of a running Ray cluster, and none answers there") and "ray start --head" in said
    )


def test_no_rule_breaks_on_a_number_past_a_float_s_range():
    """A value read back (a checkpoint's settings) or typed may be 10**400: every rule answers, none raises, and
    a rule that takes a number refuses it (torch could not take it)."""
    from experiments.config.rules import RULES, number

    for key, check in RULES.items():
        for value in (10**400, -(10**400), [10**400, 1], float("inf")):
            assert check(value) is None or isinstance(check(value), str), key
    assert number(0, math.inf)(10**400) is not None and number(-math.inf, math.inf)(-(10**400)) is not None
    assert RULES["optimizer.lr"](10**400) is not None and RULES["model.hidden_sizes"]([10**400]) is not None


def test_sizes_are_bounded_by_the_data_set_the_root_holds(tmp_path):
    root = write_idx_set(tmp_path / "own", train=600)
    fits = compose_config([f"data.root={root}", "data.val_size=100", "data.batch_size=600", "data.limit_train=500"])
    assert problems(fits) == []
    found = problems(compose_config([f"data.root={root}", "data.val_size=600", "data.batch_size=601"]))
    assert f"data.batch_size=601 is invalid: must be at most 600 (data.root={root} has 600 training images)" in found
    assert f"data.val_size=600 is invalid: must be at most 599 (data.root={root} has 600 training images)" in found
    # the bundled set is 60,000 images: the same sizes pass there
    assert problems(compose_config(["data.val_size=600", "data.batch_size=601"])) == []
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    (broken / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    assert any(
        "t10k-labels-idx1-ubyte.gz: checksum failed" in p for p in problems(compose_config([f"data.root={broken}"]))
    )
