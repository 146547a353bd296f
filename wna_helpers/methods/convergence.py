"""How estimates converge with the number of noise samples, from one run.

The engine's sample ``i`` is the same for every run length (counter-based seeding), so
copying the running sums after the first ``n`` samples, for every ``n`` of a series,
gives what separate runs of each ``n`` give, at the cost of the longest one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from .activations import ActivationAccumulator, ActivationStatistics
from . import ci_stats
from .ci import CIAccumulator, ClassificationImages
from .ci_stats import DEFAULT_PERMUTATIONS, CIStatsAccumulator
from ..engine.kernel import Accumulator, check_n_samples, describe_run, run_engine
from ..engine.layers import conv_layer_names
from ..engine.options import RunOptions, resolve_options
from ..engine.stimuli import Stimulus, as_stimulus
from .sta import STAAccumulator, SpikeTriggeredAverage, filter_correlation, receptive_field

__all__ = ["geometric_sizes", "PrefixSnapshots", "CIConvergence", "ci_convergence", "STAConvergence",
           "sta_convergence", "sta_convergence_with_activations"]


def geometric_sizes(n_final: int, start: int = 500, factor: float = 2.0) -> list[int]:
    """Sample counts ``start, start*factor, ...`` below ``n_final``, then ``n_final`` itself.

    Args:
        n_final: the last (largest) size.
        start: the first size (clipped to ``n_final``); default 500.
        factor: ratio between sizes (> 1); default 2.

    Returns:
        Strictly increasing ints ending with ``n_final``.

    Raises:
        ValueError: ``n_final`` or ``start`` not positive, or ``factor <= 1``.
    """
    n_final, start = check_n_samples(n_final), check_n_samples(start)
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    sizes: list[int] = []
    s = float(min(start, n_final))
    while round(s) < n_final:
        if not sizes or round(s) > sizes[-1]:
            sizes.append(int(round(s)))
        s *= factor
    return sizes + [n_final]


class PrefixSnapshots(Accumulator):
    """Wraps another accumulator and copies its totals after the first ``n`` samples, for each ``n`` in ``sizes``.

    The engine's sample ``i`` is the same for every run length (counter-based seeding), so the
    snapshot at ``n`` equals (up to float64 summation order) what a run of ``n`` samples gives:
    one pass of ``max(sizes)`` samples yields the whole convergence series. Batches are split at the
    boundaries. Single process only (with ``torch.distributed`` ranks see interleaved chunks), and
    not resumable from a checkpoint. Per-chunk statistics (:meth:`Accumulator.end_chunk`) in a
    snapshot at ``n`` cover the chunks that ended by sample ``n``.
    """

    def __init__(self, inner: Accumulator, sizes: list[int]) -> None:
        super().__init__()
        if list(sizes) != sorted(set(sizes)) or not sizes or sizes[0] <= 0:
            raise ValueError(f"sizes must be strictly increasing positive integers, got {sizes!r}")
        self.inner, self.sizes = inner, [int(s) for s in sizes]
        self.taps, self.needs_logits, self.relu_taps = inner.taps, inner.needs_logits, inner.relu_taps
        self.cpu_batch_cap = inner.cpu_batch_cap
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.seen = 0

    @property
    def owns_taps(self) -> bool:  # type: ignore[override]
        """The inner accumulator's: the engine's word on whether it may write into its taps passes through."""
        return self.inner.owns_taps

    @owns_taps.setter
    def owns_taps(self, value: bool) -> None:
        self.inner.owns_taps = value

    def describe(self):  # noqa: D102
        return {**super().describe(), "inner": self.inner.describe(), "sizes": self.sizes}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        self.inner.setup(num_classes, input_shape, device, tap_shapes)
        self.acc = self.inner.acc  # the engine checkpoints and reduces the running totals

    def _feed(self, lo, hi, x, logits, taps, labels) -> None:
        if hi > lo:
            self.inner.update(x[lo:hi], None if logits is None else logits[lo:hi], {t: v[lo:hi] for t, v in taps.items()},
                              None if labels is None else labels[lo:hi])

    def update(self, x, logits, taps, labels):  # noqa: D102
        start, end, lo = self.seen, self.seen + len(x), 0
        while len(self.snapshots) < len(self.sizes) and self.sizes[len(self.snapshots)] <= end:
            cut = self.sizes[len(self.snapshots)] - start
            self._feed(lo, cut, x, logits, taps, labels)
            lo = cut
            self.snapshots.append({k: v.detach().cpu().clone() for k, v in self.inner.acc.items()})
        self._feed(lo, len(x), x, logits, taps, labels)
        self.seen = end

    @property
    def wants_chunks(self) -> bool:  # noqa: D102
        return self.inner.wants_chunks

    def end_chunk(self, chunk):  # noqa: D102
        self.inner.end_chunk(chunk)
        if self.snapshots and self.sizes[len(self.snapshots) - 1] == self.seen:   # the chunk ended at that size
            self.snapshots[-1] = {k: v.detach().cpu().clone() for k, v in self.inner.acc.items()}


def _run_prefixes(model: nn.Module, inners: list[Accumulator], sizes: list[int], stimulus: Stimulus,
                  input_shape: tuple[int, ...], opts: RunOptions, desc: str,
                  extra: Sequence[Accumulator] = ()) -> list[list[dict]]:
    """Snapshots of each of ``inners`` (one list per accumulator) from one pass of ``max(sizes)`` samples.

    ``extra`` accumulators ride along on the same pass without snapshots (their totals are in them).
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise RuntimeError("prefix snapshots need a single process (ranks see interleaved chunks)")
    if opts.checkpoint is not None:
        raise ValueError("convergence runs cannot be checkpointed (their snapshots are not saved); "
                         "pass checkpoint=None")
    snaps = [PrefixSnapshots(a, sizes) for a in inners]
    run_engine(model, stimulus, sizes[-1], [*snaps, *extra], input_shape=input_shape, run=opts, desc=desc)
    for snap in snaps:
        if len(snap.snapshots) != len(sizes):  # cannot happen in one process; guard anyway
            raise RuntimeError(f"expected {len(sizes)} snapshots, got {len(snap.snapshots)}")
    return [snap.snapshots for snap in snaps]


def _checked_sizes(sizes: list[int] | tuple[int, ...]) -> list[int]:
    out = [check_n_samples(s) for s in sizes]
    if not out or out != sorted(set(out)):
        raise ValueError(f"sizes must be strictly increasing positive integers, got {list(sizes)!r}")
    return out


@dataclass
class CIConvergence:
    """Classification images after the first ``n`` noise samples, for each ``n`` in ``sizes``.

    Attributes:
        sizes: the sample counts ``(S,)``; the last is the final run length.
        counts: int64 ``(S, K)``: samples predicted as each class within the first ``n``.
        sums: float64 ``(S, K, *input_shape)``: per-class sums of those samples.
        sumsq: float64 ``(S, K, *input_shape)``: per-class sums of squares.
        stimulus: the complete description of the stimuli.
        odd_sums: float64 ``(S, K, *input_shape)``: class sums of the odd chunks ended by each size.
        odd_counts: int64 ``(S, K)``: their counts.
        null_images: float64 ``(P, K, *input_shape)``: the final size's permutation-null CIs (``P``
            permutations; None when none were kept).
        logit_images: float64 ``(K, *input_shape)``: the final size's logit images.
    """

    sizes: list[int]
    counts: torch.Tensor
    sums: torch.Tensor
    sumsq: torch.Tensor
    stimulus: dict
    odd_sums: torch.Tensor | None = None
    odd_counts: torch.Tensor | None = None
    null_images: torch.Tensor | None = None
    logit_images: torch.Tensor | None = None

    @property
    def images(self) -> torch.Tensor:
        """``(S, K, *input_shape)``: the CI at each size (NaN for a class without samples yet)."""
        return self.sums / self.counts.double().view(*self.counts.shape, *([1] * (self.sums.dim() - 2)))

    def snapshot(self, n: int) -> ClassificationImages:
        """The :class:`ClassificationImages` of the first ``n`` samples (``n`` must be one of ``sizes``)."""
        if n not in self.sizes:
            raise ValueError(f"n={n} is not one of the sizes {self.sizes}")
        i = self.sizes.index(n)
        final = i == len(self.sizes) - 1
        return ClassificationImages(images=self.images[i], counts=self.counts[i], n_samples=int(n),
                                    sums=self.sums[i], sumsq=self.sumsq[i], stimulus=dict(self.stimulus),
                                    null_images=self.null_images if final else None,
                                    odd_sums=None if self.odd_sums is None else self.odd_sums[i],
                                    odd_counts=None if self.odd_counts is None else self.odd_counts[i],
                                    logit_images=self.logit_images if final else None)

    def reliability(self) -> torch.Tensor:
        """Split-half reliability (odd against even chunks, Spearman-Brown) of every class's CI at
        every size, float64 ``(S, K)``; NaN where a half has fewer than two samples of the class."""
        out = torch.stack([self.snapshot(n).reliability for n in self.sizes])
        few = (self.odd_counts < 2) | (self.counts - self.odd_counts < 2)
        return out.masked_fill(few, float("nan"))

    def correlation_with_final(self) -> torch.Tensor:
        """Pearson r ``(S, K)`` of each class's CI at size ``n`` with its CI at the final size.

        NaN where the class has fewer than two samples at ``n`` or none at the end. The last row
        is 1 for every class with at least two samples.
        """
        imgs = self.images.reshape(len(self.sizes), self.counts.shape[1], -1)
        final = imgs[-1]
        x = imgs - imgs.mean(-1, keepdim=True)
        f = final - final.mean(-1, keepdim=True)
        r = (x * f).sum(-1) / (x.norm(dim=-1) * f.norm(dim=-1))
        r[self.counts < 2] = float("nan")
        r[:, self.counts[-1] < 2] = float("nan")
        return r

    def null_correlation(self) -> torch.Tensor:
        """``(S,)``: ``sqrt(n / N)``, the expected correlation with the final CI of a CI that holds no
        signal at all (pure noise): the first ``n`` samples are shared with the final ``N``. A CI whose
        curve lies on this line tells nothing about the model."""
        return (torch.tensor(self.sizes, dtype=torch.float64) / self.sizes[-1]).sqrt()

    def correlation_across_halves(self) -> torch.Tensor:
        """Pearson r ``(S, K)`` of each class's CI from the odd chunks within the first ``n`` samples with its
        CI from the even chunks of the whole run.

        The two share no sample, so a CI without any signal gives r near 0 at every size (the first ``n``
        samples of :meth:`correlation_with_final` are part of its final ``N``: r = sqrt(n / N) from noise
        alone). NaN where either half has fewer than two samples of the class.

        Raises:
            ValueError: the result has no split-half sums.
        """
        if self.odd_sums is None or self.odd_counts is None:
            raise ValueError("this result has no split-half sums; run ci_convergence to get them")
        s, k = len(self.sizes), self.counts.shape[1]
        extra = [1] * (self.sums.dim() - 2)
        odd = (self.odd_sums / self.odd_counts.double().view(s, k, *extra)).reshape(s, k, -1)
        even_n = self.counts[-1] - self.odd_counts[-1]
        even = ((self.sums[-1] - self.odd_sums[-1]) / even_n.double().view(k, *extra)).reshape(1, k, -1)
        x = odd - odd.mean(-1, keepdim=True)
        e = even - even.mean(-1, keepdim=True)
        r = (x * e).sum(-1) / (x.norm(dim=-1) * e.norm(dim=-1))
        r[self.odd_counts < 2] = float("nan")
        r[:, even_n < 2] = float("nan")
        return r

    def class_points(self, *, across_halves: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (class, size) as a point ``(N_c at that size, r)``, NaN dropped, sorted by ``N_c``: how the
        agreement grows with the samples a class received.

        Args:
            across_halves: r of :meth:`correlation_across_halves` against the class's samples in the odd half
                (every size); default False: r with the final CI against all its samples (the sizes before the
                final one).
        """
        if across_halves:
            r, n = self.correlation_across_halves().flatten(), self.odd_counts.flatten().double()
        else:
            r, n = self.correlation_with_final()[:-1].flatten(), self.counts[:-1].flatten().double()
        ok = ~torch.isnan(r)
        order = torch.argsort(n[ok])
        return n[ok][order], r[ok][order]

    def mean_correlation(self, *, across_halves: bool = False) -> torch.Tensor:
        """``(S,)``: the per-class correlations (:meth:`correlation_with_final`, or with ``across_halves``
        :meth:`correlation_across_halves`) averaged with the final class counts as weights (classes the model
        (almost) never predicts do not count)."""
        return self._count_weighted(self.correlation_across_halves() if across_halves
                                    else self.correlation_with_final())

    def mean_reliability(self) -> torch.Tensor:
        """``(S,)``: :meth:`reliability` averaged over classes with the final class counts as weights,
        as :meth:`mean_correlation` (NaN at a size where no class has both halves)."""
        return self._count_weighted(self.reliability())

    def _count_weighted(self, r: torch.Tensor) -> torch.Tensor:
        """Mean over classes of ``r`` ``(S, K)``, weighted by the final counts, NaN entries left out."""
        w = self.counts[-1].double()
        ok = ~torch.isnan(r)
        return torch.where(ok, r, 0.0).mul(w).sum(1) / (ok.double() * w).sum(1)


def ci_convergence(model: nn.Module, sizes: list[int] | tuple[int, ...], *, noise: Stimulus | str = "gaussian",
                   input_shape: tuple[int, ...] = (1, 28, 28), null_permutations: int = DEFAULT_PERMUTATIONS,
                   run: RunOptions | None = None, **options: object) -> CIConvergence:
    """Classification images after the first ``n`` samples for every ``n`` in ``sizes``, in one run.

    Args:
        model: classifier (left as found).
        sizes: strictly increasing sample counts, e.g. :func:`geometric_sizes`; costs ``max(sizes)`` samples.
        noise: the stimulus or a shorthand, as in :func:`~wna_helpers.methods.ci.classification_images`;
            default ``"gaussian"``.
        input_shape: default ``(1, 28, 28)``.
        null_permutations: permutation-null CIs kept for the final size (default 32), as in
            :func:`~wna_helpers.methods.ci.classification_images`; split halves are kept at every size.
        run: :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords (``seed``, ``batch_size``, ``progress`` ...); ``checkpoint``
            is not supported. With the same seed, the snapshot at ``n`` matches
            ``classification_images(model, n, noise=noise, seed=seed)`` (the final one with its
            null and logit images too).

    Returns:
        :class:`CIConvergence`.

    Example:
        >>> import wna_helpers as wna
        >>> conv = wna.ci_convergence(wna.build_model("logreg"), [1_000, 4_000], progress=False)
        >>> conv.counts.shape
        torch.Size([2, 10])
    """
    sizes = _checked_sizes(sizes)
    opts = resolve_options(run, options)
    stimulus = as_stimulus(noise)
    snaps, stats = _run_prefixes(model, [CIAccumulator(), CIStatsAccumulator(null_permutations)], sizes, stimulus,
                                 input_shape, opts, "CI convergence")
    k = len(snaps[0]["counts"])
    shape = (len(sizes), k, *input_shape)
    sums = torch.stack([s["sums"] for s in snaps]).view(shape)
    sumsq = torch.stack([s["sumsq"] for s in snaps]).view(shape)
    last = stats[-1]
    per_class = snaps[-1]["counts"].double().view(-1, *([1] * len(input_shape)))
    nulls = (sums[-1] + last["null_sums"].view(-1, *shape[1:])) / per_class if null_permutations else None
    logit = ci_stats.logit_regression(last["logit_cross"], sums[-1].sum(0).flatten(), sumsq[-1].sum(0).flatten(),
                                      sizes[-1]).view(shape[1:])
    return CIConvergence(sizes=sizes, counts=torch.stack([s["counts"] for s in snaps]), sums=sums, sumsq=sumsq,
                         stimulus=describe_run(stimulus, opts),
                         odd_sums=torch.stack([s["odd_sums"] for s in stats]).view(shape),
                         odd_counts=torch.stack([s["odd_counts"] for s in stats]),
                         null_images=nulls, logit_images=logit)


@dataclass
class STAConvergence:
    """Spike-triggered averages of one conv layer after the first ``n`` samples, for each ``n`` in ``sizes``.

    Attributes:
        layer: the conv layer.
        sizes: sample counts ``(S,)``.
        center: float64 ``(S, K, C, h, w)``: centre-unit STA at each size (NaN where it never fired).
        pooled: float64 ``(S, K, C, h, w)``: STA pooled over positions at each size.
        center_weight: float64 ``(S, K)``: total activation of the centre unit.
        pooled_weight: float64 ``(S, K)``: total activation over the pooled positions.
        act_sum: float64 ``(S, K)``: total activation over every position.
        rf: the layer's :class:`~wna_helpers.methods.sta.ReceptiveField`.
        positions: positions pooled per channel.
        stimulus: parameters of the noise.
    """

    layer: str
    sizes: list[int]
    center: torch.Tensor
    pooled: torch.Tensor
    center_weight: torch.Tensor
    pooled_weight: torch.Tensor
    act_sum: torch.Tensor
    rf: object
    positions: int
    stimulus: dict

    def snapshot(self, n: int) -> SpikeTriggeredAverage:
        """The :class:`~wna_helpers.methods.sta.SpikeTriggeredAverage` of the first ``n`` samples (one of ``sizes``)."""
        if n not in self.sizes:
            raise ValueError(f"n={n} is not one of the sizes {self.sizes}")
        i = self.sizes.index(n)
        oh, ow = self.rf.out_shape  # type: ignore[attr-defined]
        return SpikeTriggeredAverage(layer=self.layer, center=self.center[i], pooled=self.pooled[i],
                                     center_weight=self.center_weight[i], pooled_weight=self.pooled_weight[i],
                                     mean_activation=self.act_sum[i] / (n * oh * ow), rf=self.rf,  # type: ignore[arg-type]
                                     positions=self.positions, n_samples=int(n), stimulus=dict(self.stimulus))

    def filter_correlation(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per size and channel, Pearson r of the centre and pooled STAs with the filters ``weight``.

        Returns:
            ``{"center": (S, K), "pooled": (S, K)}`` float64 (NaN for a channel that never fired).
        """
        w = weight.detach().cpu()
        return {kind: torch.stack([filter_correlation(s, w) for s in getattr(self, kind)])
                for kind in ("center", "pooled")}

    def correlation_with_final(self) -> dict[str, torch.Tensor]:
        """Per size and channel, Pearson r of the centre and pooled STAs with the *pooled* STA at the final size."""
        final = self.pooled[-1]
        return {kind: torch.stack([filter_correlation(s, final) for s in getattr(self, kind)])
                for kind in ("center", "pooled")}


def sta_convergence(model: nn.Module, layer: str | Sequence[str], sizes: list[int] | tuple[int, ...], *,
                    noise: Stimulus | str = "gaussian", input_shape: tuple[int, ...] = (1, 28, 28),
                    run: RunOptions | None = None, **options: object) -> STAConvergence | dict[str, STAConvergence]:
    """Centre and pooled STAs of conv layers after the first ``n`` samples, for every ``n`` in ``sizes``.

    One run of ``max(sizes)`` samples serves every layer; the snapshot at ``n`` matches
    ``spike_triggered_average(model, layer, n, noise=noise, seed=seed)``.

    Args:
        model: classifier (left as found).
        layer: one conv layer name, or several.
        sizes: strictly increasing sample counts.
        noise: the stimulus or a shorthand; default ``"gaussian"``.
        input_shape: default ``(1, 28, 28)``.
        run: :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords; ``checkpoint`` is not supported.

    Returns:
        :class:`STAConvergence` for one layer name, a dict layer -> :class:`STAConvergence` for a sequence.

    Raises:
        ValueError: a layer is not a conv layer of the model, or bad sizes.
    """
    layers = [layer] if isinstance(layer, str) else list(layer)
    out, _ = sta_convergence_with_activations(model, layers, sizes, noise=noise, input_shape=input_shape,
                                              run=resolve_options(run, options))
    return out[layer] if isinstance(layer, str) else out


def sta_convergence_with_activations(model: nn.Module, layers: Sequence[str], sizes: list[int] | tuple[int, ...], *,
                                     noise: Stimulus | str, input_shape: tuple[int, ...], run: RunOptions,
                                     activation_layers: Sequence[str] | None = None
                                     ) -> tuple[dict[str, STAConvergence], ActivationStatistics | None]:
    """:func:`sta_convergence` of ``layers``, plus the mean activation per predicted class of
    ``activation_layers`` from the same pass (what :func:`~wna_helpers.methods.activations.activation_statistics`
    gives for ``n = max(sizes)``; None without ``activation_layers``)."""
    sizes = _checked_sizes(sizes)
    opts = run
    stimulus = as_stimulus(noise)
    modules = dict(model.named_modules())
    for name in layers:
        if not isinstance(modules.get(name), nn.Conv2d):
            raise ValueError(f"{name!r} is not a conv layer; conv layers: {conv_layer_names(model)}")
    inners = [STAAccumulator(name, receptive_field(model, name, input_shape), tuple(input_shape)) for name in layers]
    act = ActivationAccumulator(list(activation_layers), "prediction") if activation_layers else None
    all_snaps = _run_prefixes(model, inners, sizes, stimulus, input_shape, opts,
                              f"STA convergence {', '.join(layers)}", extra=[act] if act is not None else [])
    described = describe_run(stimulus, opts)
    out: dict[str, STAConvergence] = {}
    for name, inner, snaps in zip(layers, inners, all_snaps):
        shape = (-1, input_shape[0], *inner.rf.size)

        def stack(num: str, den: str, snaps: list[dict] = snaps, shape: tuple = shape) -> torch.Tensor:
            return torch.stack([(s[num] / s[den][:, None]).view(shape) for s in snaps])
        out[name] = STAConvergence(layer=name, sizes=sizes, center=stack("center_num", "center_den"),
                                   pooled=stack("pooled_num", "pooled_den"),
                                   center_weight=torch.stack([s["center_den"] for s in snaps]),
                                   pooled_weight=torch.stack([s["pooled_den"] for s in snaps]),
                                   act_sum=torch.stack([s["act_sum"] for s in snaps]), rf=inner.rf,
                                   positions=len(inner.rows) * len(inner.cols), stimulus=described)
    stats = act.result(sizes[-1], described) if act is not None else None
    return out, stats
