import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from experiments.nn.optimizers import build_optimizer, build_scheduler


def opt_cfg(name: str, *extra: str) -> dict:
    return OmegaConf.to_container(compose_config([f"optimizer={name}", *extra]).optimizer, resolve=True)


def test_momentum_follows_the_course_update_step_by_step():
    """v <- beta v + alpha grad; theta <- theta - v, on f(theta) = sum(a * theta^2)."""
    a = torch.tensor([1.0, 3.0, -0.5])
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    cfg = opt_cfg("momentum")
    optimizer = build_optimizer(cfg, [theta])
    beta, alpha = cfg["momentum"], cfg["lr"]
    ref, v = theta.detach().clone(), torch.zeros(3)
    for _ in range(10):
        optimizer.zero_grad()
        (a * theta**2).sum().backward()
        optimizer.step()
        v = beta * v + alpha * (2 * a * ref)
        ref = ref - v
        assert torch.allclose(theta.detach(), ref, atol=1e-6)
    assert beta == 0.9


@pytest.mark.parametrize(
    "name, cls",
    [
        ("gd", "SGD"),
        ("sgd", "SGD"),
        ("momentum", "SGD"),
        ("nesterov", "SGD"),
        ("adam", "Adam"),
        ("adamw", "AdamW"),
        ("rmsprop", "RMSprop"),
        ("adagrad", "Adagrad"),
        ("adadelta", "Adadelta"),
        ("momentum_lecture", "LectureMomentum"),
    ],
)
def test_every_optimizer_builds(name, cls):
    optimizer = build_optimizer(opt_cfg(name), [torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer).__name__ == cls and optimizer.param_groups[0]["lr"] > 0


def test_adam_default_lr_is_the_courses():
    assert opt_cfg("adam")["lr"] == 0.003


def test_gd_selects_the_full_batch_without_being_told():
    assert compose_config(["optimizer=gd"]).data.batch_size == "full"
    assert compose_config(["optimizer=sgd"]).data.batch_size == 256


def lrs(name: str, steps: int, epochs: int, *extra: str) -> tuple[dict, list[float]]:
    """Lightning's scheduler dict for a run of ``steps`` steps in ``epochs`` epochs, and the lr it sets
    at every step of that run, stepped as its interval says."""
    cfg = OmegaConf.to_container(compose_config([f"scheduler={name}", *extra]).scheduler)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(cfg, optimizer, total_steps=steps, total_epochs=epochs)
    seen = []
    for step in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if sched["interval"] == "step" or (step + 1) % (steps // epochs) == 0:
            sched["scheduler"].step()
    return sched, seen


def test_step_schedule_halves_the_lr_every_epoch():
    sched, seen = lrs("step", steps=40, epochs=4)
    assert sched["interval"] == "epoch" and sched["frequency"] == 1
    assert seen[::10] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def test_cosine_spans_the_whole_run_and_ends_at_eta_min():
    sched, seen = lrs("cosine", steps=100, epochs=2)
    assert sched["interval"] == "step" and sched["scheduler"].T_max == 100
    assert seen[0] == pytest.approx(0.1) and seen[50] == pytest.approx(0.05, abs=1e-3)
    assert seen[-1] == pytest.approx(0.1 * (1 + math.cos(math.pi * 99 / 100)) / 2)
    assert all(a >= b for a, b in zip(seen, seen[1:]))  # never rises within the run


def test_onecycle_warms_up_to_the_optimizers_lr_then_anneals_over_the_run():
    sched, seen = lrs("onecycle", steps=100, epochs=2)
    peak = max(range(100), key=seen.__getitem__)
    assert sched["interval"] == "step" and 28 <= peak <= 31  # pct_start 0.3
    assert seen[peak] == pytest.approx(0.1, rel=1e-3) and seen[0] < 0.01 and seen[-1] < 1e-4


def test_onecycle_peaks_at_each_parameter_groups_own_rate():
    # a fused sweep's optimizer has one group per member learning rate: each must peak at its own
    cfg = OmegaConf.to_container(compose_config(["scheduler=onecycle"]).scheduler)
    optimizer = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (0.1, 0.01)])
    sched = build_scheduler(cfg, optimizer, total_steps=100, total_epochs=2)["scheduler"]
    peaks = [0.0, 0.0]
    for _ in range(99):
        optimizer.step()
        sched.step()
        peaks = [max(p, g["lr"]) for p, g in zip(peaks, optimizer.param_groups)]
    assert peaks == pytest.approx([0.1, 0.01], rel=1e-3)


def test_no_scheduler():
    cfg = OmegaConf.to_container(compose_config([]).scheduler)
    assert build_scheduler(cfg, torch.optim.SGD([torch.zeros(1)], lr=1), 5, 1) is None


@pytest.mark.parametrize(
    "name, cls, expected",
    [
        ("gd", "SGD", {"lr": 0.5, "momentum": 0.0, "nesterov": False}),
        ("sgd", "SGD", {"lr": 0.1, "momentum": 0.0, "nesterov": False}),
        ("momentum", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": False}),
        ("nesterov", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        ("adam", "Adam", {"lr": 0.003, "betas": (0.9, 0.999), "weight_decay": 0.0}),
        ("adamw", "AdamW", {"lr": 0.003, "weight_decay": 0.01}),
        ("rmsprop", "RMSprop", {"lr": 0.001, "alpha": 0.99}),
        ("adagrad", "Adagrad", {"lr": 0.01}),
        ("adadelta", "Adadelta", {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}),
        ("momentum_lecture", "LectureMomentum", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}),
    ],
)
def test_each_optimizer_has_the_documented_defaults(name, cls, expected):
    optimizer = build_optimizer(opt_cfg(name), [torch.nn.Parameter(torch.zeros(2))])
    group = optimizer.param_groups[0]
    assert type(optimizer).__name__ == cls
    assert {k: tuple(group[k]) if isinstance(group[k], (list, tuple)) else group[k] for k in expected} == expected


def quadratic_run(name: str, steps: int, schedule: bool) -> torch.Tensor:
    """theta after ``steps`` steps on f(theta) = sum(a theta^2), the lr halved every 3 steps when ``schedule``."""
    a = torch.tensor([1.0, 3.0, -0.5, 2.0])
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5, 0.3]))
    optimizer = build_optimizer(opt_cfg(name), [theta])
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5) if schedule else None
    for _ in range(steps):
        optimizer.zero_grad()
        (a * theta**2).sum().backward()
        optimizer.step()
        if sched:
            sched.step()
    return theta.detach()


def test_lecture_momentum_equals_pytorchs_at_a_constant_learning_rate():
    assert torch.allclose(quadratic_run("momentum_lecture", 12, False), quadratic_run("momentum", 12, False), atol=1e-6)


def test_lecture_momentum_follows_its_formula_under_a_step_schedule_and_pytorchs_does_not():
    """Lecture: v <- beta v + lr_t g; theta <- theta - v. PyTorch: b <- beta b + g; theta <- theta - lr_t b."""
    a = torch.tensor([1.0, 3.0, -0.5, 2.0])
    cfg = opt_cfg("momentum_lecture")
    beta, lr0 = cfg["momentum"], cfg["lr"]
    lecture, pytorch = torch.tensor([1.0, -2.0, 0.5, 0.3]), torch.tensor([1.0, -2.0, 0.5, 0.3])
    v, b = torch.zeros(4), torch.zeros(4)
    for step in range(12):
        lr = lr0 * 0.5 ** (step // 3)
        v = beta * v + lr * 2 * a * lecture
        lecture = lecture - v
        b = beta * b + 2 * a * pytorch
        pytorch = pytorch - lr * b
    assert torch.allclose(quadratic_run("momentum_lecture", 12, True), lecture, atol=1e-6)
    assert torch.allclose(quadratic_run("momentum", 12, True), pytorch, atol=1e-6)
    assert (lecture - pytorch).abs().max() > 1e-3  # the schedule makes the two forms part


def test_lecture_momentum_weight_decay_adds_to_the_gradient():
    theta = torch.nn.Parameter(torch.tensor([2.0]))
    optimizer = build_optimizer(opt_cfg("momentum_lecture", "optimizer.weight_decay=0.1", "optimizer.lr=0.5"), [theta])
    (theta * 0).sum().backward()  # zero gradient: only the decay moves theta
    optimizer.step()
    assert torch.allclose(theta.detach(), torch.tensor([2.0 - 0.5 * 0.1 * 2.0]))


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"momentum": 1.0}, {"momentum": -0.1}, {"weight_decay": -1.0}])
def test_lecture_momentum_refuses_values_outside_its_range(kwargs):
    from experiments.nn.optimizers import LectureMomentum

    with pytest.raises(ValueError, match="LectureMomentum needs"):
        LectureMomentum([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_lecture_momentum_takes_momentum_zero_and_its_defaults_are_its_configs():
    from experiments.nn.optimizers import LectureMomentum

    cfg = opt_cfg("momentum_lecture")
    group = LectureMomentum([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]
    assert {k: group[k] for k in ("lr", "momentum", "weight_decay")} == {
        k: cfg[k] for k in ("lr", "momentum", "weight_decay")
    }
    theta = torch.nn.Parameter(torch.tensor([1.0]))
    plain = LectureMomentum([theta], lr=0.1, momentum=0.0)  # beta = 0: plain gradient descent
    for _ in range(2):
        plain.zero_grad()
        (theta**2).sum().backward()
        plain.step()
    assert theta.item() == pytest.approx(1.0 * 0.8 * 0.8)


def test_a_schedule_without_an_interval_is_stepped_per_epoch_as_lightning_does():
    cfg = OmegaConf.to_container(compose_config(["scheduler=cosine"]).scheduler)
    del cfg["interval"], cfg["scheduler"]["_partial_"]  # a user's schedule may leave both out
    sched = build_scheduler(cfg, torch.optim.SGD([torch.zeros(1)], lr=1), total_steps=100, total_epochs=4)
    assert sched["scheduler"].T_max == 4 and "interval" not in sched


def test_a_span_given_in_the_config_is_kept():
    cosine = OmegaConf.to_container(compose_config(["scheduler=cosine", "scheduler.scheduler.T_max=7"]).scheduler)
    assert build_scheduler(cosine, torch.optim.SGD([torch.zeros(1)], lr=1), 100, 4)["scheduler"].T_max == 7
    cycle = OmegaConf.to_container(compose_config(["scheduler=onecycle", "scheduler.scheduler.max_lr=0.5"]).scheduler)
    optimizer = torch.optim.SGD([torch.zeros(1)], lr=0.01)
    sched = build_scheduler(cycle, optimizer, 100, 4)["scheduler"]
    peak = 0.0
    for _ in range(99):
        optimizer.step()
        sched.step()
        peak = max(peak, optimizer.param_groups[0]["lr"])
    assert peak == pytest.approx(0.5, rel=1e-3)  # the configured peak, not the optimizer's rate


def test_an_optimizer_config_without_partial_is_bound_to_the_parameters_all_the_same():
    cfg = opt_cfg("adam")
    del cfg["_partial_"]
    optimizer = build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer).__name__ == "Adam" and optimizer.param_groups[0]["lr"] == 0.003


def edges(key: str) -> list[float]:
    """The values on the edges of what the config rules let through for ``key``, read from the rule's own words
    (``a number in (0, 1)``): a closed bound itself, an open one a hair inside it."""
    import re

    from experiments.config.rules import RULES

    if key not in RULES:
        return []
    said = RULES[key]("not a number")
    found = re.search(r"a number in ([(\[])([^,]+), ([^)\]]+)([)\]])", said or "")
    if found is None:
        return []
    opening, low, high, closing = found[1], float(found[2]), float(found[3]), found[4]
    inside = lambda bound, toward: bound + math.copysign(max(abs(bound), 1.0) * 1e-6, toward - bound)
    values = [low if opening == "[" else inside(low, high)]
    if math.isfinite(high):
        values.append(high if closing == "]" else inside(high, low))
    return values


SCHEDULER_EDGES = [
    (option, key, value)
    for option in ("onecycle", "cosine", "step")
    for key in compose_config([f"scheduler={option}"]).scheduler.scheduler
    for value in edges(f"scheduler.scheduler.{key}")
]


@pytest.mark.parametrize("option, key, value", SCHEDULER_EDGES, ids=[f"{o}.{k}={v:g}" for o, k, v in SCHEDULER_EDGES])
def test_a_schedule_at_an_edge_the_rules_allow_runs_its_whole_span(option, key, value):
    """An open bound made closed lets a value through that fails mid-training (OneCycleLR's pct_start=1 divides by
    zero at its last step): every value the rules allow must build and step through the run."""
    from experiments.config.rules import problems

    cfg = compose_config([f"scheduler={option}", f"scheduler.scheduler.{key}={value}"])
    assert problems(cfg) == []
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer(OmegaConf.to_container(cfg.optimizer, resolve=True), [param])
    scheduler = build_scheduler(OmegaConf.to_container(cfg.scheduler, resolve=True), optimizer, 40, 4)["scheduler"]
    for _ in range(40):
        optimizer.step()
        scheduler.step()
        assert math.isfinite(optimizer.param_groups[0]["lr"])
