"""Per-class mean activation maps of named layers, over noise or real images."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..engine.kernel import Accumulator, describe_run, resolve_n_samples, run_engine
from ..engine.options import RunOptions, resolve_options
from ..engine.stimuli import Images, Stimulus, as_stimulus

__all__ = ["ActivationStatistics", "activation_statistics", "ActivationAccumulator"]


class ActivationAccumulator(Accumulator):
    """Per group (predicted class or label): count and float64 sum of each layer's output."""

    def __init__(self, layers: Sequence[str], group_by: str, max_label: int | None = None) -> None:
        super().__init__()
        self.taps = tuple(layers)
        self.group_by = group_by
        self.max_label = max_label  # the largest label of the run, checked against the model's classes

    def describe(self):  # noqa: D102
        return {**super().describe(), "group_by": self.group_by}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        if self.group_by == "label" and self.max_label is not None and self.max_label >= num_classes:
            raise ValueError(f"labels go up to {self.max_label} but the model has {num_classes} classes; labels must "
                             f"lie in [0, {num_classes})")
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

    def result(self, n_samples: int, stimulus: dict) -> "ActivationStatistics":
        """The :class:`ActivationStatistics` of the totals accumulated so far."""
        counts = self.acc["counts"].cpu()
        div = counts.double()[:, None]
        means = {t: (self.acc[f"sum:{t}"].cpu() / div).view(len(counts), *self.shapes[t]) for t in self.taps}
        return ActivationStatistics(means=means, counts=counts, group_by=self.group_by, n_samples=int(n_samples),
                                    stimulus=stimulus)


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
                          noise: Stimulus | str = "gaussian", group_by: str | None = None,
                          input_shape: tuple[int, ...] = (1, 28, 28), run: RunOptions | None = None,
                          **options: object) -> ActivationStatistics:
    """Per-class mean activation maps of the named layers.

    Over noise (default) the stimuli are grouped by the model's predicted class; over real
    images with labels (``noise=Images(images, labels)``) they are grouped by label
    (``group_by="prediction"`` groups them by prediction instead).

    Args:
        model: any classifier; left as found.
        layers: one layer name or several.
        n_samples: number of stimuli (positive integer); default all images for
            :class:`~wna_helpers.engine.stimuli.Images`, required for noise.
        noise: the stimulus, as in :func:`~wna_helpers.methods.ci.classification_images`, or
            :class:`~wna_helpers.engine.stimuli.Images` (with ``labels`` to group by label); default ``"gaussian"``.
        group_by: ``"label"`` or ``"prediction"``; default ``"label"`` for images with labels, else
            ``"prediction"``.
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        run: :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords (``batch_size``, ``seed``, ``device``, ``autocast``,
            ``progress``, ...), as in :func:`~wna_helpers.methods.ci.classification_images`.

    Returns:
        :class:`ActivationStatistics`; ``means[layer]`` has shape ``(K, *layer_output_shape)``.

    Example:
        >>> import wna_helpers as wna
        >>> st = wna.activation_statistics(wna.build_model("paper_cnn"), ["conv1"], 2_000, progress=False)
        >>> st.means["conv1"].shape
        torch.Size([10, 20, 24, 24])
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer")
    opts = resolve_options(run, options)
    stimulus = as_stimulus(noise)
    labelled = isinstance(stimulus, Images) and stimulus.labels is not None
    if group_by is None:
        group_by = "label" if labelled else "prediction"
    if group_by not in ("label", "prediction"):
        raise ValueError(f"group_by must be 'label' or 'prediction', got {group_by!r}")
    if group_by == "label" and not labelled:
        raise ValueError("group_by='label' needs real images with labels: noise=Images(images, labels)")
    n_samples = resolve_n_samples(stimulus, n_samples)
    top = int(stimulus.labels[:n_samples].max()) if labelled else None  # type: ignore[union-attr]
    acc = ActivationAccumulator(layers, group_by, top)
    run_engine(model, stimulus, n_samples, [acc], input_shape=input_shape, run=opts, desc="activations")
    return acc.result(n_samples, describe_run(stimulus, opts))
