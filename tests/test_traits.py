"""What the framework must know about a part, asked of the part (``nn/traits.py``): whether an activation saturates
or draws random numbers, whether an optimizer updates element by element. A user's own classes below are on no
list of the project; what they declare, or what they are measured to do, decides."""

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from experiments.lit.diagnostics import unit_stats
from experiments.nn.activations import activation_factory
from experiments.nn.model import MLP
from experiments.nn.traits import draws_random, elementwise, saturates


class Clipped(nn.Module):
    """A user's saturating activation: flat beyond +-scale."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, -self.scale, self.scale)


class Scaled(nn.Module):
    """A user's activation with a setting and no ``extra_repr``: its ``repr`` is the same for every scale."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * self.scale


class Jittered(nn.Module):
    """A user's activation that draws random numbers in training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * (1 + 0.1 * torch.rand_like(x)) if self.training else torch.relu(x)


class DeclaredCalm(Jittered):
    draws_random = False  # declared: the class's word is taken


class TensorNormalised(torch.optim.Optimizer):
    """A user's optimizer that reads a whole tensor: each step has length lr, whatever the tensor's size."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p -= group["lr"] * p.grad / p.grad.norm()


@pytest.mark.parametrize(
    "activation, expected",
    [
        *((m, True) for m in (nn.Sigmoid(), nn.Tanh(), nn.Hardtanh(), nn.Hardsigmoid(), nn.Softsign(), Clipped())),
        *((m, False) for m in (nn.ReLU(), nn.LeakyReLU(), nn.ELU(), nn.GELU(), nn.SiLU(), nn.Softplus(), Scaled())),
        (nn.PReLU(8), False),
    ],
)
def test_an_activation_saturates_where_its_derivative_vanishes_on_both_sides(activation, expected):
    assert saturates(activation, 8) is expected


def test_a_saturating_activation_of_the_user_s_gets_its_saturated_fraction():
    torch.manual_seed(0)
    net = MLP(784, 10, hidden_sizes=[6, 5], activation=activation_factory({"_target_": "test_traits.Clipped"}))
    stats = unit_stats(net, torch.randn(50, 784))
    assert {"diag/saturated_frac/layer1", "diag/saturated_frac/total"} <= set(stats)
    net = MLP(784, 10, hidden_sizes=[6, 5], activation=activation_factory({"_target_": "test_traits.Scaled"}))
    assert not any(k.startswith("diag/saturated") for k in unit_stats(net, torch.randn(50, 784)))


@pytest.mark.parametrize(
    "target, expected",
    [
        ("torch.nn.RReLU", True),
        ("test_traits.Jittered", True),
        ("torch.nn.ReLU", False),
        ("test_traits.Scaled", False),
        ("test_traits.DeclaredCalm", False),
    ],
)
def test_an_activation_draws_random_numbers_where_two_calls_differ(target, expected):
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    trait = draws_random(activation_factory({"_target_": target}))
    assert trait.holds is expected and torch.equal(torch.random.get_rng_state(), before)  # the run's draws untouched


def test_an_activation_that_cannot_be_measured_gets_the_safe_answer_with_why():
    trait = draws_random(activation_factory({"_target_": "torch.nn.Bilinear", "in1_features": 3}))
    assert trait.holds and trait.how.startswith("could not be measured (") and "\n" not in trait.how


@pytest.mark.parametrize(
    "target, expected",
    [
        ("torch.optim.SGD", True),
        ("torch.optim.Adam", True),
        ("torch.optim.RMSprop", True),
        ("torch.optim.Adamax", True),
        ("experiments.nn.optimizers.LectureMomentum", True),
        ("torch.optim.Adafactor", False),  # factored second moments: rows and columns of a tensor
        ("test_traits.TensorNormalised", False),
        ("torch.optim.LBFGS", False),  # needs a closure: cannot be measured, so the safe answer
    ],
)
def test_an_optimizer_is_elementwise_where_tensors_apart_and_joined_step_alike(target, expected):
    assert elementwise(lambda params: instantiate({"_target_": target}, _partial_=True)(params)).holds is expected
