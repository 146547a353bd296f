"""The paper's trojan (adversarial patch) attack, and scores that say whether a map shows its trigger.

Attack (``classification_images_adverserial.ipynb`` cells 6-21): :func:`trojan_dataset` stamps a 6x6
trigger (rows 1-6, columns 21-26) on the first 2,000 training 8s and relabels them 9;
:func:`trojan_metrics` measures the result. Detection: :func:`trigger_score` (known window) and
:func:`scan_score` (any window) score a map, e.g. a z-map of
:func:`~wna_helpers.methods.ci_compare.compare_classification_images` or the paper's baseline
:func:`mean_input_gradient`; :func:`roc_auc` compares scores of trojaned and clean models.
"""
from __future__ import annotations

import contextlib
import dataclasses
from numbers import Integral, Real
from typing import Iterator, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..zoo.data import Dataset
from ..engine.checks import check_int, describe, model_dtype
from ..engine.kernel import model_device
from ..engine.speed import fast_forward
from .detection import detection_test, roc_auc

__all__ = ["TRIGGER_SHAPES", "trigger_mask", "stamp_trigger", "trojan_dataset", "trojan_metrics", "window_mask",
           "trigger_score", "ScanResult", "scan_score", "mean_input_gradient"]
# roc_auc and detection_test live in applications.detection; imported here, so wna.trojan.roc_auc still works

#: Trigger shapes :func:`trigger_mask` knows.
TRIGGER_SHAPES: tuple[str, ...] = ("paper", "E", "square")
_OUTPUTS = ("logit", "probability", "paper")


def _pair(source: object, target: object, k: int) -> tuple[int, int]:
    s, t = check_int("source", source, 0), check_int("target", target, 0)
    if s >= k or t >= k or s == t:
        raise ValueError(f"source and target must be different classes in [0, {k}), got {source} and {target}")
    return s, t


def _position(position: object) -> tuple[int, int]:
    if not isinstance(position, (tuple, list)) or len(position) != 2:
        raise ValueError(f"position must be a (row, col) pair of integers >= 0, got {position!r}")
    return check_int("position row", position[0], 0), check_int("position col", position[1], 0)


def trigger_mask(shape: str = "paper", size: int = 6) -> torch.Tensor:
    """The trigger as a bool ``(size, size)`` mask.

    ``"paper"`` is the mask of the paper's code (``classification_images_adverserial.ipynb`` cell 6:
    rows 1-2 and 5-6 of columns 21-26 and rows 3-4 of columns 21-22): two-pixel-thick top and bottom
    bars and left column, with no middle bar (PAPER.md calls it "E"-shaped; it is a "C"). For other
    sizes the thickness is ``size // 3``. ``"E"``: one-pixel top, middle (row ``(size - 1) // 2``)
    and bottom bars and left column. ``"square"``: every pixel.

    Args:
        shape: ``"paper"`` (default), ``"E"`` or ``"square"``.
        size: side in pixels, >= 3; default 6.

    Returns:
        bool ``(size, size)``.

    Raises:
        ValueError: unknown shape or size below 3.

    Example:
        >>> trigger_mask().int()[:3].tolist()
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]]
    """
    if shape not in TRIGGER_SHAPES:
        raise ValueError(f"unknown trigger shape {shape!r}; valid shapes: {list(TRIGGER_SHAPES)}")
    size = check_int("size", size, 3)
    m = torch.zeros(size, size, dtype=torch.bool)
    if shape == "square":
        m[:] = True
    elif shape == "paper":
        t = size // 3
        m[:t], m[size - t:], m[:, :t] = True, True, True
    else:
        m[0], m[(size - 1) // 2], m[-1], m[:, 0] = True, True, True, True
    return m


def _mask(mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return trigger_mask()
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.numel() == 0:
        raise ValueError(f"mask must be a non-empty 2-d tensor (h, w), got {tuple(getattr(mask, 'shape', ()))}")
    return mask.detach().cpu() != 0


def _check_images(images: object, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (N, C, H, W), got {describe(images)}")
    return images


def _fit(hw: Sequence[int], position: tuple[int, int], size_hw: Sequence[int]) -> None:
    (r, c), (h, w) = position, size_hw
    if r + h > hw[0] or c + w > hw[1]:
        raise ValueError(f"a {h}x{w} trigger at (row, col) = {position} does not fit in a {hw[0]}x{hw[1]} image; "
                         f"the top-left corner must lie in [0, {hw[0] - h}] x [0, {hw[1] - w}]")


def stamp_trigger(images: torch.Tensor, *, position: tuple[int, int] = (1, 21), mask: torch.Tensor | None = None,
                  value: float = 1.0) -> torch.Tensor:
    """``clamp(x + value * trigger, 0, 1)`` on the trigger's pixels, every channel, on a copy.

    Stamped *with clipping*; the paper's code added 255 to uint8 images, which wraps around (a
    bright pixel turns dark). Pixels off the mask are returned unchanged.

    Args:
        images: float ``(N, C, H, W)``.
        position: ``(row, col)`` of the trigger's top-left corner; default ``(1, 21)`` (the paper's).
        mask: bool ``(h, w)`` trigger; default :func:`trigger_mask` ``()`` (the paper's 6x6).
        value: added to the masked pixels; default 1.0.

    Returns:
        ``(N, C, H, W)``, dtype and device of ``images``.

    Raises:
        ValueError: bad images, position, mask or value, or a trigger that does not fit.

    Example:
        >>> x = stamp_trigger(torch.full((1, 1, 28, 28), 0.5))
        >>> float(x[0, 0, 1, 21]), float(x[0, 0, 3, 24]), float(x.sum() - 0.5 * 784)
        (1.0, 0.5, 14.0)
    """
    images = _check_images(images)
    pos, m = _position(position), _mask(mask)
    if isinstance(value, bool) or not isinstance(value, Real) or not abs(float(value)) < float("inf"):
        raise ValueError(f"value must be a finite number, got {value!r}")
    _fit(images.shape[-2:], pos, m.shape)
    (r, c), (h, w) = pos, m.shape
    out = images.clone()
    win = out[..., r:r + h, c:c + w]
    on = m.to(images.device)
    win.copy_(torch.where(on, (win + float(value)).clamp(0.0, 1.0), win))
    return out


def trojan_dataset(data: Dataset, *, source: int = 8, target: int = 9, count: int = 2000,
                   position: tuple[int, int] = (1, 21), mask: torch.Tensor | None = None,
                   stamp: bool = True) -> Dataset:
    """A copy of ``data`` whose first ``count`` images of class ``source`` carry the trigger and the label
    ``target`` (the paper: the first 2,000 training 8s, relabelled 9). The rest is identical.

    With ``stamp=False`` the same images get the label ``target`` without the trigger: the control that shifts
    the class prior towards the target as the poisoning does, with nothing to find.

    Args:
        data: a :class:`~wna_helpers.zoo.data.Dataset` (not modified).
        source: class whose images are poisoned; default 8.
        target: label they get; default 9.
        count: images poisoned, >= 1; default 2,000.
        position: trigger's top-left ``(row, col)``; default ``(1, 21)``.
        mask: trigger; default the paper's (:func:`trigger_mask`).
        stamp: stamp the trigger (default True); False relabels only.

    Returns:
        A new :class:`~wna_helpers.zoo.data.Dataset` (same ``classes``, ``name``, ``split``).

    Raises:
        ValueError: bad classes (outside the dataset's, or equal), ``count`` < 1 or above the number
            of ``source`` images, or a trigger that does not fit.

    Example:
        >>> ds = wna.load_dataset("mnist", "train")  # doctest: +SKIP
        >>> poisoned = trojan_dataset(ds)             # doctest: +SKIP
        >>> int((poisoned.labels != ds.labels).sum())  # doctest: +SKIP
        2000
    """
    if not isinstance(data, Dataset):
        raise ValueError(f"data must be a wna_helpers.zoo.data.Dataset, got {type(data).__name__}")
    source, target = _pair(source, target, len(data.classes))
    count = check_int("count", count, 1)
    idx = torch.nonzero(data.labels == source).flatten()[:count]
    if len(idx) < count:
        raise ValueError(f"count={count} but {data.name} {data.split} has only {len(idx)} images of class {source}")
    images = data.images.clone()
    if stamp:
        images[idx] = stamp_trigger(data.images[idx], position=position, mask=mask)
    labels = data.labels.clone()
    labels[idx] = target
    return dataclasses.replace(data, images=images, labels=labels)


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device,
             dtype: torch.dtype) -> torch.Tensor:
    with fast_forward(model, tuple(images.shape[1:]), device) as forward:   # the engine's layout
        out = [forward(images[i:i + batch_size].to(device, dtype)).argmax(1).cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode inside, every submodule's training flag restored after."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, f in flags.items():
            m.train(f)


def trojan_metrics(model: nn.Module, test_data: Dataset, *, source: int, target: int, position: tuple[int, int],
                   mask: torch.Tensor | None = None, batch_size: int = 1000) -> dict[str, float | int]:
    """What the attack does on the test set (the paper: 99.04 % clean, 89.44 % with every test 8 stamped,
    974 of 974 stamped 8s called 9).

    Args:
        model: classifier returning ``(N, K)`` logits; run in eval mode on its device, left as found.
        test_data: a :class:`~wna_helpers.zoo.data.Dataset` (true labels).
        source: class whose images get the trigger.
        target: class the attack aims at.
        position: trigger's top-left ``(row, col)``.
        mask: trigger; default the paper's.
        batch_size: images per forward pass; default 1,000.

    Returns:
        dict: ``clean_accuracy`` (float), ``attack_success`` (share of stamped ``source`` images called
        ``target``; NaN when there are none), ``triggered_accuracy`` (accuracy against the true labels
        with every ``source`` image stamped), ``n_source`` (int).

    Raises:
        ValueError: bad data, classes, position, mask or batch size.
    """
    if not isinstance(test_data, Dataset) or len(test_data) == 0:
        raise ValueError(f"test_data must be a non-empty wna_helpers.zoo.data.Dataset, got {type(test_data).__name__}")
    source, target = _pair(source, target, len(test_data.classes))
    batch_size = check_int("batch_size", batch_size, 1)
    images, labels = _check_images(test_data.images, "test_data.images"), test_data.labels
    src = labels == source
    stamped = stamp_trigger(images[src], position=position, mask=mask)
    device, dtype = model_device(model), model_dtype(model)
    with _evaluating(model):
        clean = _predict(model, images, batch_size, device, dtype)
        hit = _predict(model, stamped, batch_size, device, dtype)
    correct = clean == labels
    n_src = int(src.sum())
    triggered = int(correct[~src].sum()) + int((hit == source).sum())
    return {"clean_accuracy": float(correct.double().mean()),
            "attack_success": float((hit == target).double().mean()) if n_src else float("nan"),
            "triggered_accuracy": triggered / len(labels), "n_source": n_src}


def window_mask(shape_hw: tuple[int, int], position: tuple[int, int], size: int = 6) -> torch.Tensor:
    """The trigger's ``size x size`` window as a bool ``(H, W)`` mask.

    Raises:
        ValueError: bad shape, position or size, or a window that does not fit.

    Example:
        >>> int(window_mask((28, 28), (1, 21)).sum())
        36
    """
    if not isinstance(shape_hw, (tuple, list, torch.Size)) or len(shape_hw) != 2:
        raise ValueError(f"shape_hw must be (H, W), got {shape_hw!r}")
    h, w = check_int("H", shape_hw[0], 1), check_int("W", shape_hw[1], 1)
    pos, size = _position(position), check_int("size", size, 1)
    _fit((h, w), pos, (size, size))
    m = torch.zeros(h, w, dtype=torch.bool)
    m[pos[0]:pos[0] + size, pos[1]:pos[1] + size] = True
    return m


def _check_maps(maps: object) -> torch.Tensor:
    if not isinstance(maps, torch.Tensor) or maps.dim() < 2 or maps.shape[-1] == 0 or maps.shape[-2] == 0:
        raise ValueError(f"maps must be a tensor (..., H, W), got {tuple(getattr(maps, 'shape', ()))}")
    return maps.detach().cpu().double()


def trigger_score(maps: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Mean of each map inside ``window`` minus its mean outside, ignoring NaN pixels.

    Pass one map ``(H, W)`` (for a class map ``(1, H, W)`` squeeze or average the channel first), or
    a stack ``(..., H, W)`` for one score per map.

    Args:
        maps: ``(..., H, W)``, e.g. a class's z-map.
        window: bool ``(H, W)`` (:func:`window_mask`), neither empty nor everything.

    Returns:
        float64 ``maps.shape[:-2]`` (0-d for one map); NaN where one side has no finite pixel.

    Raises:
        ValueError: bad maps, or a window of another shape, empty or full.

    Example:
        >>> m = torch.zeros(8, 8); m[2:4, 2:4] = 1.0
        >>> float(trigger_score(m, window_mask((8, 8), (2, 2), 2)))
        1.0
    """
    x = _check_maps(maps)
    if not isinstance(window, torch.Tensor) or tuple(window.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"window must be a bool tensor of the maps' shape {tuple(x.shape[-2:])}, got "
                         f"{tuple(getattr(window, 'shape', ()))}")
    win = window.detach().cpu() != 0
    if not bool(win.any()) or bool(win.all()):
        raise ValueError("window must hold some pixels and leave some out")
    flat = x.flatten(-2)
    return flat[..., win.flatten()].nanmean(-1) - flat[..., ~win.flatten()].nanmean(-1)


class ScanResult(NamedTuple):
    """Result of :func:`scan_score`: ``score`` float64 ``(...)`` and ``position`` int64 ``(..., 2)``,
    the (row, col) of the best window's top-left corner. Unpacks as ``score, position``."""

    score: torch.Tensor
    position: torch.Tensor


def scan_score(maps: torch.Tensor, size: int = 6) -> ScanResult:
    """Location-free trigger score: the largest mean over all ``size x size`` windows of a map minus
    the map's mean (``avg_pool2d`` with stride 1; NaN pixels count as 0 in both).

    Args:
        maps: ``(..., H, W)`` (one map or a stack).
        size: window side; default 6; at most ``min(H, W)``.

    Returns:
        :class:`ScanResult` ``(score, position)``: ``score`` float64 ``maps.shape[:-2]``, ``position``
        int64 ``(*maps.shape[:-2], 2)``, the top-left (row, col) of the best window (the first in
        row-major order on ties).

    Raises:
        ValueError: bad maps or size.

    Example:
        >>> m = torch.zeros(12, 12); m[3:9, 5:11] = 1.0
        >>> score, pos = scan_score(m)
        >>> round(float(score), 2), pos.tolist()
        (0.75, [3, 5])
    """
    x = torch.nan_to_num(_check_maps(maps), nan=0.0)
    h, w = x.shape[-2:]
    size = check_int("size", size, 1)
    if size > min(h, w):
        raise ValueError(f"size must be at most min(H, W) = {min(h, w)}, got {size}")
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w)
    pooled = F.avg_pool2d(flat, size, stride=1).flatten(1)           # (M, (H-s+1)(W-s+1))
    best, arg = pooled.max(1)
    cols = w - size + 1
    pos = torch.stack([arg // cols, arg % cols], -1)
    score = best - flat.flatten(1).mean(1)
    return ScanResult(score.reshape(lead), pos.reshape(*lead, 2))


def mean_input_gradient(model: nn.Module, images: torch.Tensor, *, labels: torch.Tensor | None = None,
                        classes: Sequence[int] | None = None, output: str = "logit", correct_only: bool = True,
                        batch_size: int = 256) -> torch.Tensor:
    """Per class, the mean gradient of the class's output with respect to the input (the paper's
    picture-based trojan baseline).

    Without ``labels`` every image counts for every class: row c is the mean over all images of
    ``d output_c / d x``. With ``labels`` an image counts only for its own label (and, with
    ``correct_only``, only when the model predicts that label). The paper's code
    (``classification_images_adverserial-FGMS-defense.ipynb`` cells 15, 23, 48: ``comp_grad``) took
    the training images one at a time, skipped those the model got wrong, and took the gradient of
    ``F.nll_loss`` on the model's *softmax* output, i.e. of ``-softmax_c`` for the image's class c,
    grouped by class (cell 48: with every training 8 stamped and relabelled 9). To replicate it:
    ``mean_input_gradient(model, train.images, labels=train.labels, output="paper")``.

    Args:
        model: classifier returning logits ``(N, K)``; run in eval mode on its device; training flags
            restored, no parameter ``.grad`` written (the gradient is taken w.r.t. the input only).
        images: float ``(N, *shape)``, N >= 1.
        labels: int ``(N,)`` in ``[0, K)``; default None (every image for every class).
        classes: the classes to return, in this order; default None (all K).
        output: ``"logit"`` (the raw output; default), ``"probability"`` (softmax) or ``"paper"``
            (``-softmax``, the paper's loss).
        correct_only: with ``labels``, keep only images predicted correctly (the paper's); default True.
        batch_size: images per forward/backward pass; default 256. Does not change the result.

    Returns:
        float64 ``(len(classes), *shape)`` on the CPU; NaN rows for classes no image counted for.

    Raises:
        ValueError: bad images, labels, classes, output, ``correct_only`` or batch size.

    Example:
        >>> model = nn.Linear(3, 2)
        >>> torch.allclose(mean_input_gradient(model, torch.rand(5, 3)), model.weight.double())
        True
    """
    if not isinstance(images, torch.Tensor) or images.dim() < 2 or len(images) == 0 or not images.is_floating_point():
        raise ValueError(f"images must be a non-empty float tensor (N, *shape), got {describe(images)}")
    if output not in _OUTPUTS or not isinstance(correct_only, bool):
        raise ValueError(f"output must be one of {list(_OUTPUTS)} and correct_only a bool, got {output!r}, "
                         f"{correct_only!r}")
    batch_size, n = check_int("batch_size", batch_size, 1), len(images)
    if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (n,)
                               or labels.is_floating_point() or labels.dtype == torch.bool):
        raise ValueError(f"labels must be an integer tensor of shape ({n},), got {describe(labels)}")
    device, dtype = model_device(model), model_dtype(model)
    with _evaluating(model):
        with torch.no_grad():
            k = model(images[:1].to(device, dtype)).shape[-1]
        cls = list(range(k)) if classes is None else [check_int("classes entry", c, 0) for c in classes]
        if not cls or max(cls) >= k or (labels is not None and not 0 <= int(labels.min()) <= int(labels.max()) < k):
            raise ValueError(f"classes and labels must lie in [0, {k}) (classes non-empty), got classes={classes!r}")
        row = torch.full((k,), -1, dtype=torch.int64, device=device)
        row[torch.tensor(cls, device=device)] = torch.arange(len(cls), device=device)   # class -> output row
        sums = torch.zeros(len(cls), *images.shape[1:], dtype=torch.float64)
        counts = torch.zeros(len(cls), dtype=torch.int64)
        with torch.enable_grad():
            for i in range(0, n, batch_size):
                x = images[i:i + batch_size].detach().to(device, dtype).requires_grad_(True)
                logits = model(x)
                out = logits if output == "logit" else logits.softmax(-1) * (-1.0 if output == "paper" else 1.0)
                if labels is None:
                    for j, c in enumerate(cls):                            # one backward per class
                        (g,) = torch.autograd.grad(out[:, c].sum(), x, retain_graph=j < len(cls) - 1)
                        sums[j] += g.sum(0).cpu().double()
                    counts += len(x)
                    continue
                y = labels[i:i + batch_size].to(device).long()
                keep = (row[y] >= 0) & ((logits.argmax(-1) == y) if correct_only else True)
                if bool(keep.any()):
                    picked = out.gather(1, y[:, None])[keep].sum()
                    (g,) = torch.autograd.grad(picked, x)                  # per-image gradients (eval mode)
                    r = row[y][keep].cpu()
                    sums.index_add_(0, r, g[keep].cpu().double())
                    counts += torch.bincount(r, minlength=len(cls))
    return sums / counts.double().view(-1, *([1] * (sums.dim() - 1)))    # 0 / 0 = NaN for an empty row
