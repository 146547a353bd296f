"""Spike-triggered averages of convolution units, from noise or from real images.

The STA of unit ``u`` (channel ``k`` at position ``p`` of a conv layer) is the
stimulus averaged with weight ``a_u(x) = ReLU(conv output)``, cut to the unit's
receptive-field window ``RF(p)`` in the input. Every position of a channel applies
the same filter, so the *pooled* STA averages the RF-aligned windows of all
positions whose window lies inside the input; the *centre* STA uses the unit at the
centre of the map alone (what Borji & Lin did). The pooled sums of a batch are one
convolution of the stimuli with the activation maps; the centre sums one matrix product.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.kernel import Accumulator, describe_run, model_device, resolve_n_samples, run_engine
from ..engine.layers import trace_layers
from ..engine.options import RunOptions, resolve_options
from ..engine.stimuli import Stimulus, as_stimulus

__all__ = ["ReceptiveField", "receptive_field", "SpikeTriggeredAverage", "spike_triggered_average",
           "STAAccumulator", "filter_correlation", "pearson"]

_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity,
              nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Window in the input seen by the units of a layer, per axis ``(rows, cols)``.

    Unit ``(i, j)`` of the layer sees input rows ``offset[0] + i * jump[0]`` to
    ``offset[0] + i * jump[0] + size[0] - 1`` (and likewise columns); offsets are
    negative where padding puts the window partly outside the input.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]
    out_shape: tuple[int, int]

    def inside(self, in_shape: tuple[int, int]) -> tuple[range, range]:
        """Output positions (rows, cols) whose whole window lies inside an input of ``in_shape``."""
        out = []
        for ax in range(2):
            lo = max(0, math.ceil(-self.offset[ax] / self.jump[ax]))
            hi = (in_shape[ax] - self.size[ax] - self.offset[ax]) // self.jump[ax]
            out.append(range(lo, min(hi, self.out_shape[ax] - 1) + 1))
        return out[0], out[1]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(model: nn.Module, layer: str, input_shape: tuple[int, ...] = (1, 28, 28)) -> ReceptiveField:
    """Receptive field of the units of conv layer ``layer``, composed through every layer before it.

    The layers are taken in execution order (recorded with forward hooks on a dummy input);
    convolutions and max/avg pooling compose kernel, stride, padding and dilation; pointwise
    layers (activations, normalisation, dropout) pass through.

    Raises:
        ValueError: the layer is missing, or a layer before it changes the spatial size in a
            way this function cannot compose (the message names it).
    """
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ValueError(f"the model has no layer {layer!r}; available layers: {[n for n in modules if n]}")
    model_device(model)
    order = trace_layers(model, tuple(input_shape))
    size, jump, offset = [1, 1], [1, 1], [0, 0]
    for name, mod, ishape, oshape in order:
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            if isinstance(mod.padding, str):
                raise ValueError(f"layer {name!r}: padding={mod.padding!r} is not supported for receptive "
                                 f"fields; give the padding in pixels")
            k, s, p = _pair(mod.kernel_size), _pair(mod.stride), _pair(mod.padding)
            d = _pair(getattr(mod, "dilation", 1))
            for ax in range(2):
                keff = d[ax] * (k[ax] - 1) + 1
                offset[ax] -= p[ax] * jump[ax]
                size[ax] += (keff - 1) * jump[ax]
                jump[ax] *= s[ax]
        elif not (isinstance(mod, _POINTWISE) or ishape == oshape):
            raise ValueError(f"cannot compose the receptive field through layer {name!r} "
                             f"({type(mod).__name__}, {ishape} -> {oshape})")
        if name == layer:
            return ReceptiveField(tuple(size), tuple(jump), tuple(offset), (oshape[-2], oshape[-1]))
    raise ValueError(f"layer {layer!r} did not run in the forward pass")


class STAAccumulator(Accumulator):
    """Activation-weighted sums of RF windows, for the centre unit and pooled over positions.

    Products and their sums over one chunk piece are in ``sum_dtype`` (float32); the totals
    are float64.
    """

    needs_logits = False
    relu_taps = True  # reads the layer's output only through its ReLU: the engine hands the ReLU over
    #: 256 ran 1.10, 1.28, 1.53 and 1.57 times as fast as 1,024 (``paper_cnn``, ``lenet``, ``net3``, ``alexnet_small``;
    #: 128: 1.03-1.60; ``benchmarks/batch_size_benchmark.py --method sta``, 2-core Intel Xeon, 2026-12-06); 128 ran
    #: 1.05-1.18, 0.95-1.02, 1.05-1.28 and 0.96-1.10 times as fast as 256 (three alternating rounds each, 2-core AMD
    #: EPYC, 2026-12-06 with the parallel noise), so 128
    cpu_batch_cap = 128
    #: dtype of the products and of their sums over one chunk piece (float64 gives the reference)
    sum_dtype: torch.dtype = torch.float32

    def __init__(self, layer: str, rf: ReceptiveField, in_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.taps = (layer,)
        self.layer, self.rf = layer, rf
        self.rows, self.cols = rf.inside(in_shape[1:])
        if not len(self.rows) or not len(self.cols):
            raise ValueError(f"no unit of layer {layer!r} has its whole receptive field "
                             f"({rf.size[0]}x{rf.size[1]}) inside the {in_shape[1]}x{in_shape[2]} input")
        self.center = (rf.out_shape[0] // 2, rf.out_shape[1] // 2)
        #: the zero padding that makes the whole map one convolution of the input (None: no such padding)
        self.padding = full_map_padding(rf, in_shape[1:])

    def describe(self):  # noqa: D102
        return {**super().describe(), "rf": [self.rf.size, self.rf.jump, self.rf.offset]}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        k = tap_shapes[self.layer][0]
        d = input_shape[0] * self.rf.size[0] * self.rf.size[1]
        f64 = dict(dtype=torch.float64, device=device)
        self.acc = {"center_num": torch.zeros(k, d, **f64), "center_den": torch.zeros(k, **f64),
                    "pooled_num": torch.zeros(k, d, **f64), "pooled_den": torch.zeros(k, **f64),
                    "act_sum": torch.zeros(k, **f64)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        # The engine hands over one chunk piece at a time; the pooled sums come from the convolution's own
        # weight-gradient kernel in float32 over blocks of at most BLOCK_SAMPLES samples, centred on the block's
        # mean pixel, then added to the float64 totals (float64 products run several times slower).
        out = taps[self.layer].to(self.sum_dtype)              # (B, K, H', W') after the ReLU, any memory layout
        x = x.to(self.sum_dtype)
        b = out.shape[0]
        r, c = self.rows, self.cols
        (sh, sw), (jh, jw), (oh, ow) = self.rf.size, self.rf.jump, self.rf.offset
        # the frame: the positions around the pooled ones, whose windows reach past the input (a padded layer)
        frame = [f for f in (out[:, :, :r.start], out[:, :, r.stop:], out[:, :, r.start:r.stop, :c.start],
                             out[:, :, r.start:r.stop, c.stop:]) if f.numel()]
        frame_sums = sum((channel_sums(f) for f in frame), torch.zeros(out.shape[1], dtype=torch.float64,
                                                                       device=out.device))
        if frame and self.padding is not None:
            # the whole map against the zero-padded stimuli, its frame zeroed (it weighs nothing then): the same
            # sums without copying the pooled positions out of the map (a quarter of net3's STA time); the frame
            # is written back where another accumulator reads the same map
            saved = None if self.owns_taps or out is not taps[self.layer] else [f.clone() for f in frame]
            for f in frame:
                f.zero_()
            try:
                num, den = window_sums(x, out, self.rf.size, self.rf.jump, relu=False, padding=self.padding)
            finally:
                for f, v in zip(frame, saved or ()):
                    f.copy_(v)
        else:
            top, left = oh + r.start * jh, ow + c.start * jw
            crop = x[:, :, top:top + (len(r) - 1) * jh + sh, left:left + (len(c) - 1) * jw + sw]
            pooled = out[:, :, r.start:r.stop, c.start:c.stop]    # the units whose windows lie inside the input
            num, den = window_sums(crop, pooled, self.rf.size, self.rf.jump, relu=False)
        self.acc["pooled_num"] += num
        self.acc["pooled_den"] += den
        self.acc["act_sum"] += den + frame_sums                   # every position
        ci, cj = self.center
        t0, l0 = oh + ci * jh, ow + cj * jw
        if t0 < 0 or l0 < 0 or t0 + sh > x.shape[2] or l0 + sw > x.shape[3]:
            x = F.pad(x, (sw, sw, sh, sh))  # zeros outside the input
            t0, l0 = t0 + sh, l0 + sw
        window = x[:, :, t0:t0 + sh, l0:l0 + sw].reshape(b, -1)  # (B, D)
        ac = out[:, :, ci, cj]                                    # (B, K)
        self.acc["center_num"] += ac.T @ window
        self.acc["center_den"] += ac.sum(0, dtype=torch.float64)


#: Samples whose products one float32 weight-gradient call sums (centred on their mean) before float64 takes over.
BLOCK_SAMPLES = 128


def full_map_padding(rf: ReceptiveField, in_shape: tuple[int, int]) -> tuple[int, int] | None:
    """The zero padding ``(rows, cols)`` with which a convolution of kernel ``rf.size`` and stride ``rf.jump`` over the
    whole input has exactly the layer's map, unit for unit (``rf.offset == -padding``); None where there is none
    (no padding, or a map whose last units do not line up so)."""
    pad = tuple(-o for o in rf.offset)
    if min(pad) < 0 or max(pad) == 0:
        return None
    for ax in range(2):
        if (in_shape[ax] + 2 * pad[ax] - rf.size[ax]) // rf.jump[ax] + 1 != rf.out_shape[ax]:
            return None
    return pad[0], pad[1]


def window_sums(crop: torch.Tensor, act: torch.Tensor, size: tuple[int, int],
                jump: tuple[int, int], *, relu: bool = True,
                padding: tuple[int, int] = (0, 0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation-weighted sums of receptive-field windows, and the sums of the activations.

    The windows of the units of ``act`` tile ``crop`` with step ``jump``, so
    ``sum_{b, p} act[b, k, p] * crop[b, window(p)]`` is the weight gradient of a convolution with kernel
    ``size`` and stride ``jump`` whose output gradient is ``act``: one call of the convolution's own
    backward kernel per block (oneDNN on CPUs, cuDNN on GPUs), the same multiply-adds as the forward
    convolution and no copies of the windows. Each block
    of at most :data:`BLOCK_SAMPLES` samples is centred on its mean pixel ``m`` first (``sum a x = sum a (x - m) + m sum a``), which keeps its float32
    sums small and accurate; the blocks add up in float64.

    Args:
        crop: ``(B, C, H, W)`` stimuli cut to the windows: ``H = (rows - 1) * jump[0] + size[0]``, likewise ``W``.
        act: ``(B, K, rows, cols)`` the units' outputs, any memory layout.
        size: the window (receptive field) ``(h, w)``.
        jump: the step between neighbouring units' windows.
        relu: whether to apply the ReLU to ``act`` here, a block at a time; default True. False: ``act`` is
            the ReLU already (the engine hands it over so to accumulators with ``relu_taps``).
        padding: zeros around ``crop`` on each side ``(rows, cols)``; default none. Units whose windows reach into
            them must have zero activation: the sums treat them as windows of the block's mean pixel.

    Returns:
        ``(num, den)``: float64 ``(K, C * h * w)`` window sums and float64 ``(K,)`` activation sums (after the ReLU).
    """
    b, k = act.shape[:2]
    d = crop.shape[1] * size[0] * size[1]
    num = torch.zeros(k, d, dtype=torch.float64, device=crop.device)
    den = torch.zeros(k, dtype=torch.float64, device=crop.device)
    stub = crop.new_empty(k, crop.shape[1], *size)             # the kernel's shape; its values are not read
    # channels-last activations (a crop of them included) and stimuli in that layout meet the kernel as it wants
    fmt = torch.channels_last if act.stride(1) == 1 and k > 1 else torch.contiguous_format
    for s in range(0, b, BLOCK_SAMPLES):                       # blocks of samples, not a loop per sample
        xs = crop[s:s + BLOCK_SAMPLES]
        am = act[s:s + BLOCK_SAMPLES]
        am = (F.relu(am) if relu else am).contiguous(memory_format=fmt)  # a block at a time: in the caches
        mean = xs.mean()
        xc = (xs - mean).to(memory_format=fmt)                 # the layout of act: no conversion inside the call
        grad = torch.ops.aten.convolution_backward(am, xc, stub, None, list(jump), list(padding), [1, 1], False,
                                                   [0, 0], 1, [False, True, False])[1]
        # float32 within a sample, float64 across (the same call's bias gradient would come free, but it sums the
        # whole block in sequence: 6e-6 relative error)
        asum = channel_sums(am)
        num += grad.reshape(k, d).double() + mean.double() * asum[:, None]
        den += asum
    return num, den


def channel_sums(act: torch.Tensor) -> torch.Tensor:
    """``act.sum((0, 2, 3))`` of a ``(B, K, H, W)`` tensor as float64: each sample's sum over the positions in the
    tensor's dtype, the samples added in float64, so the float32 sums never run over more than one sample's
    positions. ``benchmarks/engine_profile.py`` (2-core CPU, one channels-last block of 128 samples of ``conv1``):
    1e-8 relative to the float64 sums against 5e-8 to 1e-7 for a batched matrix-vector product per sample, 0.19
    against 0.14 ms for ``paper_cnn``'s 20 channels, 0.08-0.14 against 0.17-0.26 ms for the 32 of the others."""
    return act.sum((2, 3)).double().sum(0)


#: Terms (samples x positions) each float32 product of the STC's window moments sums before float64 takes over.
BLOCK_TERMS = 1024


@dataclass
class SpikeTriggeredAverage:
    """Result of :func:`spike_triggered_average`.

    Attributes:
        layer: the conv layer.
        center: float64 ``(K, C, h, w)``: STA of the unit at the centre of each channel's map,
            in its receptive-field window ``h x w`` (NaN for a channel that never fired).
        pooled: float64 ``(K, C, h, w)``: STA pooled over every position whose window lies inside
            the input.
        center_weight: float64 ``(K,)``: total activation of the centre units (the denominator).
        pooled_weight: float64 ``(K,)``: total activation over the pooled positions.
        mean_activation: float64 ``(K,)``: mean ReLU activation per unit of each channel.
        rf: the :class:`ReceptiveField` of the layer.
        positions: number of positions pooled per channel.
        n_samples: number of stimuli.
        stimulus: parameters of the stimuli (noise kind and parameters, or real images).
        world_size: processes that shared the run.
    """

    layer: str
    center: torch.Tensor
    pooled: torch.Tensor
    center_weight: torch.Tensor
    pooled_weight: torch.Tensor
    mean_activation: torch.Tensor
    rf: ReceptiveField
    positions: int
    n_samples: int
    stimulus: dict
    world_size: int = 1


def prepare_conv_run(model: nn.Module, layer: str, n_samples: int | None, noise: Stimulus | str,
                     input_shape: tuple[int, ...], run: RunOptions | None, options: dict[str, object],
                     what: str = "STA") -> tuple[RunOptions, Stimulus, int, ReceptiveField]:
    """The checks every conv-unit method makes before any heavy work: ``layer`` is a conv layer,
    the options, stimulus, ``n_samples`` and device are valid and the receptive field composes.

    Returns:
        ``(run options, stimulus, n_samples, receptive field)``.

    Raises:
        ValueError: a missing layer (the message lists them), a layer that is not a convolution
            (lists the conv layers), a bad option, stimulus or ``n_samples``, or an input shape the
            model cannot take.
    """
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ValueError(f"the model has no layer {layer!r}; available layers: {[n for n in modules if n]}")
    if not isinstance(modules[layer], nn.Conv2d):
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        raise ValueError(f"layer {layer!r} is a {type(modules[layer]).__name__}, not a convolution; "
                         f"the {what} needs one of the conv layers: {convs}")
    opts = resolve_options(run, options)
    stimulus = as_stimulus(noise)
    n_samples = resolve_n_samples(stimulus, n_samples)
    model_device(model, opts.device)
    try:
        rf = receptive_field(model, layer, input_shape)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"the model cannot take inputs of shape (N, {', '.join(map(str, input_shape))}) "
                         f"({type(exc).__name__}: {exc})") from exc
    return opts, stimulus, n_samples, rf


def spike_triggered_average(model: nn.Module, layer: str, n_samples: int | None = None, *,
                            noise: Stimulus | str = "gaussian", input_shape: tuple[int, ...] = (1, 28, 28),
                            run: RunOptions | None = None, **options: object) -> SpikeTriggeredAverage:
    """Spike-triggered average of every channel of conv layer ``layer``.

    ``STA_u = sum_i a_u(x_i) x_i[RF(u)] / sum_i a_u(x_i)`` with ``a_u = ReLU(conv output)``,
    for the centre unit of each channel and pooled over all positions whose receptive
    field lies inside the input. Stimuli are noise (default) or real images
    (``noise=Images(images)``).

    Args:
        model: any classifier; left as found (training flag, grads).
        layer: name of a :class:`~torch.nn.Conv2d` submodule (``"conv1"`` ...).
        n_samples: number of stimuli (positive integer); default all images for
            :class:`~wna_helpers.engine.stimuli.Images`, required for noise.
        noise: the stimulus, as in :func:`~wna_helpers.methods.ci.classification_images`, or
            :class:`~wna_helpers.engine.stimuli.Images` of real images; default ``"gaussian"``.
        input_shape: ``(C, H, W)``; default ``(1, 28, 28)``.
        run: :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        **options: run options as keywords (``batch_size``, ``seed``, ``device``, ``autocast``,
            ``checkpoint``, ``checkpoint_every``, ``progress``, ``chunk_size``), as in
            :func:`~wna_helpers.methods.ci.classification_images`.

    Returns:
        :class:`SpikeTriggeredAverage` with ``center`` and ``pooled`` of shape ``(K, C, h, w)``.

    Raises:
        ValueError: unknown layer (lists them), a layer that is not a convolution, bad
            ``n_samples``, noise or run option; all before any heavy work.

    Example:
        >>> import wna_helpers as wna
        >>> m = wna.build_model("paper_cnn", seed=0)
        >>> sta = wna.spike_triggered_average(m, "conv1", 20_000, progress=False)
        >>> sta.pooled.shape
        torch.Size([20, 1, 5, 5])
    """
    opts, stimulus, n_samples, rf = prepare_conv_run(model, layer, n_samples, noise, input_shape, run, options)
    acc = STAAccumulator(layer, rf, tuple(input_shape))
    world = run_engine(model, stimulus, n_samples, [acc], input_shape=input_shape, run=opts, desc=f"STA {layer}")
    t = {k: v.cpu() for k, v in acc.acc.items()}
    shape = (-1, input_shape[0], *rf.size)
    positions = len(acc.rows) * len(acc.cols)
    return SpikeTriggeredAverage(
        layer=layer, center=(t["center_num"] / t["center_den"][:, None]).view(shape),
        pooled=(t["pooled_num"] / t["pooled_den"][:, None]).view(shape),
        center_weight=t["center_den"], pooled_weight=t["pooled_den"],
        mean_activation=t["act_sum"] / (n_samples * rf.out_shape[0] * rf.out_shape[1]),
        rf=rf, positions=positions, n_samples=n_samples, stimulus=describe_run(stimulus, opts), world_size=world)


def pearson(a: torch.Tensor, b: torch.Tensor, *, centered: bool = True) -> float:
    """Pearson correlation of two tensors of the same number of elements (flattened); with
    ``centered=False`` the cosine similarity (no mean subtracted)."""
    a, b = a.flatten().double(), b.flatten().double()
    if centered:
        a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def filter_correlation(sta: torch.Tensor, weight: torch.Tensor, *, centered: bool = True) -> torch.Tensor:
    """Per-channel Pearson correlation between STAs ``(K, C, h, w)`` and conv filters ``(K, C, h, w)``.

    Args:
        centered: default True (Pearson r: each STA and filter minus its own mean); False gives the
            cosine similarity, which a constant offset of the STA (the mean of the noise) lowers.

    Returns:
        float64 ``(K,)``; NaN for a channel whose STA is undefined.
    """
    if sta.shape != weight.shape:
        raise ValueError(f"STA shape {tuple(sta.shape)} differs from filter shape {tuple(weight.shape)}; "
                         f"compare first-layer STAs with first-layer filters")
    return torch.tensor([pearson(s, w, centered=centered) for s, w in zip(sta.detach().cpu(), weight.detach().cpu())],
                        dtype=torch.float64)
