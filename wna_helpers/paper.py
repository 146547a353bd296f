"""The paper's numbers as data, and the paper's pattern-plus-noise ("gamma curve") experiment.

:func:`paper_numbers` returns every number that the code of Borji & Lin (ICLR 2020) printed or
typed, transcribed from the project's ``PAPER.md`` into ``paper_numbers.json`` (package data),
each entry with its ``source`` (notebooks, cells, section of PAPER.md) and a short ``what``.
:func:`gamma_curves` reruns the paper's experiment with stimuli ``(1 - w) * A + w * P_c``;
:func:`paper_templates` is its template recipe (the accuracy:
:func:`wna_helpers.noise_study.template_accuracy`); :func:`compare` puts one of our numbers next to the paper's.
"""
from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources
from numbers import Real
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .kernel import model_device

__all__ = ["PAPER_WEIGHTS", "paper_numbers", "paper_weights", "cite", "minmax_scale", "paper_templates",
           "gamma_curves", "compare"]

#: The weights ``w`` of the paper's gamma curves: 0, 0.1, ..., 1.0 (11 values).
PAPER_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("paper_numbers.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_numbers() -> dict[str, Any]:
    """Every number of the paper's code, as a nested dict (a fresh deep copy on every call).

    The file is read once and cached; callers get their own copy and cannot change the cache.
    Shares are fractions (62.4 % is ``0.624``); classes are indices with their dataset's name in
    ``"name"``; every entry carries ``"source"`` (``{"notebooks": [...], "cells": str | None,
    "section": str}``, the section of PAPER.md) and ``"what"``.

    Top-level keys: ``meta``, ``class_names``, ``data``, ``training``, ``white_noise``,
    ``gabor_noise``, ``templates``, ``feed_back``, ``gamma_curves``, ``targeted_attack``,
    ``trojan``, ``microstimulation``, ``rnn``, ``signal_in_noise``, ``sta``, ``exploratory``, ``quirks``.

    Returns:
        dict parsed from ``wna_helpers/paper_numbers.json``.

    Example:
        >>> from wna_helpers.paper import paper_numbers
        >>> p = paper_numbers()
        >>> p["gamma_curves"]["curves"]["noise_ci"]["values"][-1]
        0.9
        >>> p["templates"]["accuracy"][0]["accuracy"]
        0.356
    """
    return copy.deepcopy(_load())


def paper_weights() -> torch.Tensor:
    """The gamma-curve weights 0, 0.1, ..., 1.0 as float64 ``(11,)`` (:data:`PAPER_WEIGHTS`).

    Returns:
        float64 ``(11,)``.

    Example:
        >>> from wna_helpers.paper import paper_weights
        >>> paper_weights()[[0, 5, -1]].tolist()
        [0.0, 0.5, 1.0]
    """
    return torch.tensor(PAPER_WEIGHTS, dtype=torch.float64)


def cite(entry: dict[str, Any]) -> str:
    """One line naming where an entry of :func:`paper_numbers` comes from.

    Args:
        entry: any dict of :func:`paper_numbers` with a ``"source"``.

    Returns:
        e.g. ``"Colab Notebooks/classification_images_adverserial.ipynb, cell 62"``; the section
        of PAPER.md when it names no notebook.

    Raises:
        ValueError: if ``entry`` has no ``"source"``.

    Example:
        >>> from wna_helpers.paper import cite, paper_numbers
        >>> cite(paper_numbers()["targeted_attack"])
        'Colab Notebooks/classification_images_adverserial.ipynb, cell 62'
    """
    src = entry.get("source") if isinstance(entry, dict) else None
    if not isinstance(src, dict):
        raise ValueError("entry has no 'source'; pass a dict taken from paper_numbers()")
    text = ", ".join(src.get("notebooks") or []) or f"PAPER.md, section '{src.get('section')}'"
    cells = src.get("cells")
    if cells:
        text += f", {'cells' if '-' in str(cells) else 'cell'} {cells}"
    return text


def minmax_scale(images: torch.Tensor) -> torch.Tensor:
    """Scale each image to [0, 1]: ``(x - min) / (max - min)`` over all its pixels.

    A constant image maps to zeros; an image with a NaN pixel (e.g. the CI of a class without
    samples) comes back all NaN.

    Args:
        images: ``(N, *shape)``, at least 2-D; integer images are converted to float32.

    Returns:
        ``(N, *shape)``, the input's floating dtype (float32 for integer input), on its device.

    Raises:
        ValueError: if ``images`` is not a tensor with at least 2 dimensions, or holds ±inf.

    Example:
        >>> import torch
        >>> from wna_helpers.paper import minmax_scale
        >>> minmax_scale(torch.tensor([[2.0, 4.0, 3.0], [5.0, 5.0, 5.0]]))
        tensor([[0.0000, 1.0000, 0.5000],
                [0.0000, 0.0000, 0.0000]])
    """
    if not isinstance(images, torch.Tensor) or images.dim() < 2:
        raise ValueError("images must be a tensor of shape (N, *shape) with at least 2 dimensions; "
                         f"got {type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
    x = images if images.is_floating_point() else images.float()
    if torch.isinf(x).any():
        raise ValueError("images hold ±inf; only finite values (or NaN for a missing image) are allowed")
    flat = x.reshape(len(x), -1)
    lo = flat.amin(1, keepdim=True)  # NaN propagates: an image with a NaN stays NaN
    span = flat.amax(1, keepdim=True) - lo
    out = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return out.view_as(x)


def paper_templates(ci_images: torch.Tensor, *, rms_images: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's templates: each class image min-max scaled to [0, 1], then L2-normalised.

    PAPER.md ("CIs as templates"): the template of class c is ``sqrt(mean(noise^2))`` of the
    (Gabor) noise the model called c, an RMS image (``Gabor-PCA.ipynb`` cell 20; elsewhere the
    plain mean), min-max scaled to [0, 1] and L2-normalised. Images are L2-normalised without mean
    subtraction, and the prediction is the argmax of the dot product
    (:func:`wna_helpers.analysis.template_classify` with ``center=False`` on the classes that have a
    template; :func:`wna_helpers.noise_study.template_accuracy` does this for a
    :class:`~wna_helpers.ci.ClassificationImages`).

    Args:
        ci_images: ``(K, *shape)`` classification images (the per-class means); NaN rows are
            classes without samples.
        rms_images: ``(K, *shape)`` per-class RMS images, used instead of ``ci_images`` when
            given (the recipe of ``Gabor-PCA.ipynb``); from a
            :class:`~wna_helpers.ci.ClassificationImages` ``ci``:
            ``(ci.sumsq / ci.counts.view(-1, 1, 1, 1)).sqrt()``. Default None (use the means).

    Returns:
        float64 ``(K, *shape)``, every finite row of unit L2 norm; NaN rows stay NaN; a constant
        class image becomes an all-zero template.

    Raises:
        ValueError: if the inputs are not ``(K, *shape)`` tensors of the same shape.

    Example:
        >>> import torch
        >>> from wna_helpers.paper import paper_templates
        >>> t = paper_templates(torch.rand(10, 1, 28, 28))
        >>> t.shape, round(float(t[0].norm()), 6)
        (torch.Size([10, 1, 28, 28]), 1.0)
    """
    if not isinstance(ci_images, torch.Tensor) or ci_images.dim() < 2:
        raise ValueError("ci_images must be a tensor (K, *shape) with at least 2 dimensions")
    src = ci_images
    if rms_images is not None:
        if not isinstance(rms_images, torch.Tensor) or rms_images.shape != ci_images.shape:
            raise ValueError(f"rms_images must have the shape of ci_images {tuple(ci_images.shape)}; got "
                             f"{tuple(getattr(rms_images, 'shape', ()))}")
        src = rms_images
    x = minmax_scale(src.double()).reshape(len(src), -1)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)  # zeros stay zeros, NaN stays NaN
    return x.view(src.shape)


def _check_labels(labels: Any, n: int, k: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point() \
            or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of shape ({n},); got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}) (one per class of the patterns); "
                         f"got values from {int(labels.min())} to {int(labels.max())}")


def _check_batch(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")


def _as_weights(weights: Any) -> torch.Tensor:
    try:
        w = torch.as_tensor(weights, dtype=torch.float64).flatten() if not isinstance(weights, Real) else None
    except (TypeError, ValueError, RuntimeError):
        w = None
    if w is None or w.numel() == 0:
        raise ValueError(f"weights must be a non-empty sequence of numbers in [0, 1]; got {weights!r}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise ValueError(f"weights must lie in [0, 1] (0 = base only, 1 = pattern only); got {w.tolist()}")
    return w


@torch.no_grad()
def gamma_curves(model: nn.Module, patterns: torch.Tensor, base: torch.Tensor,
                 weights: Sequence[float] | torch.Tensor = PAPER_WEIGHTS, *, base_labels: torch.Tensor | None = None,
                 batch_size: int = 2048, progress: bool = False) -> dict[str, torch.Tensor]:
    """The paper's "pattern plus noise or image" experiment: share of ``(1 - w) * A + w * P_c`` called c.

    For every class c with a pattern ``P_c`` and every weight w, all N base inputs A (U[0, 1]
    noise or test images, as the paper used) are mixed with ``P_c`` and the share the model
    assigns to c is recorded. The paper (``RF_MNIST.ipynb`` cells 64-92) averages this over the
    ten classes and counts base images already of class c as hits, so with images the score at
    ``w = 0`` is the class frequency; ``share_other`` (with ``base_labels``) leaves those out.
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
        dict of tensors: ``weights`` float64 ``(W,)``; ``share`` float64 ``(W, K)``;
        ``mean`` float64 ``(W,)`` over the classes with a pattern; ``has_pattern`` bool ``(K,)``;
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
    w = _as_weights(weights)
    _check_batch(batch_size)
    if base_labels is not None:
        _check_labels(base_labels, n, k)
    flat = patterns.reshape(k, -1)
    has = ~torch.isnan(flat).any(1).cpu()
    if not bool(has.any()):
        raise ValueError("every pattern is NaN; at least one class needs a pattern")
    if bool(torch.isinf(flat).any()):
        raise ValueError("patterns hold ±inf; use finite values, or NaN for a class without a pattern")
    if not bool(torch.isfinite(base).all()):
        raise ValueError("base holds NaN or ±inf; base inputs must be finite")

    device = model_device(model)
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype = param.dtype if param is not None else torch.float32
    classes = torch.nonzero(has).flatten().tolist()
    cls_dev = torch.tensor(classes, device=device)
    pats = torch.nan_to_num(patterns.to(dtype)).to(device)
    labels = base_labels.to(device).long() if base_labels is not None else None
    wl = w.tolist()
    mixed = [i for i, v in enumerate(wl) if 0.0 < v < 1.0]
    hits = torch.zeros(len(wl), k, dtype=torch.int64, device=device)
    hits_other = torch.zeros_like(hits)

    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        logits = model(base[:1].to(device, dtype))
        if logits.dim() != 2 or logits.shape[1] != k:
            raise ValueError(f"the model returns logits of shape {tuple(logits.shape)} but there are {k} patterns; "
                             f"give one pattern per class of the model (a NaN row for a class without one)")
        n_batches = -(-n // batch_size)
        zero = any(v == 0.0 for v in wl)
        bar = tqdm(total=n_batches * (len(mixed) * len(classes) + int(zero)), disable=not progress,
                   desc="gamma curves")
        for i in range(0, n, batch_size):  # batches of base inputs, not a loop per sample
            a = base[i:i + batch_size].to(device, dtype)
            other = (labels[i:i + batch_size, None] != cls_dev[None, :]) if labels is not None else None
            if zero:  # w = 0: the stimuli are the base inputs for every class: one pass
                hit = model(a).argmax(1)[:, None] == cls_dev[None, :]  # (B, classes)
                for wi in (j for j, v in enumerate(wl) if v == 0.0):
                    hits[wi, cls_dev] += hit.sum(0)
                    if other is not None:
                        hits_other[wi, cls_dev] += (hit & other).sum(0)
                bar.update(1)
            for wi in mixed:
                v = wl[wi]
                for j, c in enumerate(classes):
                    x = a * (1.0 - v) + pats[c] * v
                    hit = model(x).argmax(1) == c
                    hits[wi, c] += hit.sum()
                    if other is not None:
                        hits_other[wi, c] += (hit & other[:, j]).sum()
                    bar.update(1)
        bar.close()
        if any(v == 1.0 for v in wl):  # w = 1: every stimulus is P_c
            own = (model(pats[cls_dev]).argmax(1) == cls_dev).long()
            n_not = (n - torch.bincount(labels, minlength=k)[cls_dev]) if labels is not None else None
            for wi in (j for j, v in enumerate(wl) if v == 1.0):
                hits[wi, cls_dev] = own * n
                if n_not is not None:
                    hits_other[wi, cls_dev] = own * n_not
    finally:
        for m, flag in flags.items():
            m.training = flag

    nan = torch.tensor(float("nan"), dtype=torch.float64)
    share = torch.where(has, hits.cpu().double() / n, nan)
    out = {"weights": w, "share": share, "mean": share[:, has].mean(1), "has_pattern": has}
    if labels is not None:
        n_other = n - torch.bincount(base_labels.cpu().long(), minlength=k)
        ok = has & (n_other > 0)
        share_other = torch.where(ok, hits_other.cpu().double() / n_other.clamp_min(1).double(), nan)
        out.update(share_other=share_other, n_other=n_other,
                   mean_other=share_other[:, ok].mean(1) if bool(ok.any()) else torch.full((len(wl),), float("nan"),
                                                                                         dtype=torch.float64))
    return out


def compare(measured: float | Sequence[float] | torch.Tensor, paper: float | Sequence[float] | torch.Tensor, *,
            tolerance: float) -> dict[str, Any]:
    """Put our number (or curve) next to the paper's: is it reproduced within ``tolerance``?

    ``reproduced`` is True when every ``|ours - paper| <= tolerance`` (absolute, in the units of
    the numbers; a NaN of ours is never reproduced).

    Args:
        measured: our value: a number, or a sequence / 1-D tensor of numbers.
        paper: the paper's value, of the same length as ``measured``.
        tolerance: the largest absolute difference still counted as reproduced, >= 0.

    Returns:
        ``{"paper", "ours", "diff", "max_abs_diff", "reproduced"}``: floats for numbers, lists of
        floats for sequences (``diff = ours - paper``); ``max_abs_diff`` is a float (NaN if ours
        holds a NaN), ``reproduced`` a bool.

    Raises:
        ValueError: if ``tolerance`` is negative or not finite, the lengths differ, or the paper's
            value is not finite.

    Example:
        >>> from wna_helpers.paper import compare
        >>> compare(0.371, 0.356, tolerance=0.05)["reproduced"]
        True
        >>> compare([0.1, 0.5], [0.1, 0.2], tolerance=0.05)["diff"]
        [0.0, 0.3]
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0; got {tolerance!r}")
    try:
        ours_t = torch.as_tensor(measured, dtype=torch.float64).cpu()
        paper_t = torch.as_tensor(paper, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"measured and paper must be numbers or sequences of numbers ({err})") from None
    scalar = ours_t.dim() == 0 and paper_t.dim() == 0
    ours_t, paper_t = ours_t.flatten(), paper_t.flatten()
    if ours_t.shape != paper_t.shape or ours_t.numel() == 0:
        raise ValueError(f"measured and paper must have the same, non-zero length; got {ours_t.numel()} and "
                         f"{paper_t.numel()}")
    if not bool(torch.isfinite(paper_t).all()):
        raise ValueError("the paper's value must be finite")
    diff = ours_t - paper_t
    worst = float(diff.abs().max()) if bool(torch.isfinite(diff).all()) else float("nan")
    reproduced = bool(math.isfinite(worst) and worst <= tolerance + 1e-12)

    def _out(values: list[float]) -> float | list[float]:
        return values[0] if scalar else values

    return {"paper": _out(paper_t.tolist()), "ours": _out(ours_t.tolist()),
            "diff": _out([round(v, 12) for v in diff.tolist()]),  # 0.5 - 0.2 reads 0.3, not 0.30000000000000004
            "max_abs_diff": worst, "reproduced": reproduced}
