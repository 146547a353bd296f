"""Microstimulation as psychometrics: shift units' biases, measure and fit psychometric curves.

The paper (PAPER.md, "Microstimulation") subtracts a scaled class-mean activation from a layer's bias
and plots the share of ``(1 - w) * U[0, 1] + w * image`` called the class against ``w``.
:func:`unit_activation` and :func:`class_inhibition` build that bias change (:func:`random_inhibition`
is its control), :func:`microstimulate` applies it inside a ``with`` block and restores the biases
bit-exactly, :func:`psychometric_curve` measures a curve with common random numbers (two conditions
see identical stimuli) and :func:`fit_psychometric` fits a logistic with bootstrap intervals.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from .kernel import model_device
from .stimuli import Noise, as_stimulus

__all__ = ["microstimulate", "psychometric_curve", "PsychometricCurve", "fit_psychometric", "PsychometricFit",
           "unit_activation", "class_inhibition", "random_inhibition"]

_CHUNK = 4096  # stimuli per generator chunk: fixed, so batch_size never changes the draws
_RIDGE = 1e-6  # penalty on the centred, scaled logistic coefficients (keeps degenerate fits finite)
_MAX_ITER = 200


def _int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise ValueError(f"{name} must be an integer{f' >= {minimum}' if minimum is not None else ''}; got {value!r}")
    return int(value)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def _has_bias(m: nn.Module) -> bool:
    return isinstance(getattr(m, "bias", None), torch.Tensor)


def _find(model: nn.Module, name: Any, with_bias: bool = False) -> nn.Module:
    """``model.get_submodule(name)``; ValueError listing the (biased) layers when there is none."""
    if isinstance(name, str) and name:
        try:
            return model.get_submodule(name)
        except AttributeError:
            pass
    names = [n for n, m in model.named_modules() if n and (_has_bias(m) or not with_bias)]
    raise ValueError(f"model has no layer {name!r}; {'layers with a bias' if with_bias else 'layers'}: {names}")


def _model_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    return model_device(model), (param.dtype if param is not None else torch.float32)


@contextlib.contextmanager
def microstimulate(model: nn.Module, deltas: Mapping[str, torch.Tensor | float]) -> Iterator[nn.Module]:
    """Add ``deltas[name]`` to the bias of layer ``name`` inside a ``with`` block; restore it bit-exactly after.

    Everything is checked before any parameter changes. The originals are cloned and copied back on exit
    (never subtracted: ``b + 0.1 - 0.1`` rounding leaves no trace), also when the block raises (the
    exception propagates). The change is made under ``torch.no_grad()``, so parameters that require
    gradients are fine. Names that share one bias tensor get the sum of their deltas.

    Args:
        model: the network; its biases are changed in place for the duration of the block.
        deltas: ``{layer name: delta}``, names from ``model.named_modules()`` (e.g. ``"conv2"``) of modules with
            a ``bias`` tensor (Conv2d, Linear, ...); a delta is a number or a tensor that broadcasts to the bias
            shape (``(C,)`` per unit). Negative deltas inhibit (see :func:`class_inhibition`).

    Yields:
        ``model`` with shifted biases.

    Raises:
        ValueError: an unknown layer (the message lists the layers with a bias), a layer without a bias, a
            delta that is not finite real or does not broadcast to the bias shape.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> lin = nn.Linear(2, 2)
        >>> before = lin.bias.detach().clone()
        >>> with microstimulate(nn.Sequential(lin), {"0": 0.1}) as m:
        ...     torch.allclose(m[0].bias, before + 0.1)
        True
        >>> torch.equal(lin.bias, before)
        True
    """
    if not isinstance(model, nn.Module) or not isinstance(deltas, Mapping):
        raise ValueError(f"need a Module and a mapping {{layer: delta}}; got {type(model)} and {type(deltas)}")
    plan: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name, delta in deltas.items():
        module = _find(model, name, with_bias=True)
        if not _has_bias(module):
            raise ValueError(f"layer {name!r} ({type(module).__name__}) has no bias; layers with a bias: "
                             f"{[n for n, m in model.named_modules() if n and _has_bias(m)]}")
        bias = module.bias
        if isinstance(delta, bool) or not isinstance(delta, (Real, torch.Tensor)):
            raise ValueError(f"delta of layer {name!r} must be a number or a tensor; got {type(delta).__name__}")
        d = torch.as_tensor(delta).detach()
        if d.is_complex() or not bool(torch.isfinite(d).all()):
            raise ValueError(f"delta of layer {name!r} must be finite real values; got {delta!r}")
        if d.dim() > bias.dim() or any(a not in (1, b) for a, b in zip(d.shape[::-1], bias.shape[::-1])):
            raise ValueError(f"delta of layer {name!r} has shape {tuple(d.shape)}, which does not broadcast to "
                             f"the bias shape {tuple(bias.shape)}; give a scalar or shape {tuple(bias.shape)}")
        plan.append((bias, d.to(device=bias.device, dtype=bias.dtype)))
    originals = {id(b): (b, b.detach().clone()) for b, _ in plan}
    try:
        with torch.no_grad():
            for bias, d in plan:
                bias.add_(d)
        yield model
    finally:
        with torch.no_grad():
            for bias, original in originals.values():
                bias.copy_(original)


@dataclass
class PsychometricCurve:
    """Share of ``(1 - w) * noise + w * image`` stimuli classified as ``target``, per weight w.

    Attributes:
        weights: float64 ``(W,)``. shares: float64 ``(W,)`` = ``hits / n_per_weight``.
        hits: int64 ``(W,)`` stimuli called ``target``. n_per_weight: stimuli per weight. target: the class.
    """

    weights: torch.Tensor
    shares: torch.Tensor
    hits: torch.Tensor
    n_per_weight: int
    target: int

    def fit(self, **kw: Any) -> PsychometricFit:
        """:func:`fit_psychometric` of this curve (``n_trials=n_per_weight``; other options as keywords)."""
        return fit_psychometric(self.weights, self.shares, n_trials=self.n_per_weight, **kw)


def _stream_seed(seed: int, j: int, c: int) -> int:
    digest = hashlib.blake2b(f"wna-psychometric:{seed}:{j}:{c}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _as_weights(weights: Any) -> torch.Tensor:
    try:
        w = None if isinstance(weights, (Real, str)) else torch.as_tensor(weights, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        w = None
    if w is None or w.numel() == 0:
        raise ValueError(f"weights must be a non-empty sequence of numbers in [0, 1]; got {weights!r}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise ValueError(f"weights must lie in [0, 1] (0 = noise only, 1 = image only); got {w.tolist()}")
    return w.cpu()


@torch.no_grad()
def psychometric_curve(model: nn.Module, images: torch.Tensor, target: int,
                       weights: Sequence[float] | torch.Tensor, *, noise: Noise | str = "uniform",
                       n_per_weight: int = 1000, seed: int = 0, batch_size: int = 2048) -> PsychometricCurve:
    """The psychometric curve: share of ``(1 - w) * noise + w * image`` the model calls ``target``, per w.

    For weight index j the stimuli are drawn in chunks of 4,096 from generators seeded by
    ``(seed, j, chunk)`` on the model's device: image indices (uniform, with replacement), then noise
    (``noise.sample``). So the stimuli depend only on ``(seed, j, n_per_weight, noise, images, device,
    dtype)``, not on the model or ``batch_size``: two conditions (e.g. with and without
    :func:`microstimulate`) see identical stimuli (common random numbers), and the counts do not depend
    on ``batch_size`` (up to the model's own floating-point dependence on batch composition). CPU and
    CUDA generators draw different numbers.

    Args:
        model: classifier returning ``(B, K)`` logits; run in eval mode on its own device (inputs moved there,
            in its parameters' dtype); training flags restored, gradients untouched.
        images: ``(M, *shape)`` finite images (e.g. test images of one class), M >= 1.
        target: the class index in ``[0, K)`` whose share is counted.
        weights: the weights w in [0, 1] (0 = noise only, 1 = image only).
        noise: a :class:`~wna_helpers.stimuli.Noise` or a shorthand; default ``"uniform"`` (U[0, 1], the paper's).
        n_per_weight: stimuli per weight; default 1,000.
        seed: default 0.
        batch_size: stimuli per forward pass (a batch may span weights); default 2,048.

    Returns:
        :class:`PsychometricCurve`: float64 ``weights``/``shares`` and int64 ``hits``, ``(W,)`` on CPU.

    Raises:
        ValueError: bad images (shape, empty, non-finite), weights outside [0, 1], a noise that is not a seeded
            noise kind, bad ``n_per_weight``/``seed``/``batch_size``, a target that is not an int in ``[0, K)``,
            or a model that does not return ``(B, K)`` logits.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[0.0], [1.0]])); _ = model[1].bias.copy_(torch.tensor([0.5, 0]))
        >>> psychometric_curve(model, torch.ones(1, 1), 1, [0.0, 1.0], n_per_weight=500).shares[-1].item()
        1.0
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() < 2 or len(images) == 0:
        raise ValueError(f"images must be a non-empty tensor (M, *shape) with at least 2 dimensions; got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if images.is_complex() or not bool(torch.isfinite(images).all()):
        raise ValueError("images hold NaN, ±inf or complex values; images must be finite real values")
    target, w, stim = _int("target", target, 0), _as_weights(weights), as_stimulus(noise)
    if not isinstance(stim, Noise):
        raise ValueError(f"noise must be a seeded noise kind (Uniform, Gaussian, Mixture, ...); "
                         f"{type(stim).__name__} is not noise")
    shape = tuple(images.shape[1:])
    stim.check_shape(shape)
    n_per_weight, seed = _int("n_per_weight", n_per_weight, 1), _int("seed", seed)
    batch_size = _int("batch_size", batch_size, 1)

    device, dtype = _model_dtype(model)
    imgs = images.to(device=device, dtype=dtype)
    wl = w.tolist()
    hits = torch.zeros(len(wl), dtype=torch.int64, device=device)
    gen = torch.Generator(device=device)

    def chunks() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for j, v in enumerate(wl):
            for c, start in enumerate(range(0, n_per_weight, _CHUNK)):
                n_c = min(_CHUNK, n_per_weight - start)
                gen.manual_seed(_stream_seed(seed, j, c))
                idx = torch.randint(len(imgs), (n_c,), generator=gen, device=device)
                x = stim.sample(gen, (n_c, *shape), device, dtype).mul_(1.0 - v).add_(imgs[idx], alpha=v)
                yield x, torch.full((n_c,), j, dtype=torch.int64, device=device)

    def count(x: torch.Tensor, j: torch.Tensor) -> None:
        hits.add_(torch.bincount(j[model(x).argmax(1) == target], minlength=len(wl)))

    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        logits = model(imgs[:1])
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ValueError(f"the model must return (B, K) logits; got "
                             f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
        if target >= logits.shape[1]:
            raise ValueError(f"target must be a class index in [0, {logits.shape[1]}); got {target}")
        buf_x, buf_j, pending = [], [], 0
        for x, j in chunks():  # batches are cut from the stream of stimuli: batch_size never changes them
            buf_x.append(x)
            buf_j.append(j)
            pending += len(x)
            if pending >= batch_size:
                xs, js = torch.cat(buf_x), torch.cat(buf_j)
                full = pending - pending % batch_size
                for i in range(0, full, batch_size):
                    count(xs[i:i + batch_size], js[i:i + batch_size])
                buf_x, buf_j, pending = [xs[full:]], [js[full:]], pending - full
        if pending:
            count(torch.cat(buf_x), torch.cat(buf_j))
    finally:
        for m, flag in flags.items():
            m.training = flag
    hits = hits.cpu()
    return PsychometricCurve(weights=w, shares=hits.double() / n_per_weight, hits=hits,
                             n_per_weight=n_per_weight, target=target)


@dataclass
class PsychometricFit:
    """A logistic ``p(w) = 1 / (1 + exp(-slope * (w - threshold)))`` fitted to a psychometric curve.

    Attributes:
        threshold: w where the *fitted* curve is 0.5 (``-intercept / slope``); extrapolated, possibly far outside
            the weights or ±inf, when the data never cross 0.5. slope: per unit of w.
        threshold_ci, slope_ci: ``(lo, hi)`` parametric-bootstrap percentile intervals (NaN with ``n_boot=0``).
        converged: whether the ridge-penalised Newton iteration converged. n_boot: bootstrap replicates.
        intercept: ``a`` of ``a + slope * w``. boot_converged: share of bootstrap fits that converged.
    """

    threshold: float
    slope: float
    threshold_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    converged: bool
    n_boot: int
    intercept: float = math.nan
    boot_converged: float = math.nan

    def predict(self, w: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The fitted probability at ``w`` (float64, the shape of ``w``)."""
        a = self.intercept if math.isfinite(self.intercept) else -self.slope * self.threshold
        return torch.sigmoid(a + self.slope * torch.as_tensor(w, dtype=torch.float64))


def _newton(x: torch.Tensor, y: torch.Tensor, n: torch.Tensor,
            theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge-penalised binomial ML of ``a + b * x`` for every row of ``y`` at once (Newton with backtracking).

    x, n: (W,); y: (B, W) successes; theta: (B, 2) start. Returns theta (B, 2) and converged (B,).
    """
    def objective(t: torch.Tensor) -> torch.Tensor:
        eta = t[:, :1] + t[:, 1:] * x
        return (y * eta - n * torch.logaddexp(torch.zeros_like(eta), eta)).sum(-1) - 0.5 * _RIDGE * (t * t).sum(-1)

    def newton(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.sigmoid(t[:, :1] + t[:, 1:] * x)
        r, v = y - n * p, n * p * (1 - p)  # residuals and IRLS weights (B, W)
        g0, g1 = r.sum(-1) - _RIDGE * t[:, 0], (r * x).sum(-1) - _RIDGE * t[:, 1]
        h00, h01, h11 = v.sum(-1) + _RIDGE, (v * x).sum(-1), (v * x * x).sum(-1) + _RIDGE
        det = h00 * h11 - h01 * h01  # the 2x2 system in closed form (no LAPACK call per replicate)
        step = torch.stack([(h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det], 1)
        return step, g0 * step[:, 0] + g1 * step[:, 1]  # the step and the Newton decrement

    f = objective(theta)
    done = torch.zeros(len(theta), dtype=torch.bool)
    for _ in range(_MAX_ITER):
        step, dec = newton(theta)
        done |= dec <= 1e-9
        if bool(done.all()):
            break
        t = (~done).double()
        for _ in range(60):  # backtracking, vectorised over replicates
            cand = theta + t[:, None] * step
            f_new = objective(cand)
            bad = ~(f_new >= f) & (t > 0)
            if not bool(bad.any()):
                break
            t = torch.where(bad, t / 2, t)
        ok = (f_new >= f) & (t > 0)
        theta, f = torch.where(ok[:, None], cand, theta), torch.where(ok, f_new, f)
        done |= ~ok  # no ascent left in floating point
    return theta, (newton(theta)[1] <= 1e-6) & torch.isfinite(theta).all(1)


def fit_psychometric(weights: Sequence[float] | torch.Tensor, shares: Sequence[float] | torch.Tensor, *,
                     n_trials: int | torch.Tensor = 1000, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> PsychometricFit:
    """Fit ``p(w) = 1 / (1 + exp(-slope * (w - threshold)))`` by binomial maximum likelihood, with bootstrap CIs.

    ``a + b * w`` is fitted in float64 by Newton (IRLS, with backtracking) on centred, scaled weights with a
    tiny ridge penalty (1e-6 on the centred, scaled coefficients); ``threshold = -a / b``, ``slope = b``.
    The ridge keeps degenerate data finite and has no visible effect otherwise: perfect separation gives a
    large finite slope, the threshold between the last 0 and the first 1; all-0 or all-1 shares give a
    flat curve near 0 or 1 whose threshold (where the *fitted* curve would be 0.5) is far outside the
    weights or ±inf (NaN for a curve that is 0.5 everywhere). Intervals: ``n_boot`` replicates
    ``hits ~ Binomial(n_trials, share)`` per weight (seeded), refitted together (batched Newton),
    percentile interval at ``level`` (lower end rounded down, upper up; NaN replicates ignored).

    Args:
        weights: ``(W,)`` weights, at least two distinct finite values.
        shares: ``(W,)`` observed shares in [0, 1].
        n_trials: trials per weight, an int or an integer ``(W,)`` tensor, all >= 1; default 1,000.
        n_boot: bootstrap replicates, >= 0 (0: no intervals); default 1,000.
        level: interval coverage in (0, 1); default 0.95.
        seed: bootstrap seed; default 0.

    Returns:
        :class:`PsychometricFit`.

    Raises:
        ValueError: shapes that differ, fewer than two distinct weights, non-finite values, shares outside
            [0, 1], bad ``n_trials``, ``n_boot``, ``level`` or ``seed``.

    Example:
        >>> import torch
        >>> w = torch.linspace(0, 1, 11)
        >>> fit = fit_psychometric(w, torch.sigmoid(12 * (w - 0.4)), n_trials=500, n_boot=200)
        >>> round(fit.threshold, 3), round(fit.slope, 2)
        (0.4, 12.0)
    """
    try:
        w, s = (torch.as_tensor(v, dtype=torch.float64).cpu() for v in (weights, shares))
    except (TypeError, ValueError, RuntimeError):
        raise ValueError("weights and shares must be sequences or tensors of numbers") from None
    if w.dim() != 1 or s.shape != w.shape:
        raise ValueError(f"weights and shares must both have shape (W,); got {tuple(w.shape)} and {tuple(s.shape)}")
    if not bool(torch.isfinite(w).all()) or len(torch.unique(w)) < 2:
        raise ValueError(f"weights must be finite with at least two distinct values; got {w.tolist()}")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()) or bool((s > 1).any()):
        raise ValueError(f"shares must lie in [0, 1]; got {s.tolist()}")
    if isinstance(n_trials, torch.Tensor):
        n = n_trials.detach().cpu()
        if n.is_floating_point() or n.is_complex() or n.dtype == torch.bool or n.shape != w.shape \
                or bool((n < 1).any()):
            raise ValueError(f"n_trials must be an int >= 1 or an integer tensor of shape {tuple(w.shape)}, "
                             f"values >= 1; got {n_trials!r}")
        n = n.double()
    else:
        n = torch.full_like(w, _int("n_trials", n_trials, 1))
    n_boot, seed = _int("n_boot", n_boot, 0), _int("seed", seed)
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < float(level) < 1:
        raise ValueError(f"level must be a number in (0, 1); got {level!r}")

    centre, half = (w.max() + w.min()) / 2, (w.max() - w.min()) / 2

    def natural(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = theta[:, 1] / half
        a = theta[:, 0] - b * centre
        return a, b, -a / b

    x = (w - centre) / half
    theta, conv = _newton(x, (s * n)[None], n, torch.zeros(1, 2, dtype=torch.float64))
    a, b, thr = natural(theta)
    thr_ci = slope_ci = (math.nan, math.nan)
    boot_conv = math.nan
    if n_boot:
        gen = torch.Generator().manual_seed(seed)
        y = torch.binomial(n.expand(n_boot, -1).contiguous(), s.expand(n_boot, -1).contiguous(), generator=gen)
        tb, cb = _newton(x, y, n, theta.expand(n_boot, -1).clone())
        _, bb, thb = natural(tb)
        alpha = (1 - float(level)) / 2

        def interval(v: torch.Tensor) -> tuple[float, float]:
            if bool(torch.isnan(v).all()):
                return math.nan, math.nan
            return (float(torch.nanquantile(v, alpha, interpolation="lower")),
                    float(torch.nanquantile(v, 1 - alpha, interpolation="higher")))

        thr_ci, slope_ci, boot_conv = interval(thb), interval(bb), float(cb.double().mean())
    return PsychometricFit(threshold=float(thr[0]), slope=float(b[0]), threshold_ci=thr_ci, slope_ci=slope_ci,
                           converged=bool(conv[0]), n_boot=n_boot, intercept=float(a[0]), boot_converged=boot_conv)


class _Stop(Exception):
    """Raised by the hook to end the forward pass once the layer's output is known."""


@torch.no_grad()
def unit_activation(model: nn.Module, layer: str, images: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Mean activation of every unit of ``layer`` over ``images``, after a ReLU (the paper's ``a``).

    A forward hook on the layer takes its output (first call per forward; the rest of the model is skipped),
    clamps it at 0 and averages it: per channel over batch and space for a 4-D ``(N, C, H, W)`` output, per
    unit for a 2-D ``(N, U)`` one. Sums in float64; the hook is removed in a ``finally``.

    Args:
        model: the network; run in eval mode on its own device, training flags restored.
        layer: a name from ``model.named_modules()`` (e.g. ``"conv2"``).
        images: ``(N, *shape)`` inputs, N >= 1 (e.g. training images of one class).
        batch_size: images per forward pass; default 1,024.

    Returns:
        float64 ``(C,)`` or ``(U,)`` on CPU.

    Raises:
        ValueError: an unknown layer (the message lists them), empty images, a bad ``batch_size``, a layer
            that did not run or whose output is not a 2-D or 4-D tensor.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
        >>> unit_activation(model, "0", torch.rand(5, 1, 4, 4)).shape
        torch.Size([2])
    """
    module = _find(model, layer)
    if not isinstance(images, torch.Tensor) or images.dim() < 1 or len(images) == 0:
        raise ValueError(f"images must be a non-empty tensor (N, *shape); got {type(images).__name__}")
    batch_size = _int("batch_size", batch_size, 1)
    device, dtype = _model_dtype(model)
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() not in (2, 4):
            got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"layer {layer!r} returns {got}; unit_activation needs (N, U) or (N, C, H, W)")
        seen.append(output)
        raise _Stop

    total = torch.zeros((), dtype=torch.float64)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    handle = module.register_forward_hook(hook)
    try:
        for i in range(0, len(images), batch_size):
            seen.clear()
            try:
                model(images[i:i + batch_size].to(device=device, dtype=dtype))
            except _Stop:
                pass
            if not seen:
                raise ValueError(f"layer {layer!r} did not run in the model's forward pass")
            out = seen[0].clamp(min=0).double()
            total = total + (out.mean((2, 3)) if out.dim() == 4 else out).sum(0).cpu()
    finally:
        handle.remove()
        for m, flag in flags.items():
            m.training = flag
    return total / len(images)


def class_inhibition(activation: torch.Tensor, k: float, *, scale: float = 1.0) -> torch.Tensor:
    """The paper's bias change inhibiting one class: ``-scale * k * a / a.max()``, for :func:`microstimulate`.

    Args:
        activation: ``(U,)`` finite mean activations over one class (:func:`unit_activation`), max > 0.
        k: the strength (the paper: 0..10; negative values excite).
        scale: the layer's scale (the paper: conv1 0.1, conv2 1, fc1 0.01); default 1.

    Returns:
        float64 tensor shaped like ``activation``, on CPU.

    Raises:
        ValueError: empty or non-finite ``activation``, ``activation.max() <= 0``, non-finite k or scale.

    Example:
        >>> class_inhibition(torch.tensor([0.0, 1.0, 2.0, 4.0]), 2, scale=0.1)
        tensor([-0.0000, -0.0500, -0.1000, -0.2000], dtype=torch.float64)
    """
    if not isinstance(activation, torch.Tensor) or activation.numel() == 0 or activation.is_complex() \
            or not bool(torch.isfinite(activation).all()):
        raise ValueError("activation must be a non-empty tensor of finite real values")
    k, scale = _finite("k", k), _finite("scale", scale)
    a = activation.detach().double().cpu()
    if not float(a.max()) > 0:
        raise ValueError(f"activation.max() must be > 0 to normalise by it; got {float(a.max())!r}")
    return -scale * k * a / a.max()


def random_inhibition(delta: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """The control of :func:`class_inhibition`: the same delta values on randomly permuted units.

    The values move along a seeded random cycle through all elements, so no unit keeps its own value; the
    number of inhibited units, the total inhibition and the set of values are kept.

    Args:
        delta: a finite, non-empty bias change (any shape). seed: default 0.

    Returns:
        a new tensor like ``delta`` (a copy for a single element).

    Raises:
        ValueError: a non-tensor, empty or non-finite ``delta``, or a bad ``seed``.

    Example:
        >>> r = random_inhibition(torch.tensor([-1.0, -2.0, -3.0]), seed=1)
        >>> r.tolist() in ([-2.0, -3.0, -1.0], [-3.0, -1.0, -2.0])
        True
    """
    if not isinstance(delta, torch.Tensor) or delta.numel() == 0 or delta.is_complex() \
            or not bool(torch.isfinite(delta).all()):
        raise ValueError("delta must be a non-empty tensor of finite real values")
    flat = delta.detach().reshape(-1)
    order = torch.randperm(len(flat), generator=torch.Generator().manual_seed(_int("seed", seed))).to(flat.device)
    out = torch.empty_like(flat)
    out[order] = flat[order.roll(-1)]  # unit order[i] gets the value of unit order[i + 1]
    return out.reshape(delta.shape)
