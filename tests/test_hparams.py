"""``run/hparams.py``: a run's settings as the flat hyperparameters every logger gets, beside the final metrics."""

import pytest
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import compose_config
from experiments.run.hparams import flat_hparams, labels, log_final, plain


def test_hparams_for_tensorboard_hold_the_choices_and_their_numbers():
    cfg = compose_config(["optimizer=momentum"])
    params = flat_hparams(cfg, {"optimizer": "momentum", "hydra/launcher": "basic"})
    assert params["optimizer"] == "momentum" and params["optimizer.momentum"] == 0.9
    assert params["model.hidden_sizes"] == "[64, 64, 64]" and "hydra/launcher" not in params


def test_a_key_an_override_added_or_removed_is_a_column_under_its_own_name():
    overrides = ["+note=first_try", "+trainer.max_time=00:00:05:00", "++seed=3", "~callbacks.progress_bar"]
    cfg = compose_config(overrides)
    params = flat_hparams(cfg, {}, overrides)
    assert params["note"] == "first_try" and params["trainer.max_time"] == "00:00:05:00" and params["seed"] == 3
    assert not [k for k in params if k.startswith(("+", "~"))]


@pytest.mark.parametrize(
    "group, options",
    [
        ("activation", ["relu", "elu", "leaky_relu", "prelu", "rrelu", "gelu"]),
        ("optimizer", ["sgd", "momentum", "adam", "rmsprop", "gd"]),
        ("scheduler", ["step", "cosine", "onecycle"]),
    ],
)
def test_every_option_of_a_group_names_the_same_hyperparameters(group, options):
    # TensorBoard's HParams tab takes its columns from one run: a sweep's runs must all name them
    params = {option: flat_hparams(compose_config([f"{group}={option}"]), {group: option}) for option in options}
    assert all(p.keys() == params[options[0]].keys() for p in params.values())
    if group == "activation":  # ELU's alpha in a ReLU run: not set
        assert params["relu"]["activation.alpha"] == "None" and params["elu"]["activation.alpha"] == 1.0
        assert (
            params["elu"]["activation.negative_slope"] == "None" and params["leaky_relu"]["activation.alpha"] == "None"
        )


def test_the_top_level_settings_are_hyperparameters_and_a_section_only_where_an_override_names_it():
    cfg = compose_config(["seed=5", "deterministic=true"])
    params = flat_hparams(cfg, {})
    assert params["seed"] == 5 and params["deterministic"] is True
    assert not [k for k in params if k.startswith("diagnostics.")]  # what is measured: not a setting of the run
    overridden = flat_hparams(cfg, {}, ["diagnostics.dead_units.probe_size=9"])
    assert overridden["diagnostics.dead_units.probe_size"] == cfg.diagnostics.dead_units.probe_size


def test_an_override_s_key_is_what_comes_before_its_first_equals_sign():
    overrides = ["+note='lr=0.1,momentum=0.9'"]  # a value with signs of its own
    params = flat_hparams(compose_config(overrides), {}, overrides)
    assert params["note"] == "lr=0.1,momentum=0.9" and not [k for k in params if "=" in k]


@pytest.mark.parametrize("override", ["hydra.verbose=true", "hydra.job.chdir=false", "optimizer/scheduler=cosine"])
def test_hydra_s_own_settings_and_group_choices_by_path_are_not_columns(override):
    params = flat_hparams(compose_config(), {}, [override])
    assert not [k for k in params if k.startswith("hydra") or "/" in k], params


def test_a_class_path_and_other_private_keys_are_not_columns_and_interpolations_are_resolved():
    overrides = ["+note=${optimizer.lr}"]
    cfg = compose_config(overrides)
    params = flat_hparams(cfg, {}, overrides)
    assert not [k for k in params if k.split(".")[-1].startswith("_")], params  # _target_, _partial_
    assert params["note"] == cfg.optimizer.lr
    assert plain(cfg.optimizer)["lr"] == cfg.optimizer.lr and plain(None) is None


@pytest.mark.parametrize("tags, column", [("[baseline,lr_study]", "baseline,lr_study"), ("[]", ""), ("null", "")])
def test_tags_are_one_column_a_reader_can_filter_on(tags, column):
    assert flat_hparams(compose_config([f"tags={tags}"]), {})["tags"] == column


def test_labels_are_the_run_s_name_and_tags_as_plain_values():
    assert labels(compose_config(["run_name=first", "tags=[a,b]"])) == {"run_name": "first", "tags": ["a", "b"]}


class Captures:
    """A logger other than TensorBoard's, as Lightning calls one."""

    def __init__(self):
        self.params, self.metrics, self.status = None, {}, None

    def log_hyperparams(self, params):
        self.params = params

    def log_metrics(self, metrics, step):
        self.metrics[step] = metrics

    def finalize(self, status):
        self.status = status


RESULT = {"test/acc": 0.9, "test/loss": 0.3, "status": "completed"}


def test_every_logger_gets_the_overrides_columns_and_the_final_metrics_and_is_finalized_as_a_success(tmp_path):
    overrides = ["diagnostics.dead_units.probe_size=9"]  # a column only because an override names it
    cfg = compose_config(overrides)
    other, tensorboard = Captures(), TensorBoardLogger(tmp_path, name="", version="")
    tensorboard.save()  # as Lightning saves it during training: its hparams.yaml written then, empty
    log_final([other, tensorboard], 10, cfg, {"optimizer": "adam"}, RESULT, overrides)
    params = flat_hparams(cfg, {"optimizer": "adam"}, overrides)
    assert other.params == params and params["diagnostics.dead_units.probe_size"] == 9
    assert other.metrics == {10: {"final/test_acc": 0.9, "final/test_loss": 0.3}} and other.status == "success"
    assert yaml.safe_load((tmp_path / "hparams.yaml").read_text()) == params  # rewritten whole, not empty
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"final/test_acc", "final/test_loss"} <= set(events.Tags()["scalars"])  # the HParams tab's metrics
    session = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert set(session.session_start_info.hparams) == set(params)  # the HParams tab's columns
