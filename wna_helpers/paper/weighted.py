"""The CIs the paper's gamma, attack and feed-back cells used: each noise image weighted by the model's top output.

``RF_MNIST.ipynb`` cells 47-48 wrote the CIs of its ``10way-weighted`` folders by weighting every noise image by
the model's output for the class it predicted (its largest output; our models return logits, so the largest
softmax probability). :func:`weighted_classification_images` computes those, streamed like every CI, so a
chapter can set them beside the plain means.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..engine.kernel import Accumulator, check_n_samples, describe_run, run_engine
from ..engine.options import RunOptions, resolve_options
from ..engine.stimuli import Stimulus, as_stimulus
from ..methods.ci import ClassificationImages, add_by_class

__all__ = ["WeightedCIAccumulator", "weighted_classification_images"]


class WeightedCIAccumulator(Accumulator):
    """Per predicted class: the count, and the sums of ``p * x`` and ``p`` with ``p`` the top softmax output."""

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        d = math.prod(input_shape)
        self.acc = {"counts": torch.zeros(num_classes, dtype=torch.int64, device=device),
                    "weights": torch.zeros(num_classes, dtype=torch.float64, device=device),
                    "sums": torch.zeros(num_classes, d, dtype=torch.float64, device=device),
                    "sumsq": torch.zeros(num_classes, d, dtype=torch.float64, device=device)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        k = len(self.acc["counts"])
        top, pred = torch.softmax(logits.double(), 1).max(1)   # the weights and the classes
        flat = x.reshape(len(x), -1).double()
        weighted = flat * top[:, None]
        add_by_class(self.acc["sums"], pred, weighted)
        add_by_class(self.acc["sumsq"], pred, weighted.mul_(flat))
        add_by_class(self.acc["weights"][:, None], pred, top[:, None])   # a (K, 1) view: in place
        self.acc["counts"] += torch.bincount(pred, minlength=k)


def weighted_classification_images(model: nn.Module, n_samples: int, *, noise: Stimulus | str = "uniform",
                                   input_shape: tuple[int, ...] = (1, 28, 28), run: RunOptions | None = None,
                                   **options: object) -> ClassificationImages:
    """Classification images with every noise image weighted by the model's top softmax output, as the paper's
    ``10way-weighted`` CI folders were made.

    Args:
        model: a classifier returning ``(N, K)`` logits (left as found).
        n_samples: noise samples.
        noise: the stimulus; default ``"uniform"`` (the paper's U[0, 1]).
        input_shape: one stimulus' shape; default ``(1, 28, 28)``.
        run: :class:`~wna_helpers.engine.options.RunOptions`; keywords of it apply on top.

    Returns:
        :class:`~wna_helpers.methods.ci.ClassificationImages` whose ``images`` are the weighted means
        ``sum_i p_i x_i / sum_i p_i`` over the samples predicted as each class (NaN for a class without one),
        ``counts`` the samples per class, ``sums`` and ``sumsq`` the weighted sums; no permutation null.

    Example:
        >>> import torch, wna_helpers as wna
        >>> from wna_helpers.paper import weighted_classification_images
        >>> ci = weighted_classification_images(wna.build_model("logreg", seed=0), 2000, progress=False)
        >>> ci.images.shape, int(ci.counts.sum())
        (torch.Size([10, 1, 28, 28]), 2000)
    """
    opts = resolve_options(run, options)
    stimulus = as_stimulus(noise)
    n_samples = check_n_samples(n_samples)
    acc = WeightedCIAccumulator()
    world = run_engine(model, stimulus, n_samples, [acc], input_shape=input_shape, run=opts, desc="weighted CIs")
    k = len(acc.acc["counts"])
    w = acc.acc["weights"].cpu()
    sums = acc.acc["sums"].cpu().view(k, *input_shape)
    images = sums / torch.where(w > 0, w, torch.nan).view(k, *([1] * len(input_shape)))
    return ClassificationImages(images=images, counts=acc.acc["counts"].cpu(), n_samples=n_samples, sums=sums,
                                sumsq=acc.acc["sumsq"].cpu().view(k, *input_shape),
                                stimulus={**describe_run(stimulus, opts), "weighting": "top softmax output"},
                                world_size=world)
