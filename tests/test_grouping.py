"""Which jobs fuse, how groups are split, and what a fused member records."""

import json
from functools import cache

import lightning as L
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import compose_config
from experiments.fused.grouping import fusion_key, fusion_problem, hooks_used, member_bytes, split_group
from experiments.fused.member_runs import CHECKPOINT_HOOKS, FORWARDED_HOOKS, MemberRuns
from experiments.lit.callbacks import DivergenceGuard, EpochHistory
from experiments.lit.diagnostics import DeadUnitMonitor, GradNormMonitor, HistogramMonitor
from experiments.run.hparams import plain


@cache
def _composed(groups: tuple[str, ...]) -> str:
    return json.dumps(plain(compose_config(list(groups))))


def task(overrides: list[str]) -> dict:
    """The resolved config ``train.py`` would compose: group choices composed by Hydra (cached), values
    set on the result (composing once per value would take a second per ten cases)."""
    groups = tuple(o for o in overrides if "." not in o.split("=", 1)[0] and not o.startswith("+"))
    cfg = json.loads(_composed(groups))
    for override in overrides:
        key, value = override.lstrip("+").split("=", 1)
        if "." in key:
            *path, last = key.split(".")
            node = cfg
            for part in path:
                node = node.setdefault(part, {})
            node[last] = yaml.safe_load(value)
    return cfg


def test_the_default_job_fuses():
    assert fusion_problem(task([])) is None
    assert fusion_problem(task(["experiment=dying_relu"])) is None


@pytest.mark.parametrize(
    "override, reason",
    [
        ("model.dropout=0.1", "model.dropout"),
        ("model.batch_norm=true", "batch_norm"),
        ("activation=rrelu", "activation torch.nn.RReLU draws random numbers (two calls on one input differ)"),
        ("optimizer._target_=torch.optim.LBFGS", "LBFGS"),
        ("trainer.gradient_clip_val=1.0", "gradient_clip_val"),
        ("trainer=ddp", "more than one device"),
        ("trainer.devices=2", "more than one device"),
        ("+trainer.accumulate_grad_batches=2", "accumulate_grad_batches"),
        ("callbacks=early_stopping", "callbacks.early_stopping"),
        ("callbacks=step_checkpoint", "callbacks.step_checkpoint"),
        ("callbacks.model_checkpoint.save_top_k=3", "callbacks.model_checkpoint"),
        ("callbacks.model_checkpoint.monitor=train/loss", "callbacks.model_checkpoint"),
        ("callbacks.last_checkpoint.every_n_epochs=2", "callbacks.last_checkpoint"),
        ("+diagnostics.collapse._target_=experiments.lit.diagnostics.LinearCollapseCheck", "diagnostics.collapse"),
        ("ckpt_path=/some/last.ckpt", "ckpt_path"),
        ("compile=true", "compile"),
        ("activation=leaky_relu +activation.inplace=true", "activation.inplace"),
    ],
)
def test_what_cannot_fuse_says_why(override, reason):
    problem = fusion_problem(task(override.split()))
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "override",
    [
        "seed=3",
        "activation=tanh",
        "activation=prelu",
        "model.init=kaiming_normal",
        "model.bias_init=0",
        "optimizer.lr=0.1",
        "optimizer.betas=[0.8,0.9]",
        "optimizer.weight_decay=0.01",
        "logger=csv",
        "data.shuffle_seed=5",
        "run_name=mine",
        "tags=[baseline]",
    ],
)
def test_members_may_differ_in_seed_activation_init_and_optimizer_settings(override):
    assert fusion_key(task([override])) == fusion_key(task([]))


@pytest.mark.parametrize(
    "override",
    [
        "model.hidden_sizes=[32,32]",
        "data.batch_size=64",
        "optimizer=sgd",
        "trainer.max_epochs=3",
        "loss=mse",
        "data.normalize=unit",
        "scheduler=step",
        "deterministic=true",
        "diagnostics=none",
        "data.val_size=1000",
        "model.output_activation=log_softmax",
        "data.split_seed=1",
    ],
)
def test_what_shapes_the_loop_keeps_jobs_apart(override):
    assert fusion_key(task([override])) != fusion_key(task([]))


def test_groups_split_at_the_member_limit_and_the_memory_budget():
    assert split_group(10, 100, 10_000, 64) == [range(0, 10)]
    assert split_group(10, 100, 10_000, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert split_group(10, 100, 350, 64) == [range(0, 3), range(3, 6), range(6, 9), range(9, 10)]
    assert split_group(3, 100, 10, 64) == [range(0, 1), range(1, 2), range(2, 3)]  # one member always trains


def test_a_members_memory_grows_with_its_width_and_batch():
    def size(overrides: list[str]) -> int:
        return member_bytes(OmegaConf.create(task(overrides)))

    base = size([])
    assert size(["model.hidden_sizes=[256,256,256]"]) > 1.5 * base
    assert size(["data.batch_size=1024"]) > 1.3 * base and size(["data.eval_batch_size=10000"]) > 1.3 * base
    assert size(["data.batch_size=full"]) > size(["data.batch_size=1024"])


def members_of(tmp_path, overrides: list[str], sweep: list[list[str]]) -> list:
    """Fused members as the launcher prepares them: each config resolved in its own job directory."""
    from omegaconf import OmegaConf

    from experiments.fused.members import Member

    members = []
    for job, extra in enumerate(sweep):
        run_dir = tmp_path / f"{job}_job"
        cfg = compose_config([*overrides, *extra], output_dir=str(run_dir))
        members.append(
            Member(
                job=job,
                cfg=OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)),
                run_dir=run_dir,
                choices={},
                overrides=extra,
            )
        )
        run_dir.mkdir()
    return members


@pytest.mark.slow
def test_each_member_is_tested_on_its_best_checkpoint_not_its_last(tmp_path):
    import torch

    from experiments.data.idx import load
    from experiments.fused.members import train_members
    from experiments.run.checkpoints import load_classifier

    # "best" by the lowest val/acc: the first epoch's weights, while training improves the later ones
    members = members_of(
        tmp_path,
        [
            "data.limit_train=2048",
            "trainer.max_epochs=3",
            "callbacks.progress_bar=null",
            "callbacks.model_checkpoint.mode=min",
            "diagnostics=none",
            "logger=none",
        ],
        [["seed=0"], ["seed=1", "activation=tanh"]],
    )
    results = train_members(members, "test-group")
    test = load()
    for member in members:
        record = results[member.job]
        assert record["status"] == "completed" and record["best_ckpt"].endswith(".ckpt")
        assert "best-epoch00" in record["best_ckpt"] and record["best_val_acc"] == min(record["history"]["val/acc"])
        accs = {}
        for name in (record["best_ckpt"], str(member.run_dir / "checkpoints" / "last.ckpt")):
            with torch.no_grad():
                predicted = load_classifier(name).eval()(test["test_x"]).argmax(1)
            accs[name] = (predicted == test["test_y"]).float().mean().item()
        assert accs[record["best_ckpt"]] == pytest.approx(record["test/acc"], abs=1e-6)
        assert accs[str(member.run_dir / "checkpoints" / "last.ckpt")] != pytest.approx(record["test/acc"], abs=1e-4)
        assert json.loads((member.run_dir / "metrics.json").read_text()) == json.loads(json.dumps(record))


@pytest.mark.slow
def test_a_members_checkpoints_are_its_separate_runs_written_by_the_same_lightning_code(tmp_path):
    import torch

    from experiments.fused.members import train_members
    from experiments.run.recipe import run

    weights_only = [
        "+callbacks.model_checkpoint.save_weights_only=true",
        "+callbacks.last_checkpoint.save_weights_only=true",
    ]
    settings = ["data.limit_train=512", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    settings += ["callbacks.progress_bar=null", "diagnostics=none", "logger=none", "print_config=false", *weights_only]
    members = members_of(tmp_path, settings, [["seed=0"], ["seed=1", "activation=tanh"]])
    train_members(members, "test-group")
    separate = tmp_path / "separate"
    run(compose_config([*settings, "seed=0"], output_dir=str(separate)), separate, {}, ["seed=0"])
    names = sorted(p.name for p in (separate / "checkpoints").iterdir())
    assert names == sorted(p.name for p in (members[0].run_dir / "checkpoints").iterdir()) and len(names) == 2
    for name in names:  # best-epoch00-acc....ckpt and last.ckpt: chosen and named by the member's ModelCheckpoints
        mine = torch.load(members[0].run_dir / "checkpoints" / name, weights_only=True)
        theirs = torch.load(separate / "checkpoints" / name, weights_only=True)
        # Lightning's own keys (its version, loops, epoch, hyperparameter names); a member's hparams_name is not
        # set (it is private to the LightningModule that saved its hyperparameters) and its group is added
        assert set(mine) == set(theirs) - {"hparams_name"} | {"fused_group"}
        assert mine["fused_group"]["members"] == 2 and mine["pytorch-lightning_version"] == L.__version__
        for key in ("epoch", "global_step", "hyper_parameters", "datamodule_hyper_parameters"):
            assert mine[key] == theirs[key], key
        assert mine["state_dict"].keys() == theirs["state_dict"].keys()
        for key, weights in mine["state_dict"].items():
            assert torch.allclose(weights.double(), theirs["state_dict"][key].double(), atol=1e-5), key
            # the member's own tensors, not views that would save every member's stacked weights
            assert weights.untyped_storage().nbytes() == weights.numel() * weights.element_size(), key


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"max_members": 0}, "hydra.launcher.max_members=0 is invalid"),
        ({"memory_fraction": 1.5}, "hydra.launcher.memory_fraction=1.5 is invalid"),
        ({"memory_fraction": 0}, "hydra.launcher.memory_fraction=0 is invalid"),
    ],
)
def test_the_launchers_own_settings_are_checked_with_their_key(kwargs, words):
    from hydra_plugins.fused_launcher.fused_launcher import FusedLauncher

    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        FusedLauncher(**kwargs)


class EpochEndOnly(L.Callback):
    """A user's callback that uses only hooks a fused member's run calls."""

    def on_train_epoch_end(self, trainer, pl_module):
        pass


class ReadsValidationBatches(EpochEndOnly):
    """A user's callback that also uses a hook a fused member's run does not call."""

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        pass


def test_whether_a_callback_fuses_is_derived_from_the_hooks_it_uses():
    fuses = task([f"+callbacks.mine._target_={__name__}.EpochEndOnly"])
    assert fusion_problem(fuses) is None
    apart = task([f"+diagnostics.mine._target_={__name__}.ReadsValidationBatches"])
    problem = fusion_problem(apart)
    assert problem is not None and "diagnostics.mine" in problem and "on_validation_batch_end" in problem
    assert "on_train_epoch_end" not in problem
    assert hooks_used(ReadsValidationBatches) == {"on_train_epoch_end", "on_validation_batch_end"}


def test_every_hook_forwarded_to_members_is_one_that_the_group_calls_them_at():
    assert hooks_used(MemberRuns) >= FORWARDED_HOOKS | CHECKPOINT_HOOKS
    # a member's ModelCheckpoint is called at every hook it uses: a Lightning that adds one is noticed here
    assert hooks_used(L.pytorch.callbacks.ModelCheckpoint) <= FORWARDED_HOOKS | CHECKPOINT_HOOKS
    for monitor in (DeadUnitMonitor, GradNormMonitor, HistogramMonitor, EpochHistory, DivergenceGuard):
        assert hooks_used(monitor) <= FORWARDED_HOOKS, monitor
