"""Registry of the classifiers studied in the book.

Every model is a plain :class:`torch.nn.Sequential` whose children have
stable names (``conv1``, ``relu1``, ``pool1``, ..., ``flatten``, ``fc1``,
``relu_fc1``, ..., ``fc<k>``; the recurrent ``gru`` has ``flatten``, ``gru``,
``fc1``), so the analysis can tap any layer with a forward hook by name
(``model.get_submodule("conv2")``). Models return logits: no softmax inside.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

from ..engine.layers import conv_layer_names, layer_table, trace_layers

__all__ = ["Classifier", "MODELS", "build_model", "model_names", "layer_table", "trace_layers",
           "conv_layer_names", "CNN_NAMES", "RowGRU"]


class Classifier(nn.Sequential):
    """A sequential classifier that checks the shape of its input.

    Attributes:
        arch: the registry name.
        input_shape: ``(C, H, W)`` the model takes.
        num_classes: number of logits.
    """

    def __init__(self, arch: str, layers: "OrderedDict[str, nn.Module]",
                 input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__(layers)
        self.arch = arch
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch ``(N, *input_shape)``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.arch} expects input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        self.check_input(x)
        return super().forward(x)


class RowGRU(nn.GRU):
    """A GRU that reads an image row by row and returns its last hidden state.

    Input ``(N, H, W)`` (rows as a sequence of ``H`` steps of ``W`` features), output ``(N, hidden)``:
    one tensor, so a forward hook on it sees the hidden state like any other layer's output.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # noqa: D102
        out, _ = super().forward(x)
        return out[:, -1]


def _flat_size(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


def _assemble(arch: str, convs: list[tuple[str, nn.Module]], fc_widths: list[int],
              input_shape: tuple[int, int, int], num_classes: int) -> Classifier:
    """Conv blocks, then flatten, then fully connected layers with ReLU between."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(convs)
    layers["flatten"] = nn.Flatten()
    width = _flat_size(nn.Sequential(layers), input_shape)  # computed, not trusted
    widths = [width, *fc_widths, num_classes]
    for j in range(1, len(widths)):
        layers[f"fc{j}"] = nn.Linear(widths[j - 1], widths[j])
        if j < len(widths) - 1:
            layers[f"relu_fc{j}"] = nn.ReLU()
    return Classifier(arch, layers, input_shape, num_classes)


def _conv_blocks(specs: list[tuple[int, int, int, nn.Module]], in_ch: int) -> list[tuple[str, nn.Module]]:
    """``specs``: (out_channels, kernel, padding, pool module) per block."""
    out: list[tuple[str, nn.Module]] = []
    for i, (ch, k, pad, pool) in enumerate(specs, start=1):
        out += [(f"conv{i}", nn.Conv2d(in_ch, ch, k, padding=pad)), (f"relu{i}", nn.ReLU()), (f"pool{i}", pool)]
        in_ch = ch
    return out


def paper_cnn(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """Borji & Lin's network: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10."""
    convs = _conv_blocks([(20, 5, 0, nn.MaxPool2d(2)), (50, 5, 0, nn.MaxPool2d(2))], input_shape[0])
    return _assemble("paper_cnn", convs, [500], input_shape, num_classes)


def lenet(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """LeNet variant: conv 32@5x5, avg-pool, conv 48@5x5, avg-pool, fc 256, fc 84, fc 10."""
    convs = _conv_blocks([(32, 5, 0, nn.AvgPool2d(2)), (48, 5, 0, nn.AvgPool2d(2))], input_shape[0])
    return _assemble("lenet", convs, [256, 84], input_shape, num_classes)


def alexnet_small(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """Small AlexNet: three conv 3x3 (32, 32, 64) with max-pool 3x3 stride 1; fc 512, 84, 10."""
    convs = _conv_blocks([(c, 3, 0, nn.MaxPool2d(3, stride=1)) for c in (32, 32, 64)], input_shape[0])
    return _assemble("alexnet_small", convs, [512, 84], input_shape, num_classes)


def net3(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """Three conv 3x3 blocks with padding 1 (32, 64, 128), max-pool 2; fc 512, fc 10."""
    convs = _conv_blocks([(c, 3, 1, nn.MaxPool2d(2)) for c in (32, 64, 128)], input_shape[0])
    return _assemble("net3", convs, [512], input_shape, num_classes)


def mlp(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """Multi-layer perceptron 784-512-256-10 with ReLU."""
    return _assemble("mlp", [], [512, 256], input_shape, num_classes)


def logreg(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """Multinomial logistic regression: one linear layer 784-10."""
    return _assemble("logreg", [], [], input_shape, num_classes)


def gru(input_shape=(1, 28, 28), num_classes: int = 10) -> Classifier:
    """Recurrent model: a GRU with 128 hidden units reads the image row by row (28 steps of 28 pixels);
    its last hidden state goes to fc 10. (The paper's RNN: two tanh layers of 100 units, 96.36 % on MNIST.)"""
    c, h, w = input_shape
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        flatten=nn.Flatten(1, 2),  # (N, C, H, W) -> (N, C*H, W): C*H steps of W features
        gru=RowGRU(w, 128, batch_first=True),
        fc1=nn.Linear(128, num_classes))
    return Classifier("gru", layers, input_shape, num_classes)


MODELS: dict[str, Callable[..., Classifier]] = {
    "paper_cnn": paper_cnn,
    "lenet": lenet,
    "alexnet_small": alexnet_small,
    "net3": net3,
    "mlp": mlp,
    "logreg": logreg,
    "gru": gru,
}

#: Architectures with convolution layers (those the STA chapter studies).
CNN_NAMES: tuple[str, ...] = ("paper_cnn", "lenet", "alexnet_small", "net3")


def model_names() -> list[str]:
    """Names in the registry, in the book's order."""
    return list(MODELS)


def build_model(name: str, *, input_shape: tuple[int, int, int] = (1, 28, 28),
                num_classes: int = 10, seed: int | None = None) -> Classifier:
    """Build an untrained model from the registry.

    Args:
        name: one of :func:`model_names`.
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        num_classes: number of logits; default 10.
        seed: if given, the initial weights are drawn from ``torch.manual_seed(seed)``
            without disturbing the global RNG.

    Returns:
        The model (a :class:`Classifier`).

    Raises:
        ValueError: for an unknown name (the message lists the registered ones).

    Example:
        >>> m = build_model("paper_cnn")
        >>> m(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {model_names()}")
    if seed is None:
        return MODELS[name](tuple(input_shape), num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](tuple(input_shape), num_classes)
