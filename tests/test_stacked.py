"""The stacked model: each member computes, learns and sees data exactly as its own run would."""

from functools import partial
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.utilities import grad_norm

from experiments.data.datamodule import TensorBatches
from experiments.data.normalization import PixelStats, normalize
from experiments.fused.data import MembersData, StackedBatches
from experiments.fused.stacked import FusedClassifier
from experiments.lit.classifier import Classifier
from experiments.nn.optimizers import build_optimizer

MLP = {"_target_": "experiments.nn.model.MLP", "hidden_sizes": [16, 12]}
CE = {"_target_": "torch.nn.CrossEntropyLoss"}
ACTS = {
    "relu": {"_target_": "torch.nn.ReLU"},
    "tanh": {"_target_": "torch.nn.Tanh"},
    "alrelu": {"_target_": "experiments.nn.activations.ALReLU", "alpha": 0.01},
    "prelu": {"_target_": "torch.nn.PReLU", "num_parameters": "per_unit", "init": 0.25},
}


def adam(lr: float, **extra) -> dict:
    return {"_target_": "torch.optim.Adam", "_partial_": True, "lr": lr, **extra}


def member(act: str, optimizer: dict, seed: int, **model) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(
        model={**MLP, **model}, activation=ACTS[act], loss=CE, optimizer=optimizer, input_size=20, num_classes=5
    )


def group(specs: list[tuple[str, dict, int]]) -> tuple[FusedClassifier, list[Classifier]]:
    """The fused model of ``specs`` (consecutive equal optimizers share a group), and fresh copies of
    each member built the same way, to train alone."""
    members, alone = [member(*s) for s in specs], [member(*s) for s in specs]
    ranges, start = [], 0
    for i in range(1, len(specs) + 1):
        if i == len(specs) or specs[i][1] != specs[start][1]:
            ranges.append(range(start, i))
            start = i
    return FusedClassifier(members, ranges), alone


SPECS = [
    ("relu", adam(1e-2), 0),
    ("relu", adam(1e-2), 1),
    ("tanh", adam(1e-2), 2),
    ("prelu", adam(1e-3), 3),
    ("alrelu", adam(1e-3), 4),
    ("relu", adam(3e-2, weight_decay=0.1), 5),
]


def test_the_stacked_forward_is_each_members_own_forward():
    fused, alone = group(SPECS)
    shared = torch.randn(7, 20)
    own = torch.randn(len(SPECS), 7, 20)
    out_shared, out_own = fused(shared), fused(own)
    for k, module in enumerate(alone):
        torch.testing.assert_close(out_shared[k], module(shared), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out_own[k], module(own[k]), rtol=1e-5, atol=1e-6)


def test_an_output_activation_and_an_activation_with_parameters_are_each_members_own():
    specs = [("prelu", adam(1e-2), 0), ("prelu", adam(1e-2), 1)]  # equal configs: the same call if shared
    built = [member(*s, output_activation="log_softmax") for s in specs]
    alone = [member(*s, output_activation="log_softmax") for s in specs]
    with torch.no_grad():  # trained apart, their slopes differ
        for k, slope in enumerate((0.1, 0.7)):
            built[k].net.hidden[0].activation.weight.fill_(slope)
            alone[k].net.hidden[0].activation.weight.fill_(slope)
    x = torch.randn(7, 20)
    out = FusedClassifier(built, [range(2)])(x)
    for k, module in enumerate(alone):
        torch.testing.assert_close(out[k], module(x), rtol=1e-5, atol=1e-6)


def test_each_members_epoch_loss_and_accuracy_are_those_of_its_own_run():
    fused, alone = group(SPECS[:3])  # 3 members, batches of 8 and 5: no size stands for another
    torch.manual_seed(4)
    stages = {
        "train": [(torch.randn(3, b, 20), torch.randint(0, 5, (3, b))) for b in (8, 5)],  # each its own batch
        "val": [(torch.randn(b, 20), torch.randint(0, 5, (b,))) for b in (8, 5)],  # one batch for all
    }
    for stage, batches in stages.items():
        step = fused.training_step if stage == "train" else fused.validation_step
        for i, batch in enumerate(batches):
            step(batch, i)
            if stage == "train":  # what a callback reads of the last step
                own = [m.loss_fn(m(batch[0][k]), batch[1][k]) for k, m in enumerate(alone)]
                torch.testing.assert_close(fused.last_losses, torch.stack(own).detach(), rtol=1e-5, atol=1e-6)
        losses, accuracies = fused.epoch_means(stage)
        for k, module in enumerate(alone):
            xs = [x[k] if stage == "train" else x for x, _ in batches]
            ys = [y[k] if stage == "train" else y for _, y in batches]
            with torch.no_grad():
                outs = [module(x) for x in xs]
                loss = sum(module.loss_fn(o, y) * len(y) for o, y in zip(outs, ys)) / 13
                correct = sum(int((o.argmax(-1) == y).sum()) for o, y in zip(outs, ys))
            assert losses[k] == pytest.approx(float(loss), rel=1e-5), (stage, k)
            assert accuracies[k] == correct / 13, (stage, k)


def test_a_schedule_is_built_for_the_members_optimizer_as_their_own_run_builds_it():
    onecycle = {
        "scheduler": {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True, "pct_start": 0.3},
        "interval": "step",
        "frequency": 1,
    }
    members = [member("relu", adam(1e-2), k) for k in range(2)]
    for m in members:
        m.hparams.scheduler = onecycle
    own = Classifier(**members[0].hparams)
    fused = FusedClassifier(members, [range(2)])
    trainer = SimpleNamespace(  # what run_length reads of a trainer: 10 batches an epoch, 2 epochs
        datamodule=SimpleNamespace(train_dataloader=lambda: range(10)),
        limit_train_batches=None,
        max_epochs=2,
        max_steps=-1,
    )
    fused.trainer = own.trainer = trainer
    built, expected = fused.configure_optimizers(), own.configure_optimizers()
    assert built.keys() == expected.keys() == {"optimizer", "lr_scheduler"}
    assert built["lr_scheduler"]["interval"] == "step"
    schedulers = built["lr_scheduler"]["scheduler"], expected["lr_scheduler"]["scheduler"]
    assert type(schedulers[0]) is type(schedulers[1]) and schedulers[0].total_steps == schedulers[1].total_steps == 20
    for scheduler in schedulers:
        scheduler.optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in built["optimizer"].param_groups] == [expected["optimizer"].param_groups[0]["lr"]]


@pytest.mark.parametrize(
    "optimizer",
    [
        [adam(1e-2), adam(1e-2), adam(1e-3, betas=(0.8, 0.9)), adam(3e-2, weight_decay=0.1)],
        [
            {"_target_": "torch.optim.SGD", "_partial_": True, "lr": lr, "momentum": 0.9, "nesterov": nest}
            for lr, nest in ((0.1, True), (0.1, True), (0.05, False), (0.2, True))
        ],
        [
            {"_target_": "experiments.nn.optimizers.LectureMomentum", "_partial_": True, "lr": lr, "momentum": 0.9}
            for lr in (0.1, 0.05, 0.05, 0.02)
        ],
        [{"_target_": "torch.optim.RMSprop", "_partial_": True, "lr": lr} for lr in (1e-3, 1e-3, 1e-2, 3e-3)],
    ],
    ids=["adam", "nesterov", "lecture_momentum", "rmsprop"],
)
def test_each_members_updates_are_those_of_its_own_optimizer(optimizer):
    specs = [
        (act, opt, seed) for (act, seed), opt in zip([("relu", 0), ("prelu", 1), ("tanh", 2), ("relu", 3)], optimizer)
    ]
    fused, alone = group(specs)
    fused_opt = fused.configure_optimizers()
    own_opts = [build_optimizer(m.hparams.optimizer, m.parameters()) for m in alone]
    torch.manual_seed(9)
    for _ in range(5):
        x, y = torch.randn(len(specs), 8, 20), torch.randint(0, 5, (len(specs), 8))
        fused_opt.zero_grad()
        fused.training_step((x, y), 0).backward()
        fused_opt.step()
        for k, (module, opt) in enumerate(zip(alone, own_opts)):
            opt.zero_grad()
            module.loss_fn(module(x[k]), y[k]).backward()
            opt.step()
    for k, module in enumerate(alone):
        mine = fused.member(k).net.state_dict()
        for name, value in module.net.state_dict().items():
            torch.testing.assert_close(mine[name], value, rtol=1e-4, atol=1e-6, msg=f"member {k} {name}")


@pytest.mark.parametrize("k", [0, 1, 2])  # members 0 and 1 share the first optimizer group, 2 has its own
def test_a_frozen_member_stays_put_and_the_others_train_as_without_it(k):
    specs = [("relu", adam(1e-2), 0), ("prelu", adam(1e-2), 1), ("relu", adam(1e-3), 2)]
    others = [j for j in range(3) if j != k]
    fused, _ = group(specs)
    without, _ = group([specs[j] for j in others])
    opt, opt_without = fused.configure_optimizers(), without.configure_optimizers()
    assert len(opt.param_groups) == 2
    fused.freeze(k)
    frozen = {n: t.clone() for n, t in fused.member(k).net.state_dict().items()}
    torch.manual_seed(3)
    for _ in range(4):
        x, y = torch.randn(3, 8, 20), torch.randint(0, 5, (3, 8))
        x[k] = float("nan")  # the frozen member's loss is NaN: it must reach no other member
        for model, optim, xb, yb in ((fused, opt, x, y), (without, opt_without, x[others], y[others])):
            optim.zero_grad()
            loss = model.training_step((xb, yb), 0)
            assert torch.isfinite(loss)
            loss.backward()
            optim.step()
            model.on_train_batch_end(None, None, 0)
    for name, value in fused.member(k).net.state_dict().items():
        assert torch.equal(value, frozen[name]), name
    for j, member in enumerate(others):
        for name, value in fused.member(member).net.state_dict().items():
            torch.testing.assert_close(value, without.member(j).net.state_dict()[name], rtol=1e-5, atol=1e-7)


def test_gradient_norms_are_lightnings_for_each_members_own_net():
    fused, alone = group(SPECS)
    x, y = torch.randn(len(SPECS), 8, 20), torch.randint(0, 5, (len(SPECS), 8))
    fused.training_step((x, y), 0).backward()
    fused.bind_grads()  # what the fused launcher does before the gradient-norm monitor reads a member
    for k, module in enumerate(alone):
        module.loss_fn(module(x[k]), y[k]).backward()
        norms = grad_norm(module.net, norm_type=2)
        mine = grad_norm(fused.member(k).net, norm_type=2)
        assert set(mine) == set(norms) and {
            "grad_2.0_norm/hidden.0.linear.weight",
            "grad_2.0_norm/hidden.1.linear.weight",
            "grad_2.0_norm/output.weight",
            "grad_2.0_norm_total",
        } <= set(norms)
        for name, value in norms.items():
            torch.testing.assert_close(mine[name], value, rtol=1e-3, atol=1e-6, msg=f"member {k} {name}")


def test_before_any_backward_pass_a_members_gradients_are_zeros():
    fused, _ = group(SPECS[:2])
    fused.bind_grads()  # the gradient-norm monitor may read a member before its first step
    for k in range(2):
        grads = [p.grad for p in fused.member(k).net.parameters() if p.grad is not None]
        assert len(grads) == 6 and all(not g.any() for g in grads)


def test_member_weights_round_trip_through_a_state_dict():
    fused, _ = group(SPECS)
    saved = {n: t.clone() for n, t in fused.member(2).state_dict().items()}
    with torch.no_grad():
        for p in fused.stacks:
            p.add_(1.0)
    assert not torch.equal(fused.member(2).net.output.weight, saved["net.output.weight"])
    fused.member(2).load_state_dict(saved)  # through the member's views, into the stacks
    assert torch.equal(fused.member(2).net.output.weight, saved["net.output.weight"])
    assert torch.equal(fused.stack(0, 2)[0][2], saved["net.output.weight"])  # group 0 holds members 0-2


def test_each_member_gets_the_batches_of_its_own_seed_every_epoch():
    x = torch.randint(0, 256, (103, 6), dtype=torch.uint8)
    y = torch.arange(103)
    seeds = [0, 7, 7, 3]
    scale = partial(normalize, mode="standardize", stats=PixelStats(0.5, 0.25))
    stacked = StackedBatches(scale(x), y, 10, seeds)
    for epoch in (0, 1):
        stacked.sampler.set_epoch(epoch)
        own = []
        for seed in seeds:
            batches = TensorBatches(x, y, 10, shuffle=True, seed=seed, transform=scale)
            batches.sampler.set_epoch(epoch)
            own.append(list(batches))
        got = list(stacked)
        assert len(got) == len(stacked) == len(own[0]) == 11  # the last batch is the 3 left over
        for i, (xb, yb) in enumerate(got):
            for k in range(len(seeds)):
                assert torch.equal(yb[k], own[k][i][1]) and torch.equal(xb[k], own[k][i][0])
    first_epoch = torch.cat([yb[0] for _, yb in stacked]).sort().values
    assert torch.equal(first_epoch, y)  # every row once


def test_members_data_normalises_the_training_images_once_as_the_loaders_do():
    data = MembersData([1, 2], limit_train=300, batch_size=100, normalize="unit")
    data.prepare_data()
    xb, yb = next(iter(data.train_dataloader()))
    assert xb.shape == (2, 100, 784) and yb.shape == (2, 100)
    assert float(xb.min()) >= 0.0 and float(xb.max()) <= 1.0
    own = first_batch_of_own_run(data, seed=2)
    assert torch.equal(xb[1], own[0]) and torch.equal(yb[1], own[1])


def first_batch_of_own_run(data: MembersData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch that a separate run with this ``shuffle_seed`` would train on."""
    from experiments.data.datamodule import MNISTDataModule

    own = MNISTDataModule(limit_train=300, batch_size=100, normalize="unit", shuffle_seed=seed)
    own.prepare_data()
    return next(iter(own.train_dataloader()))


def test_members_share_an_activation_call_only_where_their_activation_configs_are_equal(monkeypatch):
    """A user's activation with a setting and no ``extra_repr``: two settings have the same ``repr``; sharing
    by ``repr`` trained both with the first one's setting. Equal configs share one call, unequal ones do not."""
    from experiments.config import catalogue

    allowed = catalogue.targets  # the user's class, as a search path of their own would name it
    monkeypatch.setattr(catalogue, "targets", lambda g: allowed(g) | {"test_traits.Scaled"})
    scales = (0.5, 0.5, 3.0)
    members = []
    for seed, scale in enumerate(scales):
        torch.manual_seed(seed)
        act = {"_target_": "test_traits.Scaled", "scale": scale}
        members.append(
            Classifier(model=MLP, activation=act, loss=CE, optimizer=adam(1e-2), input_size=20, num_classes=5)
        )
    assert repr(members[0].net.hidden[0].activation) == repr(members[2].net.hidden[0].activation)
    fused = FusedClassifier(members, [range(3)])
    assert [(start, stop) for start, stop, _ in fused.runs[0]] == [(0, 2), (2, 3)]
    x = torch.randn(7, 20)
    out = fused(x)
    for k, module in enumerate(members):
        torch.testing.assert_close(out[k], module(x), rtol=1e-5, atol=1e-6)
