"""The classifier is a textbook LightningModule: Lightning steps, clips and schedules; checkpoints load safely."""

import os
from pathlib import Path

import lightning as L
import pytest
import torch

from experiments.data.datamodule import MNISTDataModule
from experiments.errors import CheckpointError, ConfigError
from experiments.lit.classifier import Classifier
from experiments.run.checkpoints import load_classifier, read_checkpoint

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.003}
SGD1 = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1.0}
MLP = {"_target_": "experiments.nn.model.MLP", "hidden_sizes": [32, 32]}
STEP = {
    "scheduler": {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 1, "gamma": 0.5},
    "interval": "epoch",
    "frequency": 1,
}
ONECYCLE = {
    "scheduler": {
        "_target_": "torch.optim.lr_scheduler.OneCycleLR",
        "_partial_": True,
        "max_lr": None,
        "pct_start": 0.3,
    },
    "interval": "step",
    "frequency": 1,
}


def classifier(optimizer: dict | None = None, scheduler: dict | None = None, **model) -> Classifier:
    torch.manual_seed(0)
    return Classifier(
        model={**MLP, **model},
        activation={"_target_": "torch.nn.ReLU"},
        loss={"_target_": "torch.nn.CrossEntropyLoss"},
        optimizer=optimizer or ADAM,
        scheduler=scheduler,
    )


def fit(module: Classifier, **trainer_kwargs) -> L.Trainer:
    # 1280 images in batches of 128: 10 optimizer steps per epoch
    data = MNISTDataModule(batch_size=128, limit_train=1280)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=trainer_kwargs.pop("max_epochs", 2),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        deterministic=True,
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def test_lightning_steps_the_optimizer_once_per_batch():
    module = classifier()
    assert module.automatic_optimization
    trainer = fit(module)
    assert trainer.global_step == 20
    assert fit(classifier(), max_steps=6).global_step == 6
    assert fit(classifier(), max_epochs=1, limit_train_batches=5).global_step == 5


def test_the_trainers_gradient_clipping_bounds_every_update():
    module = classifier(optimizer=SGD1)
    before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    fit(module, max_steps=1, gradient_clip_val=1e-3)
    after = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert 0 < (after - before).norm() <= 1e-3 * (1 + 1e-4)  # lr 1: the update is the clipped gradient
    unclipped = classifier(optimizer=SGD1)
    fit(unclipped, max_steps=1)
    assert (torch.cat([p.detach().flatten() for p in unclipped.parameters()]) - before).norm() > 1e-2


def test_schedules_step_at_their_interval():
    trainer = fit(classifier(scheduler=STEP), max_epochs=3)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.003 * 0.5**3)
    module = classifier(scheduler=ONECYCLE)
    trainer = fit(module, max_epochs=2)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == 20 and scheduler.last_epoch == 20  # the whole run, stepped every batch


def test_epoch_metrics_are_the_means_over_every_example():
    module = classifier()
    losses = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]) * len(batch[1]))

    data = MNISTDataModule(batch_size=300, limit_train=1000)  # batches of 300, 300, 300, 100
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[Watch()],
    )
    trainer.fit(module, datamodule=data)
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(sum(losses) / 1000, rel=1e-5)
    assert 0 < float(trainer.callback_metrics["train/acc"]) <= 1
    assert "train_loss.mean_value" in module.state_dict()  # kept in checkpoints: a resumed epoch keeps its sums


def test_lightning_gives_every_epoch_its_own_order():
    firsts = []

    class First(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                firsts.append(batch[1][:16].clone())

    module = classifier()
    data = MNISTDataModule(batch_size=128, limit_train=1280)
    L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        callbacks=[First()],
    ).fit(module, datamodule=data)
    assert len(firsts) == 2 and not torch.equal(firsts[0], firsts[1])


def test_mixed_precision_trains():
    module = classifier()
    before = module.net.output.weight.detach().clone()
    trainer = fit(module, max_epochs=1, precision="bf16-mixed")
    after = module.net.output.weight.detach()
    assert after.dtype == torch.float32 and torch.isfinite(after).all() and not torch.equal(after, before)
    assert float(trainer.callback_metrics["train/loss_epoch"]) < 2.3  # below chance level, ln 10


def save(module: Classifier, path: Path, **edit) -> Path:
    trainer = fit(module, max_steps=2)
    trainer.save_checkpoint(path)
    if edit:
        checkpoint = torch.load(path, weights_only=True)
        for group, cfg in edit.items():
            checkpoint["hyper_parameters"][group] = cfg
        torch.save(checkpoint, path)
    return path


def test_load_from_checkpoint_with_weights_only_rebuilds_the_model(tmp_path):
    module = classifier(hidden_sizes=[24])
    path = save(module, tmp_path / "c.ckpt")
    loaded = load_classifier(path)
    assert isinstance(loaded, Classifier) and loaded.hparams.model["hidden_sizes"] == [24]
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), loaded.state_dict().values()))


def test_a_checkpoint_written_before_the_package_was_cut_into_layers_still_loads(tmp_path):
    """Its hyperparameters name the project's classes where they lived then (``experiments.model.MLP``)."""
    module = classifier(hidden_sizes=[24])
    old = {
        "model": {**module.hparams.model, "_target_": "experiments.model.MLP"},
        "activation": {"_target_": "experiments.activations.ALReLU", "alpha": 0.01},
        "loss": {"_target_": "experiments.losses.SoftmaxMSELoss"},
    }
    path = save(module, tmp_path / "c.ckpt", **old)
    loaded = load_classifier(path)
    assert loaded.hparams.model["_target_"] == "experiments.nn.model.MLP"
    assert type(loaded.net.hidden[0].activation).__name__ == "ALReLU"
    assert type(loaded.loss_fn).__name__ == "SoftmaxMSELoss"
    assert all(torch.equal(a, b) for a, b in zip(module.net.state_dict().values(), loaded.net.state_dict().values()))
    assert read_checkpoint(path)["hyper_parameters"]["activation"]["_target_"] == "experiments.nn.activations.ALReLU"


def test_a_moved_name_is_no_way_around_the_catalogue(tmp_path):
    path = save(classifier(), tmp_path / "c.ckpt", loss={"_target_": "experiments.losses.os.system"})
    with pytest.raises(
        CheckpointError, match="loss._target_='experiments.losses.os.system' is not a class that conf/loss/ names"
    ):
        load_classifier(path)


MARKER = "experiments-catalogue-payload"


@pytest.mark.parametrize(
    "group, payload",
    [
        ("loss", {"_target_": "builtins.open", "_args_": ["{marker}", "w"]}),
        ("activation", {"_target_": "pathlib.Path.touch", "_args_": ["{marker}"]}),
        ("optimizer", {"_target_": "os.system", "_args_": ["touch {marker}"], "_partial_": True}),
        ("model", {"_target_": "subprocess.run", "_args_": [["touch", "{marker}"]]}),
        (
            "loss",
            {
                "_target_": "torch.nn.CrossEntropyLoss",
                "weight": {"_target_": "builtins.open", "_args_": ["{marker}", "w"]},
            },
        ),
        ("activation", {"_target_": "torch.nn.Hardtanh"}),  # a torch module, but not one that conf/activation/ names
        ("scheduler", {"scheduler": {"_target_": "shutil.copyfile", "_args_": ["/etc/hostname", "{marker}"]}}),
        ("optimizer", {"_target_": "os.symlink", "_args_": ["/etc/hostname", "{marker}"]}),
    ],
)
def test_a_checkpoint_naming_code_outside_the_catalogue_is_refused_before_anything_runs(tmp_path, group, payload):
    marker = tmp_path / MARKER
    payload = eval(repr(payload).replace("{marker}", str(marker)))
    path = save(classifier(), tmp_path / "c.ckpt", **{group: payload})
    with pytest.raises(CheckpointError, match=f"{path}: {group}"):
        load_classifier(path)
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == ["c.ckpt"]


def test_another_activation_of_the_catalogue_loads(tmp_path):
    path = save(classifier(), tmp_path / "c.ckpt", activation={"_target_": "torch.nn.Sigmoid"})
    assert isinstance(load_classifier(path).net.hidden[0].activation, torch.nn.Sigmoid)


def test_the_classifier_refuses_a_target_outside_the_catalogue_in_a_config_too():
    with pytest.raises(ConfigError, match=r"loss._target_='builtins.print' is not a class that conf/loss/ names"):
        Classifier(
            model=MLP, activation={"_target_": "torch.nn.ReLU"}, loss={"_target_": "builtins.print"}, optimizer=ADAM
        )


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "not a checkpoint, or a truncated one"),
        (b"root:x:0:0:root:/root:/bin/bash\n", "not a checkpoint, or a truncated one"),
    ],
)
def test_files_that_are_not_checkpoints_are_named(tmp_path, content, words):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=words):
        read_checkpoint(path)


def test_a_checkpoint_whose_weights_do_not_fit_its_hyperparameters_is_named(tmp_path):
    path = save(classifier(), tmp_path / "c.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model"]["hidden_sizes"] = [16, 16]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_classifier(path)
