"""Psychometric curves and their logistic fits (chapter 9's microstimulation study).

:func:`psychometric_curve` measures the share of ``(1 - w) * noise + w * image`` called a class, with
common random numbers (two conditions, e.g. with and without :func:`~wna_helpers.applications.microstimulation.microstimulate`,
see identical stimuli), and :func:`fit_psychometric` fits a logistic with bootstrap intervals.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ..engine.checks import IMAGE_RANGE, check_images, check_int, check_weights, model_dtype
from ..engine.kernel import model_device
from ..engine.stimuli import Noise, as_stimulus

__all__ = ["psychometric_curve", "PsychometricCurve", "fit_psychometric", "PsychometricFit"]

_CHUNK = 4096  # stimuli per generator chunk: fixed, so batch_size never changes the draws
_RIDGE = 1e-6  # penalty on the centred, scaled logistic coefficients (keeps degenerate fits finite)
_MAX_ITER = 200

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


@torch.no_grad()
def psychometric_curve(model: nn.Module, images: torch.Tensor, target: int,
                       weights: Sequence[float] | torch.Tensor, *, noise: Noise | str = "uniform",
                       n_per_weight: int = 1000, seed: int = 0, batch_size: int = 2048,
                       value_range: tuple[float, float] | None = IMAGE_RANGE) -> PsychometricCurve:
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
        noise: a :class:`~wna_helpers.engine.stimuli.Noise` or a shorthand; default ``"uniform"`` (U[0, 1], the paper's).
        n_per_weight: stimuli per weight; default 1,000.
        seed: default 0.
        batch_size: stimuli per forward pass (a batch may span weights); default 2,048.
        value_range: the range the images' pixels must lie in (the model's inputs); default (0, 1); None
            skips that check (:func:`~wna_helpers.engine.checks.check_images`).

    Returns:
        :class:`PsychometricCurve`: float64 ``weights``/``shares`` and int64 ``hits``, ``(W,)`` on CPU.

    Raises:
        ValueError: bad images (shape, empty, non-finite, integer, outside ``value_range``, a shape the model
            cannot take), weights outside [0, 1], a noise that is not a seeded
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
    target, w, stim, n_per_weight, seed, batch_size = _check_curve(model, images, target, weights, noise,
                                                                    n_per_weight, seed, batch_size, value_range)
    device, dtype = model_device(model), model_dtype(model)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        imgs = images.to(device=device, dtype=dtype)
        try:
            logits = model(imgs[:1])
        except Exception as exc:
            raise ValueError(f"the model cannot take images of shape {tuple(images.shape[1:])} "
                             f"({type(exc).__name__}: {str(exc)[:160]}); give images of its input shape") from None
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise ValueError(f"the model must return (B, K) logits; got "
                             f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
        if target >= logits.shape[1]:
            raise ValueError(f"target must be a class index in [0, {logits.shape[1]}); got {target}")
        stream = _stimuli(imgs, stim, w.tolist(), n_per_weight, seed)
        hits = _count_hits(model, stream, target, len(w), batch_size, device)
    finally:
        for m, flag in flags.items():
            m.training = flag
    return PsychometricCurve(weights=w, shares=hits.double() / n_per_weight, hits=hits,
                             n_per_weight=n_per_weight, target=target)


def _check_curve(model: Any, images: Any, target: Any, weights: Any, noise: Any, n_per_weight: Any, seed: Any,
                 batch_size: Any, value_range: Any) -> tuple[int, torch.Tensor, Noise, int, int, int]:
    """Every argument of :func:`psychometric_curve` checked (before any forward pass)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    check_images(images, value_range=value_range)
    w = check_weights(weights, meaning="0 = noise only, 1 = image only")
    stim = as_stimulus(noise)
    if not isinstance(stim, Noise):
        raise ValueError(f"noise must be a seeded noise kind (Uniform, Gaussian, Mixture, ...); "
                         f"{type(stim).__name__} is not noise")
    stim.check_shape(tuple(images.shape[1:]))
    return (check_int("target", target, 0), w, stim, check_int("n_per_weight", n_per_weight, 1),
            check_int("seed", seed), check_int("batch_size", batch_size, 1))


def _stimuli(imgs: torch.Tensor, stim: Noise, wl: list[float], n_per_weight: int,
             seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The stimuli ``(1 - w) * noise + w * image`` of every weight, chunk by chunk, with their weight index."""
    device, dtype, shape = imgs.device, imgs.dtype, tuple(imgs.shape[1:])
    gen = torch.Generator(device=device)
    for j, v in enumerate(wl):
        for c, start in enumerate(range(0, n_per_weight, _CHUNK)):
            n_c = min(_CHUNK, n_per_weight - start)
            gen.manual_seed(_stream_seed(seed, j, c))
            idx = torch.randint(len(imgs), (n_c,), generator=gen, device=device)
            x = stim.sample(gen, (n_c, *shape), device, dtype).mul_(1.0 - v).add_(imgs[idx], alpha=v)
            yield x, torch.full((n_c,), j, dtype=torch.int64, device=device)


def _count_hits(model: nn.Module, stream: Iterator[tuple[torch.Tensor, torch.Tensor]], target: int, n_weights: int,
                batch_size: int, device: torch.device) -> torch.Tensor:
    """Per weight, the stimuli the model calls ``target``: int64 ``(W,)`` on the CPU. Batches are cut from the
    stream of stimuli, so ``batch_size`` never changes which stimuli are drawn."""
    hits = torch.zeros(n_weights, dtype=torch.int64, device=device)

    def count(x: torch.Tensor, j: torch.Tensor) -> None:
        hits.add_(torch.bincount(j[model(x).argmax(1) == target], minlength=n_weights))

    buf_x, buf_j, pending = [], [], 0
    for x, j in stream:
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
    return hits.cpu()


@dataclass
class PsychometricFit:
    """A logistic ``p(w) = 1 / (1 + exp(-slope * (w - threshold)))`` fitted to a psychometric curve.

    Attributes:
        threshold: w where the *fitted* curve is 0.5 (``-intercept / slope``); extrapolated, possibly far outside
            the weights or ±inf, when the data never cross 0.5. slope: per unit of w.
        threshold_ci, slope_ci: ``(lo, hi)`` parametric-bootstrap percentile intervals (NaN with ``n_boot=0``).
        converged: whether the ridge-penalised Newton iteration converged. n_boot: bootstrap replicates.
        intercept: ``a`` of ``a + slope * w``. boot_converged: share of bootstrap fits that converged.
        degenerate: what is odd about the shares, or "": ``"never reaches 0.5"`` (the threshold interval then
            reaches +inf), ``"always above 0.5"`` (it reaches -inf) or ``"a step"`` (every share 0 or 1: the
            interval covers the weights between which the step lies, as finely as the data place it).
    """

    threshold: float
    slope: float
    threshold_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    converged: bool
    n_boot: int
    intercept: float = math.nan
    boot_converged: float = math.nan
    degenerate: str = ""

    def predict(self, w: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The fitted probability at ``w`` (float64, the shape of ``w``)."""
        a = self.intercept if math.isfinite(self.intercept) else -self.slope * self.threshold
        return torch.sigmoid(a + self.slope * torch.as_tensor(w, dtype=torch.float64))


def _check_fit(weights: Any, shares: Any, n_trials: Any, n_boot: Any, level: Any,
               seed: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """:func:`fit_psychometric`'s arguments checked: weights, shares and trials per weight as float64 ``(W,)``."""
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
        n = torch.full_like(w, check_int("n_trials", n_trials, 1))
    n_boot, seed = check_int("n_boot", n_boot, 0), check_int("seed", seed)
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < float(level) < 1:
        raise ValueError(f"level must be a number in (0, 1); got {level!r}")
    return w, s, n, n_boot, seed



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
    ``hits ~ Binomial(n_trials, (hits + 1/2) / (n_trials + 1))`` per weight (seeded; the half trial keeps a
    share of 0 or 1 from giving replicates without variance), refitted together (batched Newton),
    percentile interval at ``level`` (lower end rounded down, upper up; NaN replicates ignored). Shares that
    cannot place the threshold (never reaching 0.5, always above it, or a step of 0s and 1s) are named in
    ``degenerate``, and the threshold interval then reaches the range's end (±inf) or covers the step.

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
    w, s, n, n_boot, seed = _check_fit(weights, shares, n_trials, n_boot, level, seed)
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
        shrunk = (s * n + 0.5) / (n + 1)  # half a trial towards 1/2: a share of 0 or 1 still varies in the replicates
        y = torch.binomial(n.expand(n_boot, -1).contiguous(), shrunk.expand(n_boot, -1).contiguous(), generator=gen)
        tb, cb = _newton(x, y, n, theta.expand(n_boot, -1).clone())
        _, bb, thb = natural(tb)
        alpha = (1 - float(level)) / 2

        def interval(v: torch.Tensor) -> tuple[float, float]:
            if bool(torch.isnan(v).all()):
                return math.nan, math.nan
            return (float(torch.nanquantile(v, alpha, interpolation="lower")),
                    float(torch.nanquantile(v, 1 - alpha, interpolation="higher")))

        thr_ci, slope_ci, boot_conv = interval(thb), interval(bb), float(cb.double().mean())
    degenerate, bounds = _degenerate(w, s)
    if bounds is not None and n_boot:  # the interval covers at least what the data cannot tell apart
        thr_ci = (min(thr_ci[0], bounds[0]), max(thr_ci[1], bounds[1]))
    return PsychometricFit(threshold=float(thr[0]), slope=float(b[0]), threshold_ci=thr_ci, slope_ci=slope_ci,
                           converged=bool(conv[0]), n_boot=n_boot, intercept=float(a[0]), boot_converged=boot_conv,
                           degenerate=degenerate)


def _degenerate(w: torch.Tensor, s: torch.Tensor) -> tuple[str, tuple[float, float] | None]:
    """Shares that cannot place a threshold finely, and the range of thresholds they leave open."""
    if bool((s < 0.5).all()):
        return "never reaches 0.5", (float(w.max()), math.inf)
    if bool((s > 0.5).all()):
        return "always above 0.5", (-math.inf, float(w.min()))
    if bool(((s == 0) | (s == 1)).all()):
        zeros, ones = w[s == 0], w[s == 1]
        below = zeros[zeros < ones.min()]
        above = ones[ones > zeros.max()]
        return "a step", (float(below.max()) if len(below) else -math.inf,
                          float(above.min()) if len(above) else math.inf)
    return "", None
