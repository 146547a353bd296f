"""The argument checks every layer shares: one message for one mistake, raised before any work.

Each check returns the value in the form the caller uses (an ``int``, a float64 tensor ...) or raises
``ValueError`` naming the argument, what it got and what is allowed.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

__all__ = ["MAX_SAMPLES", "IMAGE_RANGE", "check_images", "check_value_range", "check_probability", "describe", "check_int", "check_positive_int", "check_number", "check_batch_size",
           "check_labels", "check_weights", "clip_range", "model_dtype", "check_n_samples", "check_input_shape"]

#: The most samples one run may stream: counts stay exact in float64 below 2^53 (about 9 x 10^15), and at
#: 10^8 samples a second (a GPU) 10^15 samples take four months.
MAX_SAMPLES = 10**15

#: The pixel range images are checked against unless a call declares another (``value_range=``): the range
#: the book's models were trained on. ``None`` skips the check (models trained on standardised inputs).
IMAGE_RANGE: tuple[float, float] = (0.0, 1.0)
_RANGE_SLACK = 1e-6


def describe(x: object) -> str:
    """``"<dtype> <shape>"`` of a tensor, the type name of anything else (for error messages)."""
    return f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}"


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int``; ValueError unless it is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name} must be an integer{bound}; got {value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int``; ValueError unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_number(name: str, value: Any, minimum: float | None = None) -> float:
    """``value`` as a ``float``; ValueError unless it is a finite real number (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)) \
            or (minimum is not None and value < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}; got {value!r}")
    return float(value)


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an ``int``; ValueError unless it is a positive integer."""
    return check_positive_int("batch_size", batch_size)


def check_labels(labels: Any, n: int, k: int, *, name: str = "labels") -> torch.Tensor:
    """``labels`` checked: an integer tensor ``(n,)`` with values in ``[0, k)``."""
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,) or labels.is_floating_point() \
            or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of shape ({n},); got {describe(labels)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"{name} must lie in [0, {k}) (one per class); "
                         f"got values from {int(labels.min())} to {int(labels.max())}")
    return labels


def check_weights(weights: Any, *, meaning: str = "0 = base only, 1 = pattern only") -> torch.Tensor:
    """Signal weights as float64 ``(W,)`` on the CPU: a non-empty sequence of numbers in [0, 1].

    Args:
        weights: a sequence or tensor of numbers (a single number or a string is refused).
        meaning: what 0 and 1 mean, for the message.
    """
    try:
        w = None if isinstance(weights, (Real, str, bytes)) else \
            torch.as_tensor(weights, dtype=torch.float64).flatten().cpu()
    except (TypeError, ValueError, RuntimeError):
        w = None
    if w is None or w.numel() == 0:
        raise ValueError(f"weights must be a non-empty sequence of numbers in [0, 1]; got {weights!r}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w > 1).any()):
        raise ValueError(f"weights must lie in [0, 1] ({meaning}); got {w.tolist()}")
    return w


def clip_range(clip: object) -> tuple[float, float]:
    """``clip`` as a ``(low, high)`` pair of finite floats with ``low < high``; ValueError otherwise."""
    try:
        low, high = (float(v) for v in clip)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"clip must be (low, high) with low < high, got {clip!r}")
    return low, high


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first floating parameter (float32 for a model without one)."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    return param.dtype if param is not None else torch.float32


def check_n_samples(n_samples: object) -> int:
    """``n_samples`` as an int; ValueError unless it is a positive integer of at most :data:`MAX_SAMPLES`."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if n_samples > MAX_SAMPLES:
        raise ValueError(f"n_samples={n_samples:.3g} is above the engine's maximum of {MAX_SAMPLES:.0e} samples per "
                         f"run (float64 counts stay exact below 2^53); split the work into several runs")
    return int(n_samples)


def check_input_shape(input_shape: object) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, e.g. ``(1, 28, 28)``; ValueError otherwise."""
    ok = isinstance(input_shape, (tuple, list, torch.Size)) and len(input_shape) > 0 and all(
        not isinstance(s, bool) and isinstance(s, Integral) and s > 0 for s in input_shape)
    if not ok:
        raise ValueError(f"input_shape must be a tuple of positive integers, the shape of one stimulus such as "
                         f"(1, 28, 28) (channels, height, width); got {input_shape!r}")
    return tuple(int(s) for s in input_shape)


def check_value_range(value_range: object) -> tuple[float, float] | None:
    """``value_range`` as ``(low, high)`` floats with ``low < high``, or None; ValueError otherwise."""
    if value_range is None:
        return None
    try:
        low, high = (float(v) for v in value_range)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high) with low < high, or None; got {value_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"value_range must be (low, high) with low < high, or None; got {value_range!r}")
    return low, high


def check_images(images: Any, *, name: str = "images", value_range: object = IMAGE_RANGE,
                 shape: tuple[int, ...] | None = None, min_dims: int = 2) -> torch.Tensor:
    """The one check of images every entry point shares, before any forward pass.

    Args:
        images: a tensor ``(N, *input_shape)``.
        name: the argument's name, for the message.
        value_range: the declared pixel range ``(low, high)``; default :data:`IMAGE_RANGE` ((0, 1), the book's
            models); None skips the range check.
        shape: the model's input shape, if known: every image must have it.
        min_dims: the fewest dimensions (2: ``(N, D)``).

    Returns:
        ``images`` itself.

    Raises:
        ValueError: not a non-empty floating tensor (uint8 and other integer images included), NaN or ±inf
            pixels, values outside ``value_range``, or another shape than ``shape``. The message says what is
            allowed.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a non-empty floating-point tensor (N, *input_shape); got {describe(images)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must hold floating-point pixel values; got {images.dtype} (0-255 uint8 images: "
                         f"pass images.float() / 255)")
    if images.dim() < min_dims or len(images) == 0:
        raise ValueError(f"{name} must be a non-empty tensor (N, *input_shape) with at least {min_dims} dimensions; "
                         f"got {describe(images)}")
    if shape is not None and tuple(images.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} have shape {tuple(images.shape[1:])} per image, but the input shape is "
                         f"{tuple(shape)}")
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        raise ValueError(f"{name} hold NaN or ±inf at {int((~finite).sum()):,} pixels; images must be finite")
    rng = check_value_range(value_range)
    if rng is not None:
        low, high = float(images.min()), float(images.max())
        if low < rng[0] - _RANGE_SLACK or high > rng[1] + _RANGE_SLACK:
            raise ValueError(f"{name} hold values from {low:g} to {high:g}, outside the declared range "
                             f"[{rng[0]:g}, {rng[1]:g}]{' (0-255 images: divide by 255)' if high > 2 else ''}; "
                             f"pass value_range=(low, high) for a model trained on other values, or "
                             f"value_range=None to skip this check")
    return images


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float strictly between 0 and 1 (a significance level, a coverage); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), e.g. 0.05; got {value!r}")
    return float(value)
