"""Classification images: the mean noise image of each *predicted* class, with the statistics
that say which of their pixels are real (:mod:`~wna_helpers.methods.ci_stats`), from the same pass."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import ci_stats
from .summaries import entropy_bits
from .ci_stats import (DEFAULT_PERMUTATIONS, ClassCovarianceAccumulator, CIStatsAccumulator, ClusterTest, SecondOrderCI,
                       class_indicators)
from ..engine.kernel import Accumulator, StopRule, check_n_samples, describe_run, run_engine
from ..engine.options import RunOptions, resolve_options
from ..engine.stimuli import Stimulus, as_stimulus

__all__ = ["ClassificationImages", "classification_images", "CIAccumulator", "ci_result", "add_by_class",
           "count_by_class"]


class CIAccumulator(Accumulator):
    """Per predicted class: sample count, sum and sum of squares of the stimuli (float64)."""

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        if num_classes < 2:
            raise ValueError(f"the model returns {num_classes} logit per input; classification images need at least "
                             f"two classes (a one-output sigmoid model: return torch.cat([-z, z], 1))")
        d = math.prod(input_shape)
        self.acc = {"counts": torch.zeros(num_classes, dtype=torch.int64, device=device),
                    "sums": torch.zeros(num_classes, d, dtype=torch.float64, device=device),
                    "sumsq": torch.zeros(num_classes, d, dtype=torch.float64, device=device)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        pred = logits.argmax(1)
        xd = x.reshape(len(x), -1).double()          # may be x itself: never modify it in place
        add_by_class(self.acc["sums"], pred, xd)
        add_by_class(self.acc["sumsq"], pred, xd.square_() if xd.data_ptr() != x.data_ptr() else xd.square())
        count_by_class(self.acc["counts"], pred)


def count_by_class(counts: torch.Tensor, classes: torch.Tensor) -> None:
    """``counts[c] += (classes == c).sum()`` for every class at once, in place (int64 ``(K,)``).

    ``torch.bincount`` on a CPU; elsewhere an integer ``index_add_`` (exact in any order), since ``bincount``
    on a GPU reads the largest class back to the host and so waits for every kernel queued before it.
    """
    if counts.device.type == "cpu":
        counts += torch.bincount(classes, minlength=len(counts))
    else:
        counts.index_add_(0, classes, torch.ones_like(classes, dtype=counts.dtype))


def add_by_class(total: torch.Tensor, classes: torch.Tensor, rows: torch.Tensor) -> None:
    """``total[c] += rows[classes == c].sum(0)`` for every class ``c`` at once, in place.

    On a CPU each row is added to its class's row (``index_add_``): the same float64 sums as a one-hot matrix
    product at 1.2-1.6 against 2.6 microseconds a sample inside the CI engine's runs
    (``benchmarks/accumulator_benchmark.py``, ``paper_cnn`` and ``lenet``, 2026-12-03). Elsewhere it is that
    product (:func:`class_indicators`, which never waits for the device), since CUDA's ``index_add_`` adds floats
    atomically, in no set order.

    Args:
        total: ``(K, D)`` sums to add to.
        classes: int64 ``(B,)`` class of each row, in ``[0, K)``.
        rows: ``(B, D)`` of ``total``'s dtype and device.

    Example:
        >>> t = torch.zeros(2, 1, dtype=torch.float64)
        >>> add_by_class(t, torch.tensor([1, 1, 0]), torch.tensor([[1.0], [2.0], [4.0]], dtype=torch.float64))
        >>> t.flatten().tolist()
        [4.0, 3.0]
    """
    if total.device.type == "cpu":
        total.index_add_(0, classes, rows)
    else:
        total.addmm_(class_indicators(classes, len(total), rows.dtype), rows)


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
        null_images: float64 ``(K, C, *input_shape)``: the permutation-null CIs (labels permuted
            within each chunk, counts kept), or None when the run kept none.
        odd_sums: float64 ``(C, *input_shape)``: class sums of the odd-numbered chunks (None if not kept).
        odd_counts: int64 ``(C,)``: class counts of the odd-numbered chunks.
        logit_images: float64 ``(C, *input_shape)``: each logit regressed on the noise (None if not kept).
        stopped_early: True when ``until_reliability`` ended the run before the cap.
        outer_sums: float64 ``(C, D, D)``: per-class sums of ``x x^T`` (``second_order=True`` runs only).

    The statistics (:mod:`~wna_helpers.methods.ci_stats`): ``zmap``, ``fwer_pvalues``,
    ``significant(alpha)``, ``clusters(alpha, threshold)``, ``info``; ``split_half``,
    ``reliability``, ``samples_needed(target)``.
    """

    images: torch.Tensor
    counts: torch.Tensor
    n_samples: int
    sums: torch.Tensor
    sumsq: torch.Tensor
    stimulus: dict
    world_size: int = 1
    null_images: torch.Tensor | None = None
    odd_sums: torch.Tensor | None = None
    odd_counts: torch.Tensor | None = None
    logit_images: torch.Tensor | None = None
    stopped_early: bool = False
    outer_sums: torch.Tensor | None = None

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

    # ------------------------------------------------------------------ the permutation null
    def _nulls(self) -> torch.Tensor:
        if self.null_images is None or len(self.null_images) < 3:
            k = 0 if self.null_images is None else len(self.null_images)
            raise ValueError(f"this result has {k} null CIs; run classification_images with "
                             f"null_permutations >= 3 (default {DEFAULT_PERMUTATIONS})")
        return self.null_images

    @property
    def zmap(self) -> torch.Tensor:
        """(CI - null mean) / null std per class and pixel, float64 ``(C, *input_shape)``."""
        return ci_stats.zmap(self.images, self._nulls())

    @property
    def fwer_pvalues(self) -> torch.Tensor:
        """Family-wise-error-corrected p-value of every pixel (max-statistic permutation test over
        the pixels of its class), float64 ``(C, *input_shape)``; the smallest possible is ``1/(K+1)``."""
        return ci_stats.fwer_pvalues(self.images, self._nulls())

    def significant(self, alpha: float = 0.05) -> torch.Tensor:
        """Pixels whose CI differs from chance with the family-wise error over the pixels of each
        class map held at ``alpha`` (default 0.05): bool ``(C, *input_shape)``.

        Raises:
            ValueError: ``alpha`` outside (0, 1) or below ``1/(K+1)``, or no null CIs.
        """
        ci_stats._check_alpha(alpha, len(self._nulls()))
        return self.fwer_pvalues <= alpha

    def clusters(self, alpha: float = 0.05, threshold: float = 3.0) -> ClusterTest:
        """Cluster-mass permutation test: 4-connected pixels with ``|z| > threshold`` (default 3)
        of one sign, significant when their summed ``|z|`` beats the largest cluster of the null
        maps at level ``alpha`` (default 0.05). Returns a :class:`~wna_helpers.methods.ci_stats.ClusterTest`."""
        return ci_stats.cluster_test(self.images, self._nulls(), alpha=alpha, threshold=threshold)

    @property
    def info(self) -> torch.Tensor:
        """infoVal-style score per class, float64 ``(C,)``: how many robust standard deviations the
        norm of the CI lies above the norms of the null CIs (above about 2: more than chance)."""
        return ci_stats.info_scores(self.images, self._nulls())

    # ------------------------------------------------------------------ reliability
    def _halves(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.odd_sums is None or self.odd_counts is None:
            raise ValueError("this result has no split-half sums; run classification_images to get them")
        shape = (-1, *([1] * (self.sums.dim() - 1)))
        n_odd = self.odd_counts.double()
        odd = self.odd_sums / n_odd.view(shape)
        even = (self.sums - self.odd_sums) / (self.counts.double() - n_odd).view(shape)
        # each half minus its own mean stimulus: structure the noise itself has is not reliability
        mean_odd = self.odd_sums.sum(0) / n_odd.sum()
        mean_even = (self.sums - self.odd_sums).sum(0) / (self.counts.sum() - n_odd.sum())
        return odd - mean_odd, even - mean_even

    @property
    def split_half(self) -> torch.Tensor:
        """Pearson correlation between the CIs of the odd and of the even chunks, float64 ``(C,)``
        (NaN for a class missing from either half)."""
        return ci_stats.split_half(*self._halves())

    @property
    def reliability(self) -> torch.Tensor:
        """Split-half reliability with the Spearman-Brown correction, ``2r / (1 + r)``, float64 ``(C,)``:
        the expected correlation of this CI with the CI of an independent run of the same length."""
        return ci_stats.spearman_brown(self.split_half)

    def samples_needed(self, target: float = 0.9) -> torch.Tensor:
        """Noise samples for each class's CI to reach reliability ``target`` (default 0.9), float64
        ``(C,)``, by the Spearman-Brown prophecy with the class shares of this run."""
        return ci_stats.samples_needed(self.reliability, self.n_samples, target)

    def second_order(self, components: int = 4) -> SecondOrderCI:
        """Second-order CIs: each class's noise covariance minus that of all the noise, and its
        ``components`` (default 4) eigen-images of largest ``|eigenvalue|``: what besides the mean drives a
        class. Needs a run with ``second_order=True``."""
        if self.outer_sums is None:
            raise ValueError("this result has no second-order sums; run classification_images with "
                             "second_order=True")
        return ci_stats.second_order(self.outer_sums, self.sums, self.counts, components)

    @property
    def contrast(self) -> torch.Tensor:
        """Contrast CI: class mean minus the mean of the stimuli predicted as any other class."""
        others = (self.sums.sum(0, keepdim=True) - self.sums)
        n_other = (self.n_samples - self.counts).double().view(-1, *([1] * (self.sums.dim() - 1)))
        return self.images - others / n_other


def classification_images(model: nn.Module, n_samples: int, *, noise: Stimulus | str = "gaussian",
                          input_shape: tuple[int, ...] = (1, 28, 28),
                          null_permutations: int = DEFAULT_PERMUTATIONS, until_reliability: float | None = None,
                          second_order: bool = False, run: RunOptions | None = None,
                          **options: object) -> ClassificationImages:
    """Classification images of ``model``: the mean noise image of each predicted class.

    Pushes ``n_samples`` noise images through the model in batches on its device and
    accumulates, per predicted class ``c = argmax model(x)``, the count, sum and sum of
    squares of the stimuli in float64. Nothing is stored per sample. In the same pass, per
    seeded chunk: ``null_permutations`` label-permuted null CIs, the class sums of the odd
    chunks (split-half reliability) and the logit-weighted sums (logit images); see
    :mod:`~wna_helpers.methods.ci_stats`.

    Args:
        model: any classifier returning logits ``(N, K)``; left as found (training flag, grads).
        n_samples: number of noise images (positive integer).
        noise: a stimulus (:class:`~wna_helpers.engine.stimuli.Gaussian`, :class:`~wna_helpers.engine.stimuli.Uniform`,
            :class:`~wna_helpers.engine.stimuli.Mixture` of noise and images, ...) or the shorthand
            ``"gaussian"`` (N(0, 1)) or ``"uniform"`` (U[0, 1]); default ``"gaussian"``.
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        null_permutations: null CIs per class, from the predicted labels permuted within each
            chunk (no extra forward pass); default 32; 0 keeps none (``zmap``, ``significant``,
            ``clusters`` and ``info`` then raise).
        until_reliability: stop once every class with samples in both halves has a split-half
            reliability of at least this (checked every 4 chunks, so the stopping point does not
            depend on the batch size); ``n_samples`` is then the cap; default None (run all).
        second_order: also accumulate each class's sum of ``x x^T`` for second-order CIs
            (:meth:`ClassificationImages.second_order`); ``D^2`` multiply-adds per sample and ``K D^2``
            floats of memory; default False.
        run: :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords, applied on top of ``run``: ``batch_size`` (default
            32,768 on CUDA, on a CPU 1,024 or less for wide models; does not change the result), ``seed`` (default 0),
            ``device`` (the model's, checked), ``autocast`` (None), ``checkpoint`` (None: a file
            to save progress to and resume from), ``checkpoint_every`` (50 batches),
            ``progress`` (True), ``chunk_size`` (4,096 samples per seeded chunk).

    Returns:
        :class:`ClassificationImages` with ``images`` ``(K, *input_shape)``, ``counts`` ``(K,)``,
        second moments (``variance``, ``snr``), the ``contrast`` form, ``null_images``
        ``(K, C, *input_shape)``, ``logit_images`` ``(C, *input_shape)`` and the split-half sums.

    Raises:
        ValueError: bad ``n_samples``, noise, run option, input shape, ``null_permutations`` or
            ``until_reliability``, before any heavy work.
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
    if until_reliability is not None and (isinstance(until_reliability, bool) or
                                          not isinstance(until_reliability, (int, float)) or
                                          not 0 < until_reliability < 1):
        raise ValueError(f"until_reliability must be a number in (0, 1) or None, got {until_reliability!r}")
    if not isinstance(second_order, bool):
        raise ValueError(f"second_order must be True or False, got {second_order!r}")
    acc, stats = CIAccumulator(), CIStatsAccumulator(null_permutations)
    extra = [ClassCovarianceAccumulator()] if second_order else []
    stop = None
    if until_reliability is not None:
        def reached() -> bool:
            r = ci_result(acc, stats, input_shape, n_samples, stimulus, opts, 1).reliability
            has = (stats.acc["odd_counts"].cpu() >= 2) & ((acc.acc["counts"] - stats.acc["odd_counts"]).cpu() >= 2)
            return bool(has.any()) and bool((r[has] >= until_reliability).all())
        stop = StopRule(reached)
    world = run_engine(model, stimulus, n_samples, [acc, stats, *extra], input_shape=input_shape, run=opts,
                       desc="classification images", stop=stop)
    used = n_samples if stop is None else int(stop.n_samples)
    out = ci_result(acc, stats, input_shape, used, stimulus, opts, world)
    out.stopped_early = stop is not None and stop.stopped
    if extra:
        out.outer_sums = extra[0].acc["outer"].cpu()
    return out


def ci_result(acc: CIAccumulator, stats: CIStatsAccumulator, input_shape: tuple[int, ...], n_samples: int,
            stimulus: Stimulus, opts: RunOptions, world: int) -> ClassificationImages:
    """The :class:`ClassificationImages` of the accumulators' totals."""
    k = len(acc.acc["counts"])
    shape = (k, *input_shape)
    sums = acc.acc["sums"].cpu().view(shape)
    sumsq = acc.acc["sumsq"].cpu().view(shape)
    counts = acc.acc["counts"].cpu()
    per_class = counts.double().view(-1, *([1] * len(input_shape)))
    t = {name: v.cpu() for name, v in stats.acc.items()}
    n = int(counts.sum())
    nulls = (sums + t["null_sums"].view(-1, *shape)) / per_class if stats.k else None  # kept as differences
    logit = ci_stats.logit_regression(t["logit_cross"], sums.sum(0).flatten(), sumsq.sum(0).flatten(), n)
    return ClassificationImages(images=sums / per_class, counts=counts, n_samples=n_samples, sums=sums,
                                sumsq=sumsq, stimulus=describe_run(stimulus, opts), world_size=world,
                                null_images=nulls, odd_sums=t["odd_sums"].view(shape),
                                odd_counts=t["odd_counts"], logit_images=logit.view(shape))
