import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch import nn

from conftest import ROOT, compose_config
from experiments.config.rules import problems
from experiments.nn.activations import ALReLU, activation_factory

ALL = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "alrelu",
    "prelu",
    "rrelu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "mish",
    "relu6",
    "softplus",
    "softsign",
]
X = torch.tensor([-3.0, -1.0, -0.25, 0.25, 1.0, 3.0], dtype=torch.float64)


def derivative(module: nn.Module, x: torch.Tensor = X) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = module(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), grad


def build(name: str, **overrides) -> nn.Module:
    cfg = compose_config([f"activation={name}", *(f"activation.{k}={v}" for k, v in overrides.items())])
    return activation_factory(cfg.activation)(4).double().eval()


def test_sigmoid_and_tanh_follow_the_course_derivatives():
    s, ds = derivative(build("sigmoid"))
    assert torch.allclose(s, 1 / (1 + torch.exp(-X))) and torch.allclose(ds, s * (1 - s))
    t, dt = derivative(build("tanh"))
    assert torch.allclose(dt, 1 - t**2)


def test_relu_family_derivatives():
    _, d = derivative(build("relu"))
    assert set(d.tolist()) == {0.0, 1.0}
    _, d = derivative(build("leaky_relu", negative_slope=0.1))
    assert torch.allclose(d, torch.where(X > 0, 1.0, 0.1).double())


def test_alrelu_is_absolute_leaky_with_negative_slope_minus_alpha():
    y, d = derivative(build("alrelu", alpha=0.05))
    assert torch.allclose(y, torch.where(X > 0, X, (0.05 * X).abs()))
    assert torch.allclose(d, torch.where(X > 0, 1.0, -0.05).double())
    assert (y >= 0).all()
    assert isinstance(build("alrelu"), ALReLU) and build("alrelu").alpha == 0.01


def test_selu_constants():
    selu = build("selu")
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    assert torch.allclose(selu(torch.tensor([1.0]).double()), torch.tensor([lam]).double())
    assert torch.allclose(selu(torch.tensor([-50.0]).double()), torch.tensor([-lam * alpha]).double())


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "selu", "gelu", "swish", "mish", "softplus", "softsign"])
def test_smooth_activations_pass_gradcheck(name):
    x = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(build(name), (x,))


def test_gelu_tanh_approximation_and_silu_alias():
    exact, approx = build("gelu"), build("gelu", approximate="tanh")
    assert not torch.equal(exact(X), approx(X)) and torch.allclose(exact(X), approx(X), atol=1e-3)
    assert torch.equal(build("swish")(X), build("silu")(X))
    assert torch.allclose(build("swish")(X), X * torch.sigmoid(X))


def test_identity_is_linear():
    assert torch.equal(build("identity")(X), X)


def test_prelu_per_unit_gets_one_slope_per_unit():
    cfg = compose_config(["activation=prelu", "activation.num_parameters=per_unit"])
    assert activation_factory(cfg.activation)(37).weight.shape == (37,)
    assert build("prelu").weight.shape == (1,)


@pytest.mark.parametrize("name", ALL)
def test_every_activation_builds_from_its_yaml(name):
    module = build(name)
    assert isinstance(module, nn.Module) and module(X).shape == X.shape


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"negative_slope": -0.1}, "activation.negative_slope"),
        ({"alpha": 0}, "activation.alpha"),
        ({"alpha": -1.0}, "activation.alpha"),
        ({"beta": "x"}, "activation.beta"),
        ({"lower": 0.5, "upper": 0.1}, "activation.lower"),
        ({"num_parameters": 3}, "activation.num_parameters"),
        ({"approximate": "bogus"}, "activation.approximate"),
    ],
)
def test_invalid_parameters_are_refused_with_the_key_named(cfg, key):
    errors = problems(OmegaConf.create({"activation": cfg}))
    assert len(errors) == 1 and errors[0].startswith(key)


def test_valid_parameters_pass():
    assert problems(OmegaConf.create({"activation": {"negative_slope": 0.01, "alpha": 1.0}})) == []
    assert math.isfinite(build("elu", alpha=0.5)(X).sum().item())


XS = torch.linspace(-4, 4, 81, dtype=torch.float64)


@pytest.mark.parametrize(
    "name, overrides, formula",
    [
        ("elu", {}, lambda x: torch.where(x > 0, x, torch.exp(x) - 1)),
        ("elu", {"alpha": 0.5}, lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1))),
        ("mish", {}, lambda x: x * torch.tanh(torch.log1p(torch.exp(x)))),
        ("relu6", {}, lambda x: x.clamp(0, 6)),
        ("softsign", {}, lambda x: x / (1 + x.abs())),
        ("softplus", {}, lambda x: torch.log1p(torch.exp(x))),
        ("softplus", {"beta": 2.0}, lambda x: torch.log1p(torch.exp(2 * x)) / 2),
        ("gelu", {}, lambda x: x * 0.5 * (1 + torch.erf(x / 2**0.5))),
        ("leaky_relu", {}, lambda x: torch.where(x > 0, x, 0.01 * x)),
        ("prelu", {}, lambda x: torch.where(x > 0, x, 0.25 * x)),
        ("rrelu", {}, lambda x: torch.where(x > 0, x, (1 / 8 + 1 / 3) / 2 * x)),  # eval: the mean slope
    ],
)
def test_each_activation_yaml_builds_the_documented_function(name, overrides, formula):
    assert torch.allclose(build(name, **overrides)(XS), formula(XS), atol=1e-6), name


def test_relu6_is_flat_above_six_and_rrelu_draws_slopes_in_training():
    big = torch.tensor([5.0, 7.0, 100.0], dtype=torch.float64)
    assert build("relu6")(big).tolist() == [5.0, 6.0, 6.0]
    rrelu = build("rrelu").train()
    slopes = rrelu(-torch.ones(10_000, dtype=torch.float64)).neg()
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3 and slopes.std() > 0.03


# ---------------------------------------------------------------- properties (hypothesis)


CONF_ACTIVATIONS = ROOT / "conf" / "activation"
KINKS = {
    "relu": [0.0],
    "relu6": [0.0, 6.0],
    "leaky_relu": [0.0],
    "alrelu": [0.0],
    "prelu": [0.0],
    "rrelu": [0.0],
    "elu": [0.0],
    "selu": [0.0],
}  # where f' jumps: finite differences do not apply there


@functools.cache
def built(name: str) -> nn.Module:
    """The activation as a run builds it from its YAML, in float64; rrelu in eval mode (its mean slope)."""
    module = activation_factory(OmegaConf.to_container(compose_config([f"activation={name}"]).activation))(1)
    return module.double().eval()


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF_ACTIVATIONS.glob("*.yaml")))
@settings(max_examples=25, deadline=None)
@given(points=st.lists(st.floats(-8, 8, allow_nan=False), min_size=1, max_size=16))
def test_autograd_derivative_matches_finite_differences_on_random_inputs(name, points):
    kinks = KINKS.get(name, [])
    points = [p for p in points if all(abs(p - k) > 1e-3 for k in kinks)]
    if not points:
        return
    module = built(name)
    x = torch.tensor(points, dtype=torch.float64).unsqueeze(1).requires_grad_(True)
    (autograd,) = torch.autograd.grad(module(x).sum(), x)
    h = 1e-6
    with torch.no_grad():
        numeric = (module(x + h) - module(x - h)) / (2 * h)
    assert torch.allclose(autograd, numeric, atol=1e-5, rtol=1e-4), (name, points)


def test_alrelu_slope_at_zero_is_minus_alpha_and_its_default_is_its_configs():
    x = torch.zeros(3, dtype=torch.double, requires_grad=True)
    ALReLU(alpha=0.05)(x).sum().backward()
    assert x.grad.tolist() == [-0.05] * 3  # the left slope, as Leaky ReLU's at 0: never 0, never dead
    assert ALReLU().alpha == build("alrelu").alpha
