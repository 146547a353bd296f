"""Spike-triggered covariance (STC) of convolution units, pooled over positions.

The STA (:mod:`wna_helpers.methods.sta`) finds the one stimulus direction a unit's mean response
follows; the STC finds the directions along which the *variance* of the stimuli that drive
the unit differs from the noise's: for channel ``k`` with activation ``a = ReLU(conv output)``
and ``w`` the receptive-field window of a position (flattened, ``d = C * h * w`` pixels),

    ``STC_k = sum a w w^T / sum a - STA STA^T - C_noise``,

pooled over every position whose window lies inside the input, exactly like the pooled STA.
Its eigenvectors with eigenvalues above zero are excitatory directions (an energy unit's
quadrature pair), below zero suppressive ones (a rectified linear unit's own filter).

Which eigenvalues are real is judged against a *null band*: the same statistics with each
position's activation paired with the window of a distant position of the same stimulus (the
activation map rolled circularly over the pooled grid by shifts at least one receptive field
long), or with the window at the same position of another stimulus of the batch (the activations
rolled along the samples), which keeps the activations' distribution and the windows' statistics
but breaks their dependence. A grid holds few disjoint spatial shifts (15 for a 5x5 first layer);
the sample rolls are as many as the batch allows. All sums are one batched matrix product per block of windows (float32 within a
block of about 1,024 terms, float64 across blocks), as for the STA.
"""
from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.kernel import describe_run, run_engine
from ..engine.options import RunOptions
from .sta import BLOCK_TERMS, ReceptiveField, STAAccumulator, prepare_conv_run
from ..engine.stimuli import Stimulus

__all__ = ["SpikeTriggeredCovariance", "spike_triggered_covariance", "STCAccumulator", "null_offsets", "sample_roll"]

#: Bytes of the float32 window-and-products buffer one batched matrix product reads (at least one
#: block): small enough to stay in the CPU's caches between being written and being multiplied.
_BUFFER_BYTES = 16 << 20
#: The same on a GPU, where fewer, larger kernels matter more than caches.
_BUFFER_BYTES_GPU = 512 << 20


def null_offsets(rf: ReceptiveField, grid: tuple[int, int], null_shifts: int,
                 layer: str = "") -> tuple[tuple[int, int], ...]:
    """Circular shifts ``(rows, cols)`` of the pooled grid that pair each window with a distant one.

    The shifts and the zero shift are points of a lattice whose spacing along an axis is at
    least ``ceil(size / jump)`` grid steps, so any two of them (and each of them and zero) are
    that far apart on the circle along some axis: the receptive-field windows a shift pairs never
    overlap, nor do those of two shifts. The lattice is as coarse as ``null_shifts`` allows.

    Args:
        rf: receptive field of the layer.
        grid: ``(rows, cols)`` of pooled positions.
        null_shifts: number of shifts (a non-negative integer); 0 gives ``()``.
        layer: the layer's name, for messages; default ``""``.

    Returns:
        ``null_shifts`` distinct ``(dr, dc)`` pairs with ``0 <= dr < rows``, ``0 <= dc < cols``.

    Raises:
        ValueError: ``null_shifts`` is not a non-negative integer, or the grid is too small for
            that many non-overlapping shifts (the message says how many fit).

    Example:
        >>> from wna_helpers.methods.sta import ReceptiveField
        >>> null_offsets(ReceptiveField((5, 5), (1, 1), (0, 0), (24, 24)), (24, 24), 2)
        ((0, 12), (12, 0))
    """
    if isinstance(null_shifts, bool) or not isinstance(null_shifts, numbers.Integral) or null_shifts < 0:
        raise ValueError(f"null_shifts must be a non-negative integer, got {null_shifts!r}")
    if null_shifts == 0:
        return ()
    gap = [math.ceil(rf.size[ax] / rf.jump[ax]) for ax in range(2)]  # grid steps between disjoint windows
    cap = [max(1, grid[ax] // gap[ax]) for ax in range(2)]             # lattice points that fit per axis
    need = int(null_shifts) + 1
    if cap[0] * cap[1] < need:
        fit = cap[0] * cap[1] - 1
        raise ValueError(
            f"null_shifts={null_shifts} but the {grid[0]}x{grid[1]} grid of pooled positions of layer "
            f"{layer!r} (receptive field {rf.size[0]}x{rf.size[1]}, stride {rf.jump[0]}x{rf.jump[1]}) allows "
            f"{'no' if fit == 0 else f'at most {fit}'} shift(s) whose windows do not overlap; pass "
            f"null_shifts=0 to skip the null band{'' if fit == 0 else f' or null_shifts<={fit}'}")
    shape = min(((r, -(-need // r)) for r in range(1, cap[0] + 1) if -(-need // r) <= cap[1]),
                key=lambda g: (max(g), g[0] * g[1]))
    step = (grid[0] // shape[0], grid[1] // shape[1])
    return tuple((i * step[0], j * step[1]) for i in range(shape[0]) for j in range(shape[1]))[1:need]


class STCAccumulator(STAAccumulator):
    """First and second moments of RF windows pooled over positions, weighted by the activations,
    by the activations rolled by each null shift, and by one (the noise's own moments).

    ``acc["moments"]`` is float64 ``(K * (1 + S) + 1, D + D (D + 1) / 2 + 1)``: one row per weight
    column (channels, then the channels under each of the ``S`` null shifts, then ones), and per
    column the weighted sums of the ``D`` window pixels, of the products ``w_i w_j`` (``i <= j``,
    in ``torch.triu_indices`` order) and of the weights themselves.
    """

    #: no cap of its own (the STA's 128): 256 ran at 0.95, 0.92, 1.11 and 1.04 times 1,024's speed (``paper_cnn``,
    #: ``lenet``, ``net3``, ``alexnet_small``; ``benchmarks/batch_size_benchmark.py --method stc``, 2026-12-06)
    cpu_batch_cap = None

    def __init__(self, layer: str, rf: ReceptiveField, in_shape: tuple[int, int, int],
                 offsets: tuple[tuple[int, int], ...] = (), stride: int = 1,
                 sample_shifts: tuple[int, ...] = ()) -> None:
        super().__init__(layer, rf, in_shape)
        self.offsets = tuple((int(r), int(c)) for r, c in offsets)
        self.sample_shifts = tuple(int(t) for t in sample_shifts)
        self.stride = int(stride)
        self.rows, self.cols = self.rows[::self.stride], self.cols[::self.stride]   # every stride-th position

    @property
    def grid_rf(self) -> ReceptiveField:
        """The receptive field of the pooled sub-grid: ``stride`` times the layer's jump."""
        rf = self.rf
        return ReceptiveField(rf.size, (rf.jump[0] * self.stride, rf.jump[1] * self.stride), rf.offset, rf.out_shape)

    def describe(self):  # noqa: D102
        return {**super().describe(), "null_offsets": [list(o) for o in self.offsets], "stride": self.stride,
                **({"null_sample_shifts": list(self.sample_shifts)} if self.sample_shifts else {})}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        k = tap_shapes[self.layer][0]
        d = input_shape[0] * self.rf.size[0] * self.rf.size[1]
        self.acc = {"moments": torch.zeros(k * (1 + len(self.offsets) + len(self.sample_shifts)) + 1,
                                           d + d * (d + 1) // 2 + 1,
                                           dtype=torch.float64, device=device)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        a = taps[self.layer].to(self.sum_dtype)        # (B, K, H', W') after the ReLU (relu_taps), any layout
        r, c = self.rows, self.cols
        grid = a[:, :, r.start:r.stop:r.step, c.start:c.stop:c.step].permute(0, 2, 3, 1)  # (B, rows, cols, K): a view
        top_left = (self.rf.offset[0] + r.start * self.rf.jump[0], self.rf.offset[1] + c.start * self.rf.jump[1])
        self.acc["moments"] += _window_moments(x.to(self.sum_dtype), grid, self.offsets, self.grid_rf, top_left,
                                               self.sample_shifts)


def _roll_into(out: torch.Tensor, grid: torch.Tensor, shift: tuple[int, int]) -> None:
    """``out[:] = torch.roll(grid, shift, dims=(1, 2))`` as four quadrant copies (no temporary)."""
    (n0, n1), (s0, s1) = grid.shape[1:3], shift
    rows = ((slice(s0, n0), slice(0, n0 - s0)), (slice(0, s0), slice(n0 - s0, n0)))  # (to, from)
    cols = ((slice(s1, n1), slice(0, n1 - s1)), (slice(0, s1), slice(n1 - s1, n1)))
    for (o0, i0), (o1, i1) in itertools.product(rows, cols):
        out[:, o0, o1] = grid[:, i0, i1]


def sample_roll(shift: int, batch: int) -> int:
    """The roll along the samples of a batch of ``batch`` that stands for null ``shift`` (1, 2, ...): ``shift``
    itself in a batch larger than it, else wrapped into 1 .. ``batch - 1`` so that it never pairs a sample with
    itself; 0 for a batch of one sample (that sample then adds nothing to the null)."""
    return 0 if batch < 2 else 1 + (int(shift) - 1) % (batch - 1)


def _window_moments(x: torch.Tensor, grid: torch.Tensor, offsets: tuple[tuple[int, int], ...],
                    rf: ReceptiveField, top_left: tuple[int, int],
                    sample_shifts: tuple[int, ...] = ()) -> torch.Tensor:
    """Weighted sums of receptive-field windows, of their pairwise products and of the weights.

    Args:
        x: ``(B, C, H, W)`` stimuli.
        grid: ``(B, rows, cols, K)`` activations of the ``P = rows * cols`` pooled positions, channels last.
        offsets: null shifts; each adds ``K`` weight columns, ``grid`` rolled by the shift.
        sample_shifts: sample nulls; each adds ``K`` weight columns, ``grid`` rolled along the batch by
            :func:`sample_roll` (the windows of sample ``i`` weighted by the activations of sample ``i + roll``,
            modulo the batch).
        rf: the receptive field of the grid: window ``size``, and ``jump`` the step in input pixels
            between grid positions.
        top_left: input row and column of the first position's window (negative inside padding
            cannot happen: pooled windows lie inside the input).

    Returns:
        float64 ``(K (1 + S) + 1, D + D (D + 1) / 2 + 1)``, ``D = C * h * w``: per weight column
        (channels, channels under each shift, one) the sums over samples and positions of weight
        times each window pixel, each product ``w_i w_j`` (``i <= j``) and one.

    The windows are copied side by side into one buffer (blocks of about ``BLOCK_TERMS`` terms summed in
    float32, blocks in float64), with the pairwise products below the window pixels;
    a few blocks (``_BUFFER_BYTES``) share one batched matrix product, and their weight columns are
    written next to it, so both stay in the CPU's caches.
    """
    b, nr, nc, k = grid.shape
    p, nw = nr * nc, k * (1 + len(offsets) + len(sample_shifts)) + 1
    rolled = [torch.roll(grid, -sample_roll(t, b), dims=0) if sample_roll(t, b) else None for t in sample_shifts]
    ch = x.shape[1]
    (sh, sw), (jh, jw) = rf.size, rf.jump
    d = ch * sh * sw
    rows = d + d * (d + 1) // 2 + 1
    padded = -(-rows // 16) * 16                               # rows of the buffer: a multiple of 16
    s_b, s_c, s_h, s_w = x.stride()
    base = x.storage_offset() + top_left[0] * s_h + top_left[1] * s_w
    m = max(1, min(b, -(-BLOCK_TERMS // p)))                  # samples per block
    budget = _BUFFER_BYTES if x.device.type == "cpu" else _BUFFER_BYTES_GPU
    group = max(1, min(-(-b // m), budget // (padded * m * p * x.element_size())))  # blocks per product
    work = x.new_empty(group * padded * m * p)
    wwork = x.new_ones(group * m, nr, nc, nw)                  # weight columns; the last stays one
    total = torch.zeros(nw, rows, dtype=torch.float64, device=x.device)
    start = 0
    while start < b:                                           # groups of whole blocks, then the rest
        size = m if b - start >= m else b - start
        nb = min(group, (b - start) // size)
        stop = start + nb * size
        buf = work[:nb * padded * size * p].view(nb, padded, size * p)
        buf[:, :d].view(nb, ch, sh, sw, size, nr, nc).copy_(x.as_strided(
            (nb, ch, sh, sw, size, nr, nc), (size * s_b, s_c, s_h, s_w, s_b, jh * s_h, jw * s_w),
            base + start * s_b))
        row = d
        for i in range(d):                                     # products w_i * w_j, j >= i
            torch.mul(buf[:, i:i + 1], buf[:, i:d], out=buf[:, row:row + d - i])
            row += d - i
        buf[:, rows - 1] = 1
        buf[:, rows:] = 0
        weights = wwork[:stop - start]
        weights[..., :k] = grid[start:stop]
        for s, shift in enumerate(offsets, start=1):
            _roll_into(weights[..., s * k:(s + 1) * k], grid[start:stop], shift)
        for s, g in enumerate(rolled, start=1 + len(offsets)):
            if g is None:
                weights[..., s * k:(s + 1) * k] = 0
            else:
                weights[..., s * k:(s + 1) * k] = g[start:stop]
        blocks = weights.view(nb, size * p, nw)
        total += torch.bmm(blocks.transpose(1, 2), buf.transpose(1, 2))[:, :, :rows].sum(0, dtype=torch.float64)
        start = stop
    return total


def _symmetric(upper: torch.Tensor, d: int) -> torch.Tensor:
    """``(..., d (d + 1) / 2)`` upper triangles (``torch.triu_indices`` order) as ``(..., d, d)``."""
    i, j = torch.triu_indices(d, d, device=upper.device)
    out = upper.new_zeros(*upper.shape[:-1], d, d)
    out[..., i, j] = upper
    out[..., j, i] = upper
    return out


def _eigh_descending(c: torch.Tensor, vectors: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eigenvalues ``(..., d)`` descending and eigenvectors ``(..., d, d)`` (row ``j`` = vector ``j``,
    largest-magnitude entry positive; None unless ``vectors``) of symmetric ``c``; NaN for a matrix
    with NaN entries."""
    bad = c.isnan().flatten(-2).any(-1)
    c = torch.where(bad[..., None, None], torch.zeros_like(c), c)
    if not vectors:
        return torch.linalg.eigvalsh(c).flip(-1).masked_fill(bad[..., None], math.nan), None
    vals, vecs = torch.linalg.eigh(c)
    vals, vecs = vals.flip(-1), vecs.flip(-1).transpose(-1, -2)
    vecs = vecs * vecs.gather(-1, vecs.abs().argmax(-1, keepdim=True)).sign()
    return vals.masked_fill(bad[..., None], math.nan), vecs.masked_fill(bad[..., None, None], math.nan)


@dataclass
class SpikeTriggeredCovariance:
    """Result of :func:`spike_triggered_covariance` (``K`` channels, ``D = C * h * w`` pixels).

    Attributes:
        layer: the conv layer.
        sta: float64 ``(K, C, h, w)``: pooled STA (as ``spike_triggered_average(...).pooled``).
        covariance: float64 ``(K, D, D)``: the STC, spike-triggered covariance minus the noise's.
        noise_covariance: float64 ``(D, D)``: covariance of the windows over the same positions.
        eigenvalues: float64 ``(K, D)``: eigenvalues of ``covariance``, descending.
        eigenvectors: float64 ``(K, D, C, h, w)``: ``eigenvectors[k, j]`` belongs to
            ``eigenvalues[k, j]`` (unit norm, largest-magnitude pixel positive).
        null_eigenvalues: float64 ``(S, K, D)``: eigenvalues of the null STC of each null, descending
            (``S = null_shifts + null_samples``, the spatial ones first; ``(0, K, D)`` without a null).
        null_offsets: the circular shifts ``(rows, cols)`` of the pooled grid (see :func:`null_offsets`).
        null_sample_shifts: the sample rolls of the other nulls (see :func:`sample_roll`); ``S`` is the number of
            both kinds.
        weight: float64 ``(K,)``: total activation over the pooled positions (``sum a``).
        rf: the :class:`~wna_helpers.methods.sta.ReceptiveField` of the layer.
        positions: number of positions pooled per channel.
        n_samples: number of stimuli.
        stimulus: parameters of the stimuli.
        world_size: processes that shared the run.

    A channel that never fired has NaN statistics.
    """

    layer: str
    sta: torch.Tensor
    covariance: torch.Tensor
    noise_covariance: torch.Tensor
    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    null_eigenvalues: torch.Tensor
    null_offsets: tuple[tuple[int, int], ...]
    weight: torch.Tensor
    rf: ReceptiveField
    positions: int
    n_samples: int
    stimulus: dict
    world_size: int = 1
    null_sample_shifts: tuple[int, ...] = ()

    @property
    def null_band(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)``, each float64 ``(K, D)``: per channel and rank, the least and the greatest
        null eigenvalue over the null shifts.

        Raises:
            ValueError: the run had no null (``null_shifts=0``).
        """
        if not len(self.null_eigenvalues):
            raise ValueError("this STC has no null band: run spike_triggered_covariance with null_shifts > 0")
        return self.null_eigenvalues.amin(0), self.null_eigenvalues.amax(0)

    def significant_eigen(self, margin: float = 0.0, *, per_rank: bool = False) -> torch.Tensor:
        """Which eigenvalues lie outside their channel's null band.

        By default an eigenvalue counts when it lies above every null eigenvalue of its channel
        (the band's top at rank 0) or below every one (the band's bottom at the last rank): where
        real structure sits at the top or bottom ranks, the ranks of the rest shift, so a rank-wise
        comparison would flag sampling noise. With ``S`` null shifts a null-like extreme eigenvalue
        still beats all ``S`` of them with probability about ``1 / (S + 1)``; ``margin`` guards
        against that.

        Args:
            margin: widen the band on each side by this fraction of its width (top minus bottom);
                default 0.
            per_rank: compare each eigenvalue with the band of its own rank instead; default False.

        Returns:
            bool ``(K, D)``, aligned with ``eigenvalues``.

        Raises:
            ValueError: the run had no null (``null_shifts=0``).

        Example:
            >>> stc.significant_eigen(0.25).sum(1)  # doctest: +SKIP
            tensor([2, 1, ...])
        """
        low, high = self.null_band
        if not per_rank:
            low, high = low[:, -1:], high[:, :1]
        pad = margin * (high - low)
        return (self.eigenvalues > high + pad) | (self.eigenvalues < low - pad)


def spike_triggered_covariance(model: nn.Module, layer: str, n_samples: int | None = None, *,
                               noise: Stimulus | str = "gaussian", input_shape: tuple[int, ...] = (1, 28, 28),
                               null_shifts: int = 2, null_samples: int = 0, position_stride: int | None = None,
                               run: RunOptions | None = None, **options: object) -> SpikeTriggeredCovariance:
    """Spike-triggered covariance of every channel of conv layer ``layer``, with a null band.

    Pooled over the positions whose receptive field lies inside the input, with ``a = ReLU(conv
    output)`` and ``w`` a position's window: ``STA = sum a w / sum a``, ``STC = sum a w w^T / sum a
    - STA STA^T - C_noise`` with ``C_noise`` the windows' own covariance. The null band repeats this
    with the activation map rolled over the pooled grid by ``null_shifts`` shifts (see
    :func:`null_offsets`); its eigenvalues tell sampling noise from structure.

    The cost grows with ``(K (1 + null_shifts + null_samples) + 1) * D^2 / 2`` per position and stimulus.

    Args:
        model: any classifier; left as found (training flag, grads).
        layer: name of a :class:`~torch.nn.Conv2d` submodule (``"conv1"`` ...).
        n_samples: number of stimuli (positive integer); default all images for
            :class:`~wna_helpers.engine.stimuli.Images`, required for noise.
        noise: the stimulus, as in :func:`~wna_helpers.methods.sta.spike_triggered_average`; default
            ``"gaussian"`` (the STC's eigen-analysis assumes white Gaussian noise).
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        null_shifts: number of shifted-activation nulls; default 2; 0 for none.
        null_samples: number of sample-rolled nulls (each position's activation weights the window at the
            same position of another stimulus of the batch: rolls 1, 2, ..., :func:`sample_roll`); as many as
            wanted, e.g. 39 for a band that a null-like extreme eigenvalue leaves with probability 1/40 per
            side; default 0.
        position_stride: pool every ``position_stride``-th position along each axis of the pooled
            grid: the same expectation from ``position_stride**2`` times fewer windows, and
            neighbouring windows share most of their pixels, so little precision is lost; 1 pools
            every position, like the STA. Default None: half the window, ``ceil(size / (2 jump))``
            (3 for a 5x5 first layer, whose STC then costs about 1.7 times its STA instead of 9).
        run: :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords (``batch_size``, ``seed``, ``device``, ``autocast``,
            ``checkpoint``, ``checkpoint_every``, ``progress``, ``chunk_size``).

    Returns:
        :class:`SpikeTriggeredCovariance`: ``covariance`` ``(K, D, D)``, ``eigenvalues`` ``(K, D)``,
        ``eigenvectors`` ``(K, D, C, h, w)``, ``null_eigenvalues`` ``(null_shifts + null_samples, K, D)`` (the
        spatial nulls first).

    Raises:
        ValueError: unknown layer (lists them), a layer that is not a convolution, bad
            ``n_samples``, ``null_shifts`` (negative, or more than the pooled grid holds), ``null_samples``,
            noise or run option; all before any heavy work.

    Example:
        >>> import wna_helpers as wna
        >>> m = wna.build_model("paper_cnn", seed=0)
        >>> stc = spike_triggered_covariance(m, "conv1", 4_000, progress=False)
        >>> stc.covariance.shape, stc.eigenvectors.shape, stc.null_band[0].shape
        (torch.Size([20, 25, 25]), torch.Size([20, 25, 1, 5, 5]), torch.Size([20, 25]))
    """
    opts, stimulus, n_samples, rf = prepare_conv_run(model, layer, n_samples, noise, input_shape, run, options, "STC")
    if position_stride is None:
        position_stride = max(1, math.ceil(min(rf.size[ax] / (2 * rf.jump[ax]) for ax in range(2))))
    if isinstance(position_stride, bool) or not isinstance(position_stride, numbers.Integral) or position_stride < 1:
        raise ValueError(f"position_stride must be a positive integer or None, got {position_stride!r}")
    if isinstance(null_samples, bool) or not isinstance(null_samples, numbers.Integral) or null_samples < 0:
        raise ValueError(f"null_samples must be a non-negative integer, got {null_samples!r}")
    acc = STCAccumulator(layer, rf, tuple(input_shape), stride=position_stride,
                         sample_shifts=tuple(range(1, int(null_samples) + 1)))  # raises if no window fits
    acc.offsets = null_offsets(acc.grid_rf, (len(acc.rows), len(acc.cols)), null_shifts, layer)
    world = run_engine(model, stimulus, n_samples, [acc], input_shape=input_shape, run=opts, desc=f"STC {layer}")
    t = acc.acc["moments"].cpu()
    d = input_shape[0] * rf.size[0] * rf.size[1]
    s0 = t[:, -1]
    mean = t[:, :d] / s0[:, None]
    cov = _symmetric(t[:, d:-1], d) / s0[:, None, None] - mean[:, :, None] * mean[:, None, :]
    nulls = len(acc.offsets) + len(acc.sample_shifts)
    k = (len(s0) - 1) // (1 + nulls)
    stc = (cov[:-1] - cov[-1]).view(1 + nulls, k, d, d)
    vals, vecs = _eigh_descending(stc[0])
    null = _eigh_descending(stc[1:], vectors=False)[0] if nulls else stc.new_zeros(0, k, d)
    shape = (input_shape[0], *rf.size)
    return SpikeTriggeredCovariance(
        layer=layer, sta=mean[:k].view(k, *shape), covariance=stc[0], noise_covariance=cov[-1], eigenvalues=vals,
        eigenvectors=vecs.reshape(k, d, *shape), null_eigenvalues=null, null_offsets=acc.offsets, weight=s0[:k],
        rf=rf, positions=len(acc.rows) * len(acc.cols), n_samples=n_samples,
        stimulus=describe_run(stimulus, opts), world_size=world, null_sample_shifts=acc.sample_shifts)
