"""Per-class mean activation maps of named layers, over noise or real images."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .kernel import Accumulator, check_n_samples, run_engine
from .noise import DEFAULT_CHUNK, ImageSource, NoiseSource

__all__ = ["ActivationStatistics", "activation_statistics", "ActivationAccumulator"]


class ActivationAccumulator(Accumulator):
    """Per group (predicted class or label): count and float64 sum of each layer's output."""

    def __init__(self, layers: Sequence[str], group_by: str) -> None:
        super().__init__()
        self.taps = tuple(layers)
        self.group_by = group_by

    def describe(self):  # noqa: D102
        return {**super().describe(), "group_by": self.group_by}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        self.shapes = {t: tap_shapes[t] for t in self.taps}
        self.acc = {"counts": torch.zeros(num_classes, dtype=torch.int64, device=device)}
        for t in self.taps:
            self.acc[f"sum:{t}"] = torch.zeros(num_classes, math.prod(tap_shapes[t]),
                                               dtype=torch.float64, device=device)

    def update(self, x, logits, taps, labels):  # noqa: D102
        group = logits.argmax(1) if self.group_by == "prediction" else labels
        for t in self.taps:
            self.acc[f"sum:{t}"].index_add_(0, group, taps[t].reshape(len(x), -1).double())
        self.acc["counts"] += torch.bincount(group, minlength=len(self.acc["counts"]))


@dataclass
class ActivationStatistics:
    """Result of :func:`activation_statistics`.

    Attributes:
        means: layer name -> float64 ``(K, *layer_output_shape)``: mean output of the layer
            per group (NaN for an empty group).
        counts: int64 ``(K,)``: stimuli per group.
        group_by: ``"prediction"`` or ``"label"``.
        n_samples: number of stimuli.
        stimulus: parameters of the stimuli.
    """

    means: dict[str, torch.Tensor]
    counts: torch.Tensor
    group_by: str
    n_samples: int
    stimulus: dict


def activation_statistics(model: nn.Module, layers: Sequence[str] | str, n_samples: int | None = None, *,
                          images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                          group_by: str | None = None, input_shape: tuple[int, ...] = (1, 28, 28),
                          noise: str = "gaussian", mean: float = 0.0, std: float = 1.0,
                          gamma: float = 0.0, signal: torch.Tensor | None = None,
                          clip: tuple[float, float] | None = None, batch_size: int | None = None,
                          seed: int = 0, device: torch.device | str | None = None,
                          autocast: torch.dtype | None = None, chunk_size: int = DEFAULT_CHUNK,
                          progress: bool = True) -> ActivationStatistics:
    """Per-class mean activation maps of the named layers.

    Over noise (default) the stimuli are grouped by the model's predicted class; over real
    ``images`` with ``labels`` they are grouped by label (``group_by="prediction"`` groups them
    by prediction instead).

    Args:
        model: any classifier; left as found.
        layers: one layer name or several.
        n_samples: noise stimuli (positive integer); with ``images``, default all images.
        images: real images ``(N, *input_shape)``; default None (noise).
        labels: int64 ``(N,)`` labels of ``images``; needed for ``group_by="label"``.
        group_by: ``"label"`` or ``"prediction"``; default ``"label"`` with labels, else ``"prediction"``.
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        noise: the noise and its parameters (``mean``, ``std``, ``gamma``, ``signal``, ``clip``,
            ``seed``, ``chunk_size``), as in :func:`~wna_helpers.ci.classification_images`.
        batch_size: default 1,024 on CPU, 32,768 on CUDA; does not change the result.
        device: the model's device (checked); default the model's device.
        autocast: ``torch.bfloat16`` or ``torch.float16`` for the forward pass; default None.
        progress: show a progress bar; default True.

    Returns:
        :class:`ActivationStatistics`; ``means[layer]`` has shape ``(K, *layer_output_shape)``.

    Example:
        >>> from wna_helpers import build_model, activation_statistics
        >>> st = activation_statistics(build_model("paper_cnn"), ["conv1"], 2_000, progress=False)
        >>> st.means["conv1"].shape
        torch.Size([10, 20, 24, 24])
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    if group_by is None:
        group_by = "label" if labels is not None else "prediction"
    if group_by not in ("label", "prediction"):
        raise ValueError(f"group_by must be 'label' or 'prediction', got {group_by!r}")
    if group_by == "label" and labels is None:
        raise ValueError("group_by='label' needs `labels` (and `images`)")
    if images is not None:
        n_samples = len(images) if n_samples is None else check_n_samples(n_samples)
        source: NoiseSource | ImageSource = ImageSource(images=images, labels=labels, chunk_size=chunk_size)
    else:
        if labels is not None:
            raise ValueError("labels were given without images")
        if n_samples is None:
            raise ValueError("n_samples must be a positive integer when no images are given")
        source = NoiseSource(kind=noise, mean=mean, std=std, gamma=gamma, signal=signal, clip=clip,
                             seed=seed, chunk_size=chunk_size)
    acc = ActivationAccumulator(layers, group_by)
    run_engine(model, source, check_n_samples(n_samples), [acc], input_shape=input_shape,
               batch_size=batch_size, device=device, autocast=autocast, progress=progress,
               desc="activations")
    counts = acc.acc["counts"].cpu()
    div = counts.double()[:, None]
    means = {t: (acc.acc[f"sum:{t}"].cpu() / div).view(len(counts), *acc.shapes[t]) for t in layers}
    return ActivationStatistics(means=means, counts=counts, group_by=group_by, n_samples=int(n_samples),
                                stimulus=source.describe())
