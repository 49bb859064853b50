import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import compose_config
from experiments.nn.losses import (
    LOSS_TRANSFORM,
    NLLOnLogSoftmax,
    OneHotBCELoss,
    SoftmaxMSELoss,
    check_output_activation,
)

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
TARGET = torch.tensor([0, 2])


def loss(name: str):
    return instantiate(compose_config([f"loss={name}"]).loss)


def test_cross_entropy_and_nll_equal_minus_log_softmax_of_the_target():
    expected = -(torch.log(torch.softmax(LOGITS, 1))[[0, 1], TARGET]).mean()
    assert torch.allclose(loss("cross_entropy")(LOGITS, TARGET), expected)
    assert torch.allclose(loss("nll")(LOGITS, TARGET), expected)
    assert isinstance(loss("nll"), NLLOnLogSoftmax)


def test_mse_is_between_softmax_probabilities_and_one_hot():
    p = torch.softmax(LOGITS, 1)
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    assert torch.allclose(loss("mse")(LOGITS, TARGET), ((p - one_hot) ** 2).mean())
    assert isinstance(loss("mse"), SoftmaxMSELoss)


def test_bce_is_per_class_sigmoid_against_one_hot():
    s = torch.sigmoid(LOGITS)
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    expected = -(one_hot * torch.log(s) + (1 - one_hot) * torch.log(1 - s)).mean()
    assert torch.allclose(loss("bce")(LOGITS, TARGET), expected)
    assert isinstance(loss("bce"), OneHotBCELoss)


def test_label_smoothing_is_passed_through():
    smooth = instantiate(compose_config(["loss.label_smoothing=0.1"]).loss)
    assert torch.allclose(smooth(LOGITS, TARGET), F.cross_entropy(LOGITS, TARGET, label_smoothing=0.1))


def test_every_loss_has_a_known_transform():
    for name in ("cross_entropy", "nll", "mse", "bce"):
        assert type(loss(name)).__name__ in LOSS_TRANSFORM


@pytest.mark.parametrize(
    "out, name, verdict",
    [
        ("none", "cross_entropy", None),
        ("softmax", "cross_entropy", "warn"),
        ("softmax", "nll", "warn"),
        ("log_softmax", "nll", None),
        ("log_softmax", "mse", "refuse"),
        ("log_softmax", "bce", "refuse"),
        ("softmax", "bce", "refuse"),
        ("sigmoid", "bce", "warn"),
    ],
)
def test_output_activation_pairs(out, name, verdict):
    result = check_output_activation(out, compose_config([f"loss={name}"]).loss._target_)
    assert (("refuse" if result.refuse else "warn") if result else None) == verdict
    if result:
        assert "model.output_activation=none" in result.message


def test_log_softmax_before_cross_entropy_really_is_harmless():
    assert torch.allclose(F.cross_entropy(F.log_softmax(LOGITS, 1), TARGET), F.cross_entropy(LOGITS, TARGET))


# ---------------------------------------------------------------- properties (hypothesis)


def course_formula(name: str, z: np.ndarray, y: np.ndarray) -> float:
    """The course's formulas, written out element by element (float64, no torch)."""
    n, c = z.shape
    onehot = np.eye(c)[y]
    shifted = z - z.max(axis=1, keepdims=True)
    softmax = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    if name in ("cross_entropy", "nll"):  # -log softmax(z)_y, averaged over the batch
        return float(np.mean(-np.log(softmax[np.arange(n), y])))
    if name == "mse":  # mean over batch and classes of (softmax - onehot)^2
        return float(np.mean((softmax - onehot) ** 2))
    sigmoid = 1 / (1 + np.exp(-z))  # bce: per class, -(t log s + (1 - t) log(1 - s)), averaged
    return float(np.mean(-(onehot * np.log(sigmoid) + (1 - onehot) * np.log(1 - sigmoid))))


@st.composite
def batches(draw):
    n, c = draw(st.integers(1, 12)), draw(st.integers(2, 10))
    z = draw(arrays(np.float64, (n, c), elements=st.floats(-8, 8, allow_nan=False)))
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return z, y


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "mse", "bce"])
@settings(max_examples=40, deadline=None)
@given(batch=batches())
def test_each_loss_equals_the_courses_formula_on_random_batches(name, batch):
    z, y = batch
    value = LOSSES[name](torch.from_numpy(z), torch.from_numpy(y)).item()
    assert value == pytest.approx(course_formula(name, z, y), rel=1e-6, abs=1e-9)


LOSSES = {name: loss(name) for name in ("cross_entropy", "nll", "mse", "bce")}


@pytest.mark.parametrize("name", ["mse", "nll", "cross_entropy", "bce"])
def test_each_loss_runs_without_warnings_in_the_logits_dtype(name):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "implicit dimension choice" for softmax
        value = loss(name)(LOGITS.double(), TARGET)
    assert value.dtype == torch.float64
