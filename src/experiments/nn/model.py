"""The course's network: stacked linear regressions with a non-linearity between them.

``MLP`` keeps each hidden layer as ``Linear -> [BatchNorm] -> activation -> [Dropout]`` in a named
block, so diagnostics can read every pre-activation by layer. ``collapse_linear`` demonstrates the
course's point that without a non-linearity N linear layers are one linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

INITS = (
    "default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "lecun_normal",
    "orthogonal",
)
OUTPUT_LAYERS: dict[str, Callable[[], nn.Module] | None] = {
    "none": None,
    "softmax": lambda: nn.Softmax(dim=1),
    "log_softmax": lambda: nn.LogSoftmax(dim=1),
    "sigmoid": nn.Sigmoid,
}


def init_linear(layer: nn.Linear, scheme: str, bias: float | None) -> None:
    """Weight initialisation by name; ``bias`` (if given) sets every bias to that constant."""
    w = layer.weight
    if scheme == "kaiming_normal":
        nn.init.kaiming_normal_(w, nonlinearity="relu")
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, nonlinearity="relu")
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w)
    elif scheme == "lecun_normal":  # variance 1/fan_in: the fixed point SELU's self-normalisation assumes
        nn.init.normal_(w, 0.0, 1.0 / math.sqrt(w.shape[1]))
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w)
    elif scheme != "default":
        raise ValueError(f"model.init={scheme!r}: must be one of {', '.join(INITS)}")
    if bias is not None:
        nn.init.constant_(layer.bias, bias)


class HiddenLayer(nn.Module):
    """One hidden layer; ``pre`` is the pre-activation (after batch norm) that dying-ReLU diagnostics read."""

    def __init__(self, fan_in: int, width: int, activation: nn.Module, batch_norm: bool, dropout: nn.Module | None):
        super().__init__()
        self.linear = nn.Linear(fan_in, width)
        self.norm = nn.BatchNorm1d(width) if batch_norm else nn.Identity()
        self.activation = activation
        self.dropout = dropout if dropout is not None else nn.Identity()

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.pre(x)))


class MLP(nn.Module):
    """``input -> hidden_sizes... -> num_classes`` logits (or the chosen output activation)."""

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        hidden_sizes: list[int],
        activation: Callable[[int], nn.Module],
        init: str = "default",
        bias_init: float | None = None,
        batch_norm: bool = False,
        dropout: float = 0.0,
        output_activation: str = "none",
    ) -> None:
        super().__init__()
        sizes = [input_size, *hidden_sizes]
        layers = []
        for fan_in, width in zip(sizes[:-1], sizes[1:]):
            act = activation(width)
            drop = None
            if dropout > 0:  # SELU's self-normalisation needs AlphaDropout, which keeps mean and variance
                drop = nn.AlphaDropout(dropout) if isinstance(act, nn.SELU) else nn.Dropout(dropout)
            layers.append(HiddenLayer(fan_in, width, act, batch_norm, drop))
        self.hidden = nn.ModuleList(layers)
        self.output = nn.Linear(sizes[-1], num_classes)
        out = OUTPUT_LAYERS[output_activation]
        self.output_activation = out() if out is not None else nn.Identity()
        for layer in [*(h.linear for h in self.hidden), self.output]:
            init_linear(layer, init, bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = layer(x)
        return self.output_activation(self.output(x))


def training_bytes(input_size: int, hidden_sizes: list[int], num_classes: int, batch: int, eval_batch: int) -> int:
    """Memory one run of this MLP needs, float32: weights, gradients and two optimizer states; a training
    batch's inputs, activations and their gradients; an evaluation batch's activations."""
    sizes = [input_size, *hidden_sizes, num_classes]
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 4 * (4 * params + (3 * batch + eval_batch) * sum(sizes))


@torch.no_grad()
def collapse_linear(mlp: MLP) -> nn.Linear:
    """The single ``Linear`` equal to an MLP whose activations are all identity.

    ``W = W_n ... W_1`` and ``b = W_n ... W_2 b_1 + ... + W_n b_{n-1} + b_n``. Refuses a network with a
    non-linear part, where no such layer exists.
    """
    for layer in mlp.hidden:
        if not isinstance(layer.activation, nn.Identity) or not isinstance(layer.norm, nn.Identity):
            raise ValueError(f"collapse_linear needs activation=identity and no batch norm; got {layer.activation}")
    if not isinstance(mlp.output_activation, nn.Identity):
        raise ValueError("collapse_linear needs model.output_activation=none")
    linears = [*(h.linear for h in mlp.hidden), mlp.output]
    weight, bias = linears[0].weight.clone(), linears[0].bias.clone()
    for lin in linears[1:]:
        weight, bias = lin.weight @ weight, lin.weight @ bias + lin.bias
    single = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype, device=weight.device)
    single.weight.copy_(weight)
    single.bias.copy_(bias)
    return single
