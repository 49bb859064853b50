"""``run/checkpoints.py``: what a resume refuses, decided on the settings and on a fitted checkpoint's file
(end to end, through train.py: test_hostile_inputs)."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config, write_idx_set
from experiments.errors import ExperimentError
from experiments.lit.classifier import Classifier
from experiments.run.checkpoints import (
    CheckpointError,
    check_settings,
    model_and_data,
    read_resumable,
    refuse_unfit,
    resume_mismatches,
    unfit_tensors,
)

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


def its_settings(checkpoint: dict) -> dict:
    """The settings of the run that saved ``checkpoint``, as a run that resumes it passes its own."""
    saved = checkpoint["hyper_parameters"]
    return {g: saved[g] for g in ("model", "activation", "optimizer", "loss")} | {
        "data": {"normalize": checkpoint["datamodule_hyper_parameters"]["normalize"]}
    }


def edited(good: Path, tmp_path: Path, edit) -> Path:
    """A copy of the checkpoint ``good`` changed by ``edit`` (in place, or by what it returns), in ``tmp_path``."""
    checkpoint = torch.load(good, weights_only=True)
    out = edit(checkpoint)
    path = tmp_path / "hostile.ckpt"
    torch.save(checkpoint if out is None else out, path)
    return path


def test_a_checkpoint_that_fits_the_run_is_read_whole(good_checkpoint):
    saved = torch.load(good_checkpoint, weights_only=True)
    checkpoint = read_resumable(good_checkpoint, its_settings(saved))
    assert checkpoint["optimizer_states"] and checkpoint["loops"] == saved["loops"]
    assert checkpoint["state_dict"].keys() == saved["state_dict"].keys()


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.__delitem__("optimizer_states"),
        lambda c: c.update(optimizer_states=[]),
        lambda c: c.__delitem__("loops"),
    ],
    ids=["no optimizer state", "empty optimizer state", "no loops"],
)
def test_weights_without_their_training_state_are_not_resumed(edit, good_checkpoint, tmp_path):
    path = edited(good_checkpoint, tmp_path, edit)
    checkpoint = torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match=rf"^ckpt_path={path} holds weights only .*without ckpt_path$"):
        read_resumable(path, its_settings(checkpoint))


def test_a_run_with_other_settings_is_refused_with_every_difference(good_checkpoint):
    checkpoint = torch.load(good_checkpoint, weights_only=True)
    settings = its_settings(checkpoint) | {
        "activation": {"_target_": "torch.nn.PReLU", "num_parameters": 1},
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
    }
    found = resume_mismatches(checkpoint, settings)
    assert len(found) == 3  # the activation's class and its argument, the optimizer
    with pytest.raises(CheckpointError) as caught:
        read_resumable(good_checkpoint, settings)
    assert str(caught.value) == (
        f"ckpt_path={good_checkpoint} was made for another network, optimizer or input scaling than this run's "
        f"({'; '.join(found)}): resume with the overrides it was trained with"
    )


def test_an_optimizer_state_that_does_not_fit_the_weights_is_refused(good_checkpoint, tmp_path):
    def grow(checkpoint: dict) -> None:
        state = checkpoint["optimizer_states"][0]["state"][0]
        state["exp_avg"] = torch.zeros(state["exp_avg"].shape[0] + 1, *state["exp_avg"].shape[1:])

    path = edited(good_checkpoint, tmp_path, grow)
    checkpoint = torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match=rf"^{path}: its optimizer state does not fit .*exp_avg of parameter 0"):
        read_resumable(path, its_settings(checkpoint))


@pytest.mark.parametrize("keep", [False, True])
def test_eval_scales_the_pixels_as_the_checkpoint_trained_unless_the_command_line_said_otherwise(
    keep, good_checkpoint, tmp_path
):
    path = edited(good_checkpoint, tmp_path, lambda c: c["datamodule_hyper_parameters"].update(normalize="unit"))
    checkpoint = torch.load(path, weights_only=True)
    data = compose_config(["data.normalize=standardize"]).data
    module, datamodule = model_and_data(path, data, keep_normalize=keep)
    assert datamodule.normalize == ("standardize" if keep else "unit")
    for name, value in module.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][name]), name


def test_a_data_set_of_other_sizes_than_the_checkpoint_s_is_refused_naming_both(good_checkpoint, tmp_path):
    root = write_idx_set(tmp_path / "own", image=(5, 7), classes=3)
    trained_on = str(tmp_path / "mnist")  # where it was trained, as its file says
    path = edited(good_checkpoint, tmp_path, lambda c: c["datamodule_hyper_parameters"].update(root=trained_on))
    with pytest.raises(CheckpointError) as caught:
        model_and_data(path, compose_config([f"data.root={root}"]).data)
    assert str(caught.value) == (
        f"{path} was trained on 784 inputs and 10 classes (data.root={trained_on!r}), and "
        f"data.root={str(root)!r} holds 35-pixel images of 3 classes: pass the data set it was trained on, "
        f"data.root=<its directory>"
    )


def test_every_tensor_that_does_not_fit_is_named_and_a_refusal_counts_what_it_does_not_list(good_checkpoint):
    checkpoint = torch.load(good_checkpoint, weights_only=True)
    network = Classifier(**checkpoint["hyper_parameters"])
    weights = checkpoint["state_dict"]
    weights.pop("net.output.bias")
    weights["net.extra.weight"] = torch.zeros(1)
    weights["net.output.weight"] = [0.0]
    states = checkpoint["optimizer_states"][0]["state"]
    states[len(states)] = {}  # one past the network's last parameter
    states["1"] = {}  # not an index
    found = unfit_tensors(checkpoint, network, optimizer=True)
    assert found == [
        "net.output.bias is missing",
        "net.extra.weight is not a weight of this network",
        "net.output.weight is a list, not a tensor",
        f"optimizer state 0 is kept for parameter {len(states) - 2}; the network has {len(states) - 2}",
        "optimizer state 0 is kept for parameter '1'; the network has 4",
    ]
    assert unfit_tensors(checkpoint, network) == found[:3]  # the optimizer's state only where a resume uses it
    assert unfit_tensors({"state_dict": None}, network) == ["state_dict is a NoneType, not a mapping of tensors"]
    with pytest.raises(CheckpointError, match=r"^f\.ckpt: its weights do not fit .* and 2 more\); the file was"):
        refuse_unfit("f.ckpt", checkpoint, optimizer=True)


def settings_of(good_checkpoint) -> tuple[dict, dict]:
    checkpoint = torch.load(good_checkpoint, weights_only=True)
    return checkpoint["hyper_parameters"], checkpoint["datamodule_hyper_parameters"]


DAMAGED = "; the file was damaged or edited: restore it or use another one"


@pytest.mark.parametrize(
    "edit, said",
    [
        (lambda hp, data: ("x", data), "hyper_parameters is a str, not a mapping"),
        (lambda hp, data: (hp, ["unit"]), "datamodule_hyper_parameters is a list, not a mapping"),
        (lambda hp, data: ({**hp, "scheduler": "step"}, data), "hyper_parameters.scheduler is 'step', not a mapping"),
        (
            lambda hp, data: ({**hp, "input_size": 0}, data),
            "hyper_parameters.input_size is 0, not an integer in [1, 16777216]",
        ),
        (
            lambda hp, data: ({**hp, "num_classes": True}, data),
            "hyper_parameters.num_classes is True, not an integer in [1, 1048576]",
        ),
        (lambda hp, data: ({**hp, "num_classes": (1 << 20) + 1}, data), "hyper_parameters.num_classes is 1048577, not"),
        (lambda hp, data: (hp, {**data, "normalize": "loud"}), "datamodule_hyper_parameters.normalize="),
        (
            lambda hp, data: ({**hp, "model": {**hp["model"], "hidden_sizes": [0]}}, data),
            "hyper_parameters.model.hidden_sizes=",
        ),
    ],
    ids=[
        "settings not a mapping",
        "data not a mapping",
        "scheduler not a mapping",
        "no inputs",
        "classes a boolean",
        "too many classes",
        "an unknown scaling",
        "a layer of no units",
    ],
)
def test_a_checkpoint_s_settings_out_of_their_rules_are_one_line_naming_the_key(edit, said, good_checkpoint):
    hparams, data = edit(*settings_of(good_checkpoint))
    with pytest.raises(ExperimentError) as caught:
        check_settings("f.ckpt", hparams, data)
    assert str(caught.value).startswith(f"f.ckpt: {said}") and str(caught.value).endswith(DAMAGED), str(caught.value)


def test_the_settings_a_run_saved_pass_and_a_scheduler_or_no_data_settings_are_read_too(good_checkpoint):
    hparams, data = settings_of(good_checkpoint)
    check_settings("f.ckpt", hparams, data)
    check_settings("f.ckpt", hparams, None)  # a checkpoint saved without a data module
    step = {"scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 1}}
    check_settings("f.ckpt", {**hparams, "scheduler": step}, data)
    with pytest.raises(CheckpointError, match="scheduler"):  # the scheduler's class is held to the catalogue too
        check_settings("f.ckpt", {**hparams, "scheduler": {"scheduler": {"_target_": "os.system"}}}, data)


def test_a_class_from_outside_the_catalogue_names_the_search_path_its_run_was_made_with(good_checkpoint, tmp_path):
    hparams, data = settings_of(good_checkpoint)
    path = tmp_path / "run" / "checkpoints" / "best.ckpt"
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / ".hydra" / "hydra.yaml").write_text("hydra:\n  searchpath: [file:///own/conf, 5]\n")
    foreign = {**hparams, "activation": {"_target_": "own_parts.Scaled"}}
    with pytest.raises(CheckpointError) as caught:
        check_settings(path, foreign, data)
    assert str(caught.value).endswith("; its run was made with 'hydra.searchpath=[file:///own/conf]'"), str(
        caught.value
    )
    (tmp_path / "run" / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")  # no search path: none named
    with pytest.raises(CheckpointError) as caught:
        check_settings(path, foreign, data)
    assert "its run was made with" not in str(caught.value)
