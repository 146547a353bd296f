"""Microstimulation: shift units' biases inside a ``with`` block, and choose which units to shift.

The paper (PAPER.md, "Microstimulation") subtracts a scaled class-mean activation from a layer's bias
and watches the psychometric curve of that class move (:mod:`~wna_helpers.methods.psychometrics`).
:func:`unit_activation` and :func:`class_inhibition` build that bias change (:func:`random_inhibition`
is its control), and :func:`microstimulate` applies it and restores the biases bit-exactly.
"""
from __future__ import annotations

import contextlib
import math
from numbers import Real
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from ..engine.checks import check_int, check_number, model_dtype
from ..engine.kernel import model_device

__all__ = ["microstimulate", "unit_activation", "class_inhibition", "random_inhibition", "paired_sign_test"]


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
    batch_size = check_int("batch_size", batch_size, 1)
    device, dtype = model_device(model), model_dtype(model)
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


def class_inhibition(activation: torch.Tensor, k: float, *, scale: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """The paper's bias change inhibiting one class: ``-scale * k * a / a.max()``, for :func:`microstimulate`.

    Args:
        activation: ``(U,)`` finite mean activations over one class (:func:`unit_activation`), max > 0.
        k: the strength (the paper: 0..10; negative values excite).
        scale: the layer's scale (the paper: conv1 0.1, conv2 1, fc1 0.01); default 1.
        normalize: divide by ``a.max()`` (the paper does for its conv layers, not for fc1, where the change is
            ``-0.01 * k * a``); default True.

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
    k, scale = check_number("k", k), check_number("scale", scale)
    a = activation.detach().double().cpu()
    if not normalize:
        return -scale * k * a
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
    order = torch.randperm(len(flat), generator=torch.Generator().manual_seed(check_int("seed", seed))).to(flat.device)
    out = torch.empty_like(flat)
    out[order] = flat[order.roll(-1)]  # unit order[i] gets the value of unit order[i + 1]
    return out.reshape(delta.shape)


def paired_sign_test(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Exact two-sided sign test of paired values (e.g. per class: the threshold shift of the class units
    against that of the random units), robust to infinite values (an abolished response: a shift of +inf).

    Pairs where either value is NaN are left out; equal pairs (``inf`` and ``inf`` included) are ties and
    left out of the test. ``p`` is the exact binomial probability, under no difference, of a split at least as
    uneven as the observed one (two-sided, ``min(1, 2 * P(X <= min(wins, losses)))``).

    Args:
        a, b: float tensors of the same shape, one value per pair.

    Returns:
        dict: ``n`` (pairs tested), ``wins`` (a > b), ``losses`` (a < b), ``ties``, ``median`` (median of
        ``a - b`` over the defined pairs, the lower middle value; ``inf`` when a's infinite values decide it),
        ``p``.

    Example:
        >>> out = paired_sign_test(torch.tensor([1.0, 2, 3, 4, 5, 6]), torch.zeros(6))
        >>> out["wins"], round(out["p"], 4)
        (6, 0.0312)
    """
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up: {tuple(a.shape)} and {tuple(b.shape)}")
    ok = ~(torch.isnan(a) | torch.isnan(b))
    a, b = a[ok], b[ok]
    wins, losses = int((a > b).sum()), int((a < b).sum())
    ties = len(a) - wins - losses
    diff = torch.where(a == b, torch.zeros_like(a), a - b)      # inf - inf is a tie, not NaN
    median = float(diff.sort().values[(len(diff) - 1) // 2]) if len(diff) else math.nan
    n = wins + losses
    if n == 0:
        return {"n": 0, "wins": 0, "losses": 0, "ties": ties, "median": median, "p": 1.0}
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return {"n": n, "wins": wins, "losses": losses, "ties": ties, "median": median, "p": min(1.0, 2 * tail)}
