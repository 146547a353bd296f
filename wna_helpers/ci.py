"""Classification images: the mean noise image of each *predicted* class."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .analysis import entropy_bits
from .kernel import Accumulator, check_n_samples, describe_run, run_engine
from .options import RunOptions, resolve_options
from .stimuli import Stimulus, as_stimulus

__all__ = ["ClassificationImages", "classification_images", "CIAccumulator"]


class CIAccumulator(Accumulator):
    """Per predicted class: sample count, sum and sum of squares of the stimuli (float64)."""

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        d = math.prod(input_shape)
        self.acc = {"counts": torch.zeros(num_classes, dtype=torch.int64, device=device),
                    "sums": torch.zeros(num_classes, d, dtype=torch.float64, device=device),
                    "sumsq": torch.zeros(num_classes, d, dtype=torch.float64, device=device)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        k = len(self.acc["counts"])
        onehot = torch.nn.functional.one_hot(logits.argmax(1), k).T.double()  # (K, B)
        xd = x.reshape(len(x), -1).double()          # may be x itself: never modify it in place
        self.acc["sums"].addmm_(onehot, xd)           # per-class sums as one matrix product
        self.acc["sumsq"].addmm_(onehot, xd.square())
        self.acc["counts"] += onehot.sum(1).long()


@dataclass
class ClassificationImages:
    """Result of :func:`classification_images`.

    Attributes:
        images: float64 ``(K, *input_shape)``: mean stimulus per predicted class
            (NaN for a class that received no sample; check ``counts``).
        counts: int64 ``(K,)``: samples predicted as each class; sums to ``n_samples``.
        n_samples: number of stimuli.
        sums: float64 ``(K, *input_shape)``: per-class sum of stimuli.
        sumsq: float64 ``(K, *input_shape)``: per-class sum of squared stimuli.
        stimulus: the complete description of the stimuli (kind and parameters, seed, chunk size).
        world_size: processes that shared the run.
    """

    images: torch.Tensor
    counts: torch.Tensor
    n_samples: int
    sums: torch.Tensor
    sumsq: torch.Tensor
    stimulus: dict
    world_size: int = 1

    @property
    def num_classes(self) -> int:
        return int(self.counts.numel())

    @property
    def proportions(self) -> torch.Tensor:
        """Share of the noise predicted as each class, float64 ``(K,)``."""
        return self.counts.double() / self.n_samples

    @property
    def entropy(self) -> float:
        """Entropy of the predicted-class histogram in bits (log2 K when uniform)."""
        return entropy_bits(self.counts)

    @property
    def variance(self) -> torch.Tensor:
        """Per-class, per-pixel variance of the stimuli (unbiased), ``(K, *input_shape)``."""
        n = self.counts.double().view(-1, *([1] * (self.sums.dim() - 1)))
        return (self.sumsq - self.sums.square() / n) / (n - 1)

    @property
    def snr(self) -> torch.Tensor:
        """Per-pixel signal-to-noise map: (CI - overall mean) / standard error, ``(K, *input_shape)``."""
        n = self.counts.double().view(-1, *([1] * (self.sums.dim() - 1)))
        return (self.images - self.mean_stimulus) / (self.variance / n).sqrt()

    @property
    def mean_stimulus(self) -> torch.Tensor:
        """Mean of all stimuli, ``input_shape``."""
        return self.sums.sum(0) / self.n_samples

    @property
    def contrast(self) -> torch.Tensor:
        """Contrast CI: class mean minus the mean of the stimuli predicted as any other class."""
        others = (self.sums.sum(0, keepdim=True) - self.sums)
        n_other = (self.n_samples - self.counts).double().view(-1, *([1] * (self.sums.dim() - 1)))
        return self.images - others / n_other


def classification_images(model: nn.Module, n_samples: int, *, noise: Stimulus | str = "gaussian",
                          input_shape: tuple[int, ...] = (1, 28, 28), run: RunOptions | None = None,
                          **options: object) -> ClassificationImages:
    """Classification images of ``model``: the mean noise image of each predicted class.

    Pushes ``n_samples`` noise images through the model in batches on its device and
    accumulates, per predicted class ``c = argmax model(x)``, the count, sum and sum of
    squares of the stimuli in float64. Nothing is stored per sample.

    Args:
        model: any classifier returning logits ``(N, K)``; left as found (training flag, grads).
        n_samples: number of noise images (positive integer).
        noise: a stimulus (:class:`~wna_helpers.stimuli.Gaussian`, :class:`~wna_helpers.stimuli.Uniform`,
            :class:`~wna_helpers.stimuli.Mixture` of noise and images, ...) or the shorthand
            ``"gaussian"`` (N(0, 1)) or ``"uniform"`` (U[0, 1]); default ``"gaussian"``.
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        run: :class:`~wna_helpers.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords, applied on top of ``run``: ``batch_size`` (default
            1,024 on CPU, 32,768 on CUDA; does not change the result), ``seed`` (default 0),
            ``device`` (the model's, checked), ``autocast`` (None), ``checkpoint`` (None: a file
            to save progress to and resume from), ``checkpoint_every`` (50 batches),
            ``progress`` (True), ``chunk_size`` (4,096 samples per seeded chunk).

    Returns:
        :class:`ClassificationImages` with ``images`` ``(K, *input_shape)``, ``counts`` ``(K,)``,
        second moments (``variance``, ``snr``) and the ``contrast`` form.

    Raises:
        ValueError: bad ``n_samples``, noise, run option or input shape, before any heavy work.
        TypeError: an unknown run option (the message lists them).

    Example:
        >>> import wna_helpers as wna
        >>> ci = wna.classification_images(wna.build_model("logreg"), 10_000, noise=wna.Uniform(),
        ...                                progress=False)
        >>> ci.images.shape, int(ci.counts.sum())
        (torch.Size([10, 1, 28, 28]), 10000)
    """
    n_samples = check_n_samples(n_samples)
    opts = resolve_options(run, options)
    stimulus = as_stimulus(noise)
    acc = CIAccumulator()
    world = run_engine(model, stimulus, n_samples, [acc], input_shape=input_shape, run=opts,
                       desc="classification images")
    k = len(acc.acc["counts"])
    shape = (k, *input_shape)
    sums = acc.acc["sums"].cpu().view(shape)
    sumsq = acc.acc["sumsq"].cpu().view(shape)
    counts = acc.acc["counts"].cpu()
    images = sums / counts.double().view(-1, *([1] * len(input_shape)))
    return ClassificationImages(images=images, counts=counts, n_samples=n_samples, sums=sums, sumsq=sumsq,
                                stimulus=describe_run(stimulus, opts), world_size=world)

