"""Wrong overrides end in one clean line naming the key, a non-zero exit, and no traceback."""

import importlib.util
import sys

import pytest

from conftest import ROOT, compose_config
from experiments.config_checks import ConfigError, problems, validate

spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
train_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_script)

BAD = [  # (override, text the error must contain)
    ("optimizer.lr=0", "optimizer.lr"), ("optimizer.lr=-0.1", "optimizer.lr"), ("optimizer.lr=abc", "optimizer.lr"),
    ("optimizer.lr=1e300", "optimizer.lr"), ("optimizer.lr=nan", "optimizer.lr"), ("optimizer.lr=inf", "optimizer.lr"),
    ("optimizer=momentum optimizer.momentum=1.5", "optimizer.momentum"),
    ("optimizer=momentum optimizer.momentum=-0.1", "optimizer.momentum"),
    ("optimizer.betas=[0.9]", "optimizer.betas"), ("optimizer.betas=[1.0,0.9]", "optimizer.betas"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay"),
    ("data.batch_size=0", "data.batch_size"), ("data.batch_size=-5", "data.batch_size"),
    ("data.batch_size=abc", "data.batch_size"), ("data.batch_size=1000000", "data.batch_size"),
    ("data.batch_size=2.5", "data.batch_size"), ("data.eval_batch_size=0", "data.eval_batch_size"),
    ("data.val_size=0", "data.val_size"), ("data.val_size=60000", "data.val_size"),
    ("data.val_size=-1", "data.val_size"), ("data.root=/does/not/exist", "data.root"),
    ("data.limit_train=0", "data.limit_train"), ("data.on_device=maybe", "data.on_device"),
    ("model.hidden_sizes=[]", "model.hidden_sizes"), ("model.hidden_sizes=[64,0]", "model.hidden_sizes"),
    ("model.hidden_sizes=[64,-3]", "model.hidden_sizes"), ("model.hidden_sizes=64", "model.hidden_sizes"),
    ("model.hidden_sizes=[a,b]", "model.hidden_sizes"), ("model.hidden_sizes=[10000000]", "model.hidden_sizes"),
    ("model.init=he", "model.init"), ("model.dropout=1.0", "model.dropout"), ("model.dropout=-0.1", "model.dropout"),
    ("model.output_activation=relu", "model.output_activation"), ("model.batch_norm=2", "model.batch_norm"),
    ("trainer.max_epochs=0", "trainer.max_epochs"), ("trainer.max_epochs=-1", "trainer.max_epochs"),
    ("trainer.max_epochs=1.5", "trainer.max_epochs"), ("trainer.max_epochs=two", "trainer.max_epochs"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches"),
    ("trainer.accelerator=quantum", "trainer.accelerator"), ("trainer.precision=7", "trainer.precision"),
    ("seed=-1", "seed"), ("seed=abc", "seed"), ("deterministic=sometimes", "deterministic"),
    ("threads=0", "threads"), ("ckpt_path=/no/such.ckpt", "ckpt_path"),
    ("activation=leaky_relu activation.negative_slope=-0.1", "activation.negative_slope"),
    ("activation=elu activation.alpha=0", "activation.alpha"), ("activation=alrelu activation.alpha=-1", "alpha"),
    ("activation=prelu activation.num_parameters=7", "activation.num_parameters"),
    ("loss.label_smoothing=1.0", "loss.label_smoothing"), ("scheduler=step scheduler.gamma=0", "scheduler.gamma"),
    ("optimizer=gd data.batch_size=64", "data.batch_size"),
    ("loss=mse model.output_activation=log_softmax", "model.output_activation"),
    ("checkpoint.every_n_train_steps=0", "checkpoint.every_n_train_steps"),
    ("steps_per_execution=0", "steps_per_execution"), ("steps_per_execution=many", "steps_per_execution"),
    ("+trainer.accumulate_grad_batches=2", "data.batch_size"),
    ("trainer.gradient_clip_algorithm=clip", "trainer.gradient_clip_algorithm"),
    ("unknown_key=1", "unknown_key"), ("model.widths=[3]", "model.widths"),
    ("activation=relux", "relu"), ("optimizer=adamm", "adam"), ("loss=ce", "cross_entropy"),
]


def run_train(args: list[str], monkeypatch, tmp_path) -> int:
    monkeypatch.setattr(sys, "argv", ["train.py", f"hydra.run.dir={tmp_path}/run", "print_config=false",
                                      "progress_bar=false", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                      *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    try:
        train_script.main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


@pytest.mark.parametrize("override, key", BAD, ids=[b[0] for b in BAD])
def test_wrong_override_gives_one_clean_error(override, key, monkeypatch, tmp_path, capsys):
    code = run_train(override.split(), monkeypatch, tmp_path)
    err = capsys.readouterr().err
    assert code != 0, err
    assert key in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


def test_there_are_at_least_forty_wrong_overrides():
    assert len(BAD) >= 40


def test_full_error_env_shows_the_traceback(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "optimizer.lr=0", f"hydra.run.dir={tmp_path}", "print_config=false"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="optimizer.lr"):
        train_script.main()


def test_every_problem_is_listed_at_once():
    cfg = compose_config(["optimizer.lr=0", "trainer.max_epochs=0", "data.batch_size=-1"])
    found = problems(cfg)
    assert len(found) == 3 and all("is invalid: must be" in f for f in found)
    with pytest.raises(ConfigError):
        validate(cfg)


def test_defaults_are_valid():
    assert problems(compose_config([])) == []
