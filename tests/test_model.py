import pytest
import torch
from torch import nn

from experiments.nn.activations import activation_factory
from experiments.nn.model import MLP, collapse_linear


def mlp(act: str = "torch.nn.ReLU", **kw) -> MLP:
    return MLP(784, 10, kw.pop("hidden_sizes", [64, 64, 64]), activation_factory({"_target_": act}), **kw)


def test_course_architecture_shapes():
    net = mlp()
    assert [h.linear.weight.shape for h in net.hidden] == [(64, 784), (64, 64), (64, 64)]
    assert net.output.weight.shape == (10, 64)
    assert net(torch.randn(5, 784)).shape == (5, 10)
    assert sum(p.numel() for p in net.parameters()) == 784 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 10 + 10


def test_lecun_normal_has_variance_one_over_fan_in_and_bias_init_is_constant():
    torch.manual_seed(0)
    net = mlp(hidden_sizes=[512, 512], init="lecun_normal", bias_init=-0.5)
    w = net.hidden[1].linear.weight
    assert abs(w.std().item() - 512**-0.5) < 0.003
    assert torch.all(net.hidden[0].linear.bias == -0.5) and torch.all(net.output.bias == -0.5)


@pytest.mark.parametrize(
    "init", ["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "orthogonal", "default"]
)
def test_every_init_builds(init):
    assert torch.isfinite(mlp(init=init)(torch.randn(3, 784))).all()


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="model.init='he'"):
        mlp(init="he")


def test_batch_norm_and_dropout_and_alpha_dropout_for_selu():
    net = mlp(batch_norm=True, dropout=0.2)
    assert isinstance(net.hidden[0].norm, nn.BatchNorm1d) and isinstance(net.hidden[0].dropout, nn.Dropout)
    selu = mlp("torch.nn.SELU", dropout=0.1)
    assert isinstance(selu.hidden[0].dropout, nn.AlphaDropout)


def test_output_activation_layer():
    net = mlp(output_activation="softmax").eval()
    assert torch.allclose(net(torch.randn(4, 784)).sum(1), torch.ones(4))


def test_identity_network_collapses_to_one_linear_layer():
    torch.manual_seed(1)
    net = mlp("torch.nn.Identity").double().eval()
    x = torch.randn(32, 784, dtype=torch.float64)
    single = collapse_linear(net)
    assert single.weight.shape == (10, 784)
    assert torch.allclose(single(x), net(x), atol=1e-10)


def test_collapse_refuses_a_non_linear_network():
    with pytest.raises(ValueError, match="activation=identity"):
        collapse_linear(mlp())


@pytest.mark.parametrize(
    "init, std",
    [("kaiming_normal", (2 / 784) ** 0.5), ("xavier_normal", (2 / (784 + 64)) ** 0.5), ("lecun_normal", 784**-0.5)],
)
def test_each_normal_init_gives_its_scale_and_differs_from_pytorchs_default(init, std):
    torch.manual_seed(0)
    weight = mlp(init=init).hidden[0].linear.weight
    assert weight.std().item() == pytest.approx(std, rel=0.03)
    torch.manual_seed(0)
    default = mlp().hidden[0].linear.weight  # PyTorch's U(+-1/sqrt(fan_in)): std 1/sqrt(3 * 784)
    assert default.std().item() == pytest.approx((3 * 784) ** -0.5, rel=0.03)


def test_orthogonal_init_gives_orthonormal_rows():
    weight = mlp(init="orthogonal").hidden[1].linear.weight
    assert torch.allclose(weight @ weight.T, torch.eye(64), atol=1e-5)


def test_an_unknown_init_lists_every_valid_one():
    from experiments.nn.model import INITS, init_linear

    with pytest.raises(ValueError, match=r"^model.init='he': must be one of " + ", ".join(INITS) + "$"):
        init_linear(torch.nn.Linear(2, 2), "he", None)
    assert INITS[:3] == ("default", "kaiming_normal", "kaiming_uniform")


def test_no_dropout_module_without_dropout():
    net = MLP(4, 2, [3, 3], activation_factory({"_target_": "torch.nn.ReLU"}), dropout=0.0)
    assert not any(isinstance(m, torch.nn.Dropout | torch.nn.AlphaDropout) for m in net.modules())
