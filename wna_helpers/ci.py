"""Classification images: the mean noise image of each *predicted* class."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from .analysis import entropy_bits
from .kernel import Accumulator, check_n_samples, run_engine
from .noise import DEFAULT_CHUNK, NoiseSource

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
        xd = x.reshape(len(x), -1).double()
        self.acc["sums"].addmm_(onehot, xd)           # per-class sums as one matrix product
        self.acc["sumsq"].addmm_(onehot, xd.square_())
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
        noise: the parameters of the stimuli (kind, mean, std, gamma, seed ...).
        world_size: processes that shared the run.
    """

    images: torch.Tensor
    counts: torch.Tensor
    n_samples: int
    sums: torch.Tensor
    sumsq: torch.Tensor
    noise: dict
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


def classification_images(model: nn.Module, n_samples: int, *, input_shape: tuple[int, ...] = (1, 28, 28),
                          noise: str = "gaussian", mean: float = 0.0, std: float = 1.0,
                          gamma: float = 0.0, signal: torch.Tensor | None = None,
                          clip: tuple[float, float] | None = None, batch_size: int | None = None,
                          seed: int = 0, device: torch.device | str | None = None,
                          autocast: torch.dtype | None = None, chunk_size: int = DEFAULT_CHUNK,
                          checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 50,
                          progress: bool = True) -> ClassificationImages:
    """Classification images of ``model``: the mean noise image of each predicted class.

    Pushes ``n_samples`` noise images through the model in batches on its device and
    accumulates, per predicted class ``c = argmax model(x)``, the count, sum and sum of
    squares of the stimuli in float64. Nothing is stored per sample.

    Args:
        model: any classifier returning logits ``(N, K)``; left as found (training flag, grads).
        n_samples: number of noise images (positive integer).
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        noise: ``"gaussian"`` or ``"uniform"`` (on [0, 1]); default ``"gaussian"``.
        mean: Gaussian mean; default 0.
        std: Gaussian standard deviation (finite, >= 0); default 1.
        gamma: signal weight in [0, 1]: stimuli are ``(1 - gamma) * noise + gamma * image``
            with ``image`` drawn from ``signal``; default 0.
        signal: images ``(M, *input_shape)``, needed when ``gamma > 0``; default None.
        clip: ``(low, high)`` to clamp stimuli to (e.g. ``(0, 1)``), or None; default None.
        batch_size: samples per forward pass; default 1,024 on CPU, 32,768 on CUDA.
            Does not change the result.
        seed: default 0. With ``n_samples`` and the noise parameters, it fixes the result.
        device: the model's device (checked); default the model's device.
        autocast: ``torch.bfloat16`` or ``torch.float16`` for the forward pass; default None.
        chunk_size: samples per seeded chunk (part of the seed); default 4,096.
        checkpoint: path to save progress to and resume from; default None.
        checkpoint_every: batches between checkpoints; default 50.
        progress: show a progress bar; default True.

    Returns:
        :class:`ClassificationImages` with ``images`` ``(K, *input_shape)``, ``counts`` ``(K,)``,
        second moments (``variance``, ``snr``) and the ``contrast`` form.

    Raises:
        ValueError: bad ``n_samples``, noise kind, std, gamma, input shape, before any heavy work.

    Example:
        >>> from wna_helpers import build_model, classification_images
        >>> ci = classification_images(build_model("logreg"), 10_000, progress=False)
        >>> ci.images.shape, int(ci.counts.sum())
        (torch.Size([10, 1, 28, 28]), 10000)
    """
    n_samples = check_n_samples(n_samples)
    source = NoiseSource(kind=noise, mean=mean, std=std, gamma=gamma, signal=signal, clip=clip,
                         seed=seed, chunk_size=chunk_size)
    acc = CIAccumulator()
    world = run_engine(model, source, n_samples, [acc], input_shape=input_shape, batch_size=batch_size,
                       device=device, autocast=autocast, checkpoint=checkpoint,
                       checkpoint_every=checkpoint_every, progress=progress, desc="classification images")
    k = len(acc.acc["counts"])
    shape = (k, *input_shape)
    sums = acc.acc["sums"].cpu().view(shape)
    sumsq = acc.acc["sumsq"].cpu().view(shape)
    counts = acc.acc["counts"].cpu()
    images = sums / counts.double().view(-1, *([1] * len(input_shape)))
    return ClassificationImages(images=images, counts=counts, n_samples=n_samples, sums=sums, sumsq=sumsq,
                                noise=source.describe(), world_size=world)
