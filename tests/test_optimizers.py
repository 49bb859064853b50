import pytest
import torch

from conftest import compose_config
from experiments.optimizers import build_optimizer, build_scheduler
from omegaconf import OmegaConf


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


@pytest.mark.parametrize("name, cls", [("gd", "SGD"), ("sgd", "SGD"), ("momentum", "SGD"), ("nesterov", "SGD"),
                                       ("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"),
                                       ("adagrad", "Adagrad")])
def test_every_optimizer_builds(name, cls):
    optimizer = build_optimizer(opt_cfg(name), [torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer).__name__ == cls and optimizer.param_groups[0]["lr"] > 0


def test_adam_default_lr_is_the_courses():
    assert opt_cfg("adam")["lr"] == 0.003


def test_gd_selects_the_full_batch_without_being_told():
    cfg = compose_config(["optimizer=gd"])
    assert cfg.data.batch_size == "full" and cfg.optimizer.full_batch
    assert compose_config(["optimizer=sgd"]).data.batch_size == 256


@pytest.mark.parametrize("name, interval", [("step", "epoch"), ("cosine", "step"), ("onecycle", "step")])
def test_schedulers(name, interval):
    cfg = compose_config([f"scheduler={name}"])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = build_scheduler(OmegaConf.to_container(cfg.scheduler), optimizer, total_steps=100)
    assert sched["interval"] == interval
    for _ in range(10):
        optimizer.step()
        sched["scheduler"].step()
    assert optimizer.param_groups[0]["lr"] != 0.1 or name == "onecycle"


def test_no_scheduler():
    cfg = compose_config([])
    assert build_scheduler(OmegaConf.to_container(cfg.scheduler), torch.optim.SGD([torch.zeros(1)], lr=1), 5) is None
