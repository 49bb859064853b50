"""The classifier steps its own optimizer: grouped calls must train exactly like one batch per call."""

import lightning as L
import pytest
import torch

from experiments.classifier import Classifier
from experiments.data import MNISTDataModule

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.003}
SCHEDULERS = {
    "none": None,
    "onecycle": {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "max_lr": None, "pct_start": 0.3, "interval": "step"},
    "step": {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 1, "gamma": 0.5, "interval": "epoch"},
}


def classifier(scheduler: str = "none", optimizer: dict | None = None, **kwargs) -> Classifier:
    torch.manual_seed(0)
    return Classifier(model={"hidden_sizes": [32, 32]}, activation={"_target_": "torch.nn.ReLU"},
                      loss={"_target_": "torch.nn.CrossEntropyLoss"}, optimizer=optimizer or ADAM,
                      scheduler=SCHEDULERS[scheduler], **kwargs)


def fit(module: Classifier, steps_per_execution: int, **trainer_kwargs) -> L.Trainer:
    # 1280 images in batches of 128: 10 optimizer steps per epoch
    data = MNISTDataModule(batch_size=128, limit_train=1280, steps_per_execution=steps_per_execution,
                           limit_train_batches=trainer_kwargs.pop("limit_train_batches", None))
    trainer = L.Trainer(accelerator="cpu", max_epochs=trainer_kwargs.pop("max_epochs", 2), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, deterministic=True, **trainer_kwargs)
    trainer.fit(module, datamodule=data)
    return trainer


class Automatic(Classifier):
    """The textbook LightningModule: Lightning steps, clips and schedules (automatic optimization)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = True

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.net(x)
        loss = self.loss_fn(out, y)
        self.train_acc.update(out, y)
        self.train_loss.update(loss, len(y))
        return loss


@pytest.mark.parametrize("scheduler", ["none", "onecycle", "step"])
def test_grouped_calls_take_exactly_the_steps_of_lightnings_automatic_optimization(scheduler):
    torch.manual_seed(0)
    reference = Automatic(model={"hidden_sizes": [32, 32]}, activation={"_target_": "torch.nn.ReLU"},
                          loss={"_target_": "torch.nn.CrossEntropyLoss"}, optimizer=ADAM,
                          scheduler=SCHEDULERS[scheduler])
    grouped = classifier(scheduler, gradient_clip_val=0.5)
    a, b = fit(reference, 1, gradient_clip_val=0.5), fit(grouped, 4)  # calls of 4, 4 and 2 steps per epoch
    assert a.global_step == b.global_step == 20
    for (name, p), q in zip(reference.state_dict().items(), grouped.state_dict().values()):
        assert torch.equal(p, q), name
    assert a.optimizers[0].param_groups[0]["lr"] == b.optimizers[0].param_groups[0]["lr"]
    if scheduler != "none":  # the schedule did move the learning rate
        assert b.optimizers[0].param_groups[0]["lr"] != ADAM["lr"]
    for key in ("train/loss_epoch", "train/acc"):  # the epoch means, per example (summed in another order)
        assert float(a.callback_metrics[key]) == pytest.approx(float(b.callback_metrics[key]), rel=1e-6), key


def test_max_steps_and_limit_count_optimizer_steps_inside_a_call():
    assert fit(classifier(), 4, max_steps=6).global_step == 6
    assert fit(classifier(), 4, max_epochs=1, limit_train_batches=5).global_step == 5


def test_gradient_clipping_bounds_every_update():
    sgd = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 1.0}
    module = classifier(optimizer=sgd, gradient_clip_val=1e-3)
    before = torch.cat([p.detach().flatten().clone() for p in module.parameters()])
    fit(module, 4, max_steps=1)
    after = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert 0 < (after - before).norm() <= 1e-3 * (1 + 1e-4)  # lr 1: the update is the clipped gradient


def test_mixed_precision_trains_through_the_grouped_steps():
    module = classifier()
    before = module.net.output.weight.detach().clone()
    trainer = fit(module, 4, max_epochs=1, precision="bf16-mixed")  # autocast around the whole call
    assert trainer.global_step == 10
    after = module.net.output.weight.detach()
    assert after.dtype == torch.float32 and torch.isfinite(after).all() and not torch.equal(after, before)
    assert float(trainer.callback_metrics["train/loss_epoch"]) < 2.3  # below chance level, ln 10
