"""``run/checkpoints.py``: what a resume refuses, decided on the settings alone (end to end: test_hostile_inputs)."""

import pytest
from omegaconf import OmegaConf

from conftest import compose_config
from experiments.run.checkpoints import resume_mismatches

GROUPS = ("model", "activation", "optimizer", "loss", "data")


def settings(*overrides: str) -> dict:
    cfg = compose_config(list(overrides))
    return {group: OmegaConf.to_container(cfg[group], resolve=True) for group in GROUPS}


def checkpoint_of(trained: dict) -> dict:
    """A checkpoint's settings as a run saves them: its groups' hyperparameters and the data module's."""
    return {"hyper_parameters": trained, "datamodule_hyper_parameters": {"normalize": trained["data"]["normalize"]}}


@pytest.mark.parametrize(
    "override, named",
    [
        ("model.hidden_sizes=[32]", "model.hidden_sizes"),
        ("activation=prelu", "activation._target_"),
        ("optimizer=sgd", "optimizer:"),
        ("loss=mse", "loss:"),  # weights trained to another objective: the optimizer's state means another thing
        ("data.normalize=unit", "data.normalize"),
    ],
)
def test_a_resume_is_refused_for_each_setting_that_changes_what_the_weights_mean(override, named):
    found = resume_mismatches(checkpoint_of(settings()), settings(override))
    group = named.split(".")[0].rstrip(":")
    assert any(f.startswith(named) for f in found) and all(f.startswith(group) for f in found), found


@pytest.mark.parametrize("override", ["model.dropout=0.2", "model.init=xavier_uniform", "seed=3", "optimizer.lr=0.5"])
def test_what_leaves_the_weights_and_their_optimizer_state_fit_resumes(override):
    assert resume_mismatches(checkpoint_of(settings()), settings(override)) == []


@pytest.mark.parametrize("trained, resumed", [((), ("activation=prelu",)), (("activation=prelu",), ())])
def test_a_key_only_one_side_has_is_a_difference_too(trained, resumed):
    found = resume_mismatches(checkpoint_of(settings(*trained)), settings(*resumed))
    assert any(f.startswith("activation.num_parameters") for f in found), found
