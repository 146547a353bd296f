"""The paper's pattern-plus-noise experiment ("gamma curves"): the share of ``(1 - w) * A + w * P_c``
that a model calls c, for every class c and weight w."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..engine.checks import check_batch_size, check_labels, check_weights, model_dtype
from ..engine.kernel import model_device
from ..engine.speed import fast_forward
from .numbers import PAPER_WEIGHTS

__all__ = ["gamma_curves"]


@torch.no_grad()
def gamma_curves(model: nn.Module, patterns: torch.Tensor, base: torch.Tensor,
                 weights: Sequence[float] | torch.Tensor = PAPER_WEIGHTS, *, base_labels: torch.Tensor | None = None,
                 batch_size: int = 2048, progress: bool = False) -> dict[str, torch.Tensor]:
    """The paper's "pattern plus noise or image" experiment: share of ``(1 - w) * A + w * P_c`` called c.

    For every class c with a pattern ``P_c`` and every weight w, all N base inputs A (U[0, 1]
    noise or test images, as the paper used) are mixed with ``P_c`` and the share the model
    assigns to c is recorded. The paper (``RF_MNIST.ipynb`` cells 64-92) averages this over the
    ten classes and counts base images already of class c as hits, so with images the score at
    ``w = 0`` is the class frequency; ``share_other`` (with ``base_labels``) leaves those out. A class
    without a pattern cannot be pulled towards: it counts as a miss in ``mean`` (the average over all K).
    At ``w = 0`` all classes share one forward pass; at ``w = 1`` every stimulus is ``P_c``, so one
    forward of the patterns decides the whole column (exactly what the mixed pass would give).

    Args:
        model: classifier returning ``(B, K)`` logits; run in eval mode on its own device, its
            training flags restored afterwards and its gradients untouched.
        patterns: ``(K, *shape)``, one per class of the model (e.g. min-max scaled CIs or
            class means, see :func:`minmax_scale`); a row with a NaN marks a class without a
            pattern (its column is NaN).
        base: ``(N, *shape)`` finite base inputs.
        weights: the weights w in [0, 1]; default :data:`PAPER_WEIGHTS` (0, 0.1, ..., 1).
        base_labels: optional int ``(N,)`` true classes of ``base`` in ``[0, K)``; default None.
        batch_size: base inputs per forward pass; default 2,048.
        progress: show a ``tqdm`` bar; default False.

    Returns:
        dict of tensors: ``weights`` float64 ``(W,)``; ``share`` float64 ``(W, K)`` (NaN for a class without a
        pattern at w > 0; at w = 0 every class's share of the base inputs); ``mean`` float64 ``(W,)`` over all K
        classes, a class without a pattern counting as a miss (the paper's score: at w = 0 on noise exactly
        1/K); ``mean_with_pattern`` float64 ``(W,)`` over the classes with a pattern; ``has_pattern`` bool ``(K,)``;
        and, with ``base_labels``, ``share_other`` float64 ``(W, K)`` (the share among base inputs
        whose label is not c; NaN where there are none), ``mean_other`` float64 ``(W,)`` and
        ``n_other`` int64 ``(K,)``.

    Raises:
        ValueError: for patterns and base of different shapes, an empty base, non-finite base
            values, ±inf in a pattern, no class with a pattern, weights outside [0, 1], bad
            ``base_labels`` or ``batch_size``, or a model whose logits do not have K columns.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from wna_helpers.paper import gamma_curves
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.eye(4))
        >>> out = gamma_curves(model, torch.eye(4).view(4, 1, 2, 2), torch.rand(50, 1, 2, 2), [0.0, 1.0])
        >>> out["mean"][-1].item()
        1.0
    """
    w, has = _check_inputs(patterns, base, weights, base_labels, batch_size)
    n, k = len(base), len(patterns)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        hits, hits_other = _count_hits(model, patterns, base, w.tolist(), has, base_labels, batch_size, progress)
    finally:
        for m, flag in flags.items():
            m.training = flag
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    measured = has[None, :] | (w == 0.0)[:, None]              # w = 0 needs no pattern: the base inputs alone
    share = torch.where(measured, hits.cpu().double() / n, nan)
    # the paper's score: the mean over all K classes, a class without a pattern counting as a miss
    out = {"weights": w, "share": share, "mean": torch.nan_to_num(share, nan=0.0).mean(1),
           "mean_with_pattern": share[:, has].mean(1), "has_pattern": has}
    if base_labels is not None:
        n_other = n - torch.bincount(base_labels.cpu().long(), minlength=k)
        ok = has & (n_other > 0)
        share_other_all = torch.where(measured & (n_other > 0), hits_other.cpu().double() / n_other.clamp_min(1).double(),
                                      nan)
        share_other = torch.where(ok[None, :] | (w == 0.0)[:, None], share_other_all, nan)
        none = torch.full((len(w),), float("nan"), dtype=torch.float64)
        out.update(share_other=share_other, n_other=n_other,
                   mean_other=share_other[:, ok].mean(1) if bool(ok.any()) else none)
    return out


def _check_inputs(patterns: Any, base: Any, weights: Any, base_labels: Any,
                  batch_size: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights (float64 ``(W,)``) and which classes have a pattern (bool ``(K,)``), after every check."""
    if not isinstance(patterns, torch.Tensor) or patterns.dim() < 2 or len(patterns) == 0:
        raise ValueError("patterns must be a non-empty tensor (K, *shape) with at least 2 dimensions; got "
                         f"{tuple(getattr(patterns, 'shape', ()))}")
    shape = tuple(patterns.shape[1:])
    if not isinstance(base, torch.Tensor) or tuple(base.shape[1:]) != shape or base.dim() != patterns.dim():
        raise ValueError(f"base must be a tensor (N, {', '.join(map(str, shape))}) matching the patterns' "
                         f"shape {shape}; got {tuple(getattr(base, 'shape', ()))}")
    n, k = len(base), len(patterns)
    if n == 0:
        raise ValueError("base is empty; give at least one base input")
    w = check_weights(weights)
    check_batch_size(batch_size)
    if base_labels is not None:
        check_labels(base_labels, n, k)
    flat = patterns.reshape(k, -1)
    has = ~torch.isnan(flat).any(1).cpu()
    if not bool(has.any()):
        raise ValueError("every pattern is NaN; at least one class needs a pattern")
    if bool(torch.isinf(flat).any()):
        raise ValueError("patterns hold ±inf; use finite values, or NaN for a class without a pattern")
    if not bool(torch.isfinite(base).all()):
        raise ValueError("base holds NaN or ±inf; base inputs must be finite")
    return w, has


def _count_hits(model: nn.Module, patterns: torch.Tensor, base: torch.Tensor, wl: list[float], has: torch.Tensor,
                base_labels: torch.Tensor | None, batch_size: int,
                progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hits ``(W, K)``: stimuli mixed with class c's pattern that the model calls c; and the same among
    the base inputs whose label is not c (zeros without labels). The model is in eval mode."""
    n, k = len(base), len(patterns)
    device, dtype = model_device(model), model_dtype(model)
    classes = torch.nonzero(has).flatten().tolist()
    cls_dev = torch.tensor(classes, device=device)
    every = torch.arange(k, device=device)
    pats = torch.nan_to_num(patterns.to(dtype)).to(device)
    labels = base_labels.to(device).long() if base_labels is not None else None
    mixed = [i for i, v in enumerate(wl) if 0.0 < v < 1.0]
    zeros = [j for j, v in enumerate(wl) if v == 0.0]
    hits = torch.zeros(len(wl), k, dtype=torch.int64, device=device)
    hits_other = torch.zeros_like(hits)
    logits = model(base[:1].to(device, dtype))
    if logits.dim() != 2 or logits.shape[1] != k:
        raise ValueError(f"the model returns logits of shape {tuple(logits.shape)} but there are {k} patterns; "
                         f"give one pattern per class of the model (a NaN row for a class without one)")
    n_batches = -(-n // batch_size)
    bar = tqdm(total=n_batches * (len(mixed) * len(classes) + int(bool(zeros))), disable=not progress,
               desc="gamma curves")
    # the engine's memory layout (channels-last on a CPU where the logits agree): float32 rounding only
    with fast_forward(model, tuple(base.shape[1:]), device) as forward:
        for i in range(0, n, batch_size):  # batches of base inputs, not a loop per sample
            a = base[i:i + batch_size].to(device, dtype)
            other = (labels[i:i + batch_size, None] != cls_dev[None, :]) if labels is not None else None
            if zeros:  # w = 0: the stimuli are the base inputs for every class (with a pattern or not): one pass
                hit = forward(a).argmax(1)[:, None] == every[None, :]  # (B, K)
                every_other = (labels[i:i + batch_size, None] != every[None, :]) if labels is not None else None
                for wi in zeros:
                    hits[wi] += hit.sum(0)
                    if every_other is not None:
                        hits_other[wi] += (hit & every_other).sum(0)
                bar.update(1)
            for wi in mixed:
                v = wl[wi]
                for j, c in enumerate(classes):
                    hit = forward(a * (1.0 - v) + pats[c] * v).argmax(1) == c
                    hits[wi, c] += hit.sum()
                    if other is not None:
                        hits_other[wi, c] += (hit & other[:, j]).sum()
                    bar.update(1)
    bar.close()
    if any(v == 1.0 for v in wl):  # w = 1: every stimulus is P_c, one forward of the patterns decides
        own = (model(pats[cls_dev]).argmax(1) == cls_dev).long()
        n_not = (n - torch.bincount(labels, minlength=k)[cls_dev]) if labels is not None else None
        for wi in (j for j, v in enumerate(wl) if v == 1.0):
            hits[wi, cls_dev] = own * n
            if n_not is not None:
                hits_other[wi, cls_dev] = own * n_not
    return hits, hits_other
