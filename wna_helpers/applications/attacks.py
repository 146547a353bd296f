"""Black-box targeted attacks built from classification images.

A classification image (CI) needs only the model's decisions on noise, so an attack that adds a
CI to a real image is a query-only ("black-box") attack. PAPER.md (section "Pattern plus noise or
image ... and the black-box attack"): the paper fed ``0.3 * image + CI_t`` (CI min-max scaled) to an
MNIST model for 100 training images of 9 and got 50-100 % classified as t.

:func:`blend_attack` reruns that recipe (``alpha * x + pattern_weight * P_t``, with ``alpha = 0`` as
the control: the share the pattern alone gets). :func:`perturbation_attack` asks the cleaner
question: at a fixed perturbation budget (L2 or Linf), how often does ``x + eps * d_t / ||d_t||``
go to t, for a CI direction (:func:`ci_directions`), a class-mean direction
(:func:`mean_image_directions`) or a random control (:func:`random_directions`)?
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..methods.ci import ClassificationImages
from ..engine.checks import IMAGE_RANGE, check_batch_size, check_images, check_labels, clip_range, model_dtype
from ..engine.kernel import model_device
from ..engine.speed import fast_forward

__all__ = ["BlendAttack", "PerturbationAttack", "blend_attack", "perturbation_attack", "random_directions",
           "shuffled_directions", "other_class_directions", "ci_directions", "mean_image_directions"]


@dataclass
class BlendAttack:
    """Result of :func:`blend_attack`.

    Attributes:
        alphas: float64 ``(A,)``: the image weights.
        targets: int64 ``(T,)``: the target classes.
        success: float64 ``(A, T)``: share of the images not of class t classified as t (NaN: none).
        n_images: int64 ``(T,)``: images used per target (those whose label is not t).
    """

    alphas: torch.Tensor
    targets: torch.Tensor
    success: torch.Tensor
    n_images: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Success averaged over the targets (NaN columns left out), float64 ``(A,)``."""
        return self.success.nanmean(1)


@dataclass
class PerturbationAttack:
    """Result of :func:`perturbation_attack`.

    Attributes:
        budgets: float64 ``(E,)``: the perturbation budgets eps (in the norm ``norm``).
        norm: ``"l2"`` or ``"linf"``.
        targets: int64 ``(T,)``: the target classes.
        success: float64 ``(E, T)``: share of the images not of class t classified as t (NaN: none).
        actual_l2: float64 ``(E, T)``: mean L2 norm of the perturbation actually applied (after
            clipping, which shrinks it).
        actual_linf: float64 ``(E, T)``: mean ``max |perturbation|`` actually applied.
        n_images: int64 ``(T,)``: images used per target (those whose label is not t).
    """

    budgets: torch.Tensor
    norm: str
    targets: torch.Tensor
    success: torch.Tensor
    actual_l2: torch.Tensor
    actual_linf: torch.Tensor
    n_images: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """Success averaged over the targets (NaN columns left out), float64 ``(E,)``."""
        return self.success.nanmean(1)

    @property
    def pooled(self) -> torch.Tensor:
        """Success over every image-target trial, float64 ``(E,)``: the hits summed over the targets divided by
        ``n_images.sum()`` (:attr:`mean` weights the targets equally instead)."""
        n = self.n_images.double()
        ok = n > 0
        return (self.success[:, ok] * n[ok]).sum(1) / n[ok].sum()

    def interval(self, z: float = 1.96) -> torch.Tensor:
        """Wilson score interval of :attr:`pooled`, each image-target pair a trial, float64 ``(E, 2)`` (default
        ``z = 1.96``: 95 %). The same images serve every target, so the trials are not fully independent; the
        interval is a guide, not an exact test."""
        n = float(self.n_images.double().sum())
        p = self.pooled
        if n <= 0:
            return torch.full((len(p), 2), float("nan"), dtype=torch.float64)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * torch.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return torch.stack([centre - half, centre + half], 1)


# ---------------------------------------------------------------------------- argument checks


def _check_rows(name: str, rows: Any, images: torch.Tensor) -> None:
    shape = tuple(images.shape[1:])
    if not isinstance(rows, torch.Tensor) or tuple(rows.shape[1:]) != shape or rows.dim() != images.dim() \
            or len(rows) == 0 or not rows.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor (K, {', '.join(map(str, shape))}) matching the images' "
                         f"shape {shape}; got {getattr(rows, 'dtype', type(rows).__name__)} "
                         f"{tuple(getattr(rows, 'shape', ()))}")
    if bool(torch.isinf(rows).any()):
        raise ValueError(f"{name} hold ±inf; use finite values, or NaN for a class without one")


def _as_levels(name: str, values: Any) -> torch.Tensor:
    try:
        v = torch.as_tensor(values, dtype=torch.float64).flatten() if not isinstance(values, (Real, str)) else None
    except (TypeError, ValueError, RuntimeError):
        v = None
    if v is None or v.numel() == 0:
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers >= 0; got {values!r}")
    if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0; got {v.tolist()}")
    return v


def _targets(targets: Any, k: int, usable: torch.Tensor, why: str) -> list[int]:
    """The requested targets as distinct ints in [0, K) whose row is usable; default every usable class."""
    if targets is None:
        out = torch.nonzero(usable).flatten().tolist()
        if not out:
            raise ValueError(f"no class has a usable row ({why}); nothing to attack")
        return out
    if isinstance(targets, torch.Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ValueError(f"targets must hold integers; got a {targets.dtype} tensor")
        targets = targets.flatten().tolist()
    items = [targets] if isinstance(targets, Integral) else targets
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0 \
            or any(isinstance(t, bool) or not isinstance(t, Integral) for t in items):
        raise ValueError(f"targets must be None, a class index or a non-empty sequence of class indices; "
                         f"got {targets!r}")
    out = [int(t) for t in items]
    if any(not 0 <= t < k for t in out):
        raise ValueError(f"targets must lie in [0, {k}); got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"targets must be distinct; got {out}")
    bad = [t for t in out if not bool(usable[t])]
    if bad:
        raise ValueError(f"targets {bad} have no usable row ({why}); leave them out or pass targets=None")
    return out


# ---------------------------------------------------------------------------- the shared loop


def _run(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int, targets: list[int], n_levels: int,
         make: Callable[[torch.Tensor, int, int], torch.Tensor], prepare: Callable[[torch.device, torch.dtype], None],
         batch_size: int, norms: bool) -> tuple[torch.Tensor, ...]:
    """Per (level, target): hits (images not of t sent to t), sums of the perturbation's L2 and Linf
    norms (all ``(L, T)``) and images used ``(T,)``. ``make(x, j, level)`` builds the stimuli of
    target ``targets[j]``; ``prepare(device, dtype)`` moves the patterns to the model first."""
    device, dtype = model_device(model), model_dtype(model)
    prepare(device, dtype)
    n_t = len(targets)
    hits = torch.zeros(n_levels, n_t, dtype=torch.int64, device=device)
    l2 = torch.zeros(n_levels, n_t, dtype=torch.float64, device=device)
    linf = torch.zeros_like(l2)
    lab = labels.to(device).long()
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            logits = model(images[:1].to(device, dtype))
            if logits.dim() != 2 or logits.shape[1] != k:
                raise ValueError(f"the model returns logits of shape {tuple(logits.shape)} but there are {k} "
                                 f"patterns/directions; give one row per class of the model (NaN for none)")
            with fast_forward(model, tuple(images.shape[1:]), device) as forward:   # the engine's layout
                for i in range(0, len(images), batch_size):  # batches of images, not a loop per sample
                    xb, lb = images[i:i + batch_size].to(device, dtype), lab[i:i + batch_size]
                    for j, t in enumerate(targets):
                        x = xb[lb != t]
                        if len(x) == 0:
                            continue
                        for level in range(n_levels):
                            s = make(x, j, level)
                            hits[level, j] += (forward(s).argmax(1) == t).sum()
                            if norms:
                                d = (s.double() - x.double()).flatten(1)
                                l2[level, j] += d.norm(dim=1).sum()
                                linf[level, j] += d.abs().amax(1).sum()
    finally:
        for m, flag in flags.items():
            m.training = flag
    n = torch.stack([(labels != t).sum() for t in targets]).long().cpu()
    return hits.cpu(), l2.cpu(), linf.cpu(), n


def _share(total: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    out = total.double() / n.clamp_min(1).double()
    return torch.where(n > 0, out, torch.tensor(float("nan"), dtype=torch.float64))


# ---------------------------------------------------------------------------- the attacks


def blend_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, patterns: torch.Tensor, *,
                 alphas: Sequence[float] | torch.Tensor = (0.0, 0.1, 0.3, 0.5, 1.0), pattern_weight: float = 1.0,
                 targets: int | Sequence[int] | torch.Tensor | None = None, batch_size: int = 1024,
                 value_range: tuple[float, float] | None = IMAGE_RANGE) -> BlendAttack:
    """The paper's black-box attack: share of ``alpha * x + pattern_weight * P_t`` classified as t.

    For every target t and every alpha, the images whose label is not t are blended with the
    pattern of t (no clipping, as in the paper: ``0.3 * image + CI_t``, CI min-max scaled) and the
    share the model sends to t is recorded. ``alpha = 0`` is the control: the share the pattern
    alone gets (0 or 1).

    Args:
        model: classifier returning ``(B, K)`` logits; run in eval mode on its own device without
            gradients, its training flags restored afterwards.
        images: finite ``(N, *shape)`` images (e.g. in [0, 1]).
        labels: int ``(N,)`` true classes in ``[0, K)``.
        patterns: ``(K, *shape)``, one per class of the model (e.g. ``minmax_scale(ci.images)``);
            a row holding a NaN marks a class without a pattern.
        alphas: image weights, finite and >= 0; default ``(0, 0.1, 0.3, 0.5, 1)``.
        pattern_weight: weight of the pattern, a finite number; default 1.
        targets: target classes; default None (every class with a finite pattern).
        batch_size: images per forward pass; default 1,024 (does not change the result).
        value_range: the range the images' pixels must lie in (the model's inputs); default (0, 1); None
            skips that check (:func:`~wna_helpers.engine.checks.check_images`).

    Returns:
        :class:`BlendAttack` with ``alphas`` ``(A,)``, ``targets`` ``(T,)``, ``success`` ``(A, T)``,
        ``n_images`` ``(T,)`` and ``mean`` ``(A,)``.

    Raises:
        ValueError: bad images, labels, patterns (shape, ±inf), alphas, pattern_weight, targets (out
            of range, repeated, no finite pattern) or batch_size; logits without K columns.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.eye(4))
        >>> x, y = torch.rand(40, 1, 2, 2), torch.arange(40) % 4
        >>> out = blend_attack(model, x, y, 4 * torch.eye(4).view(4, 1, 2, 2), alphas=(0.0, 1.0))
        >>> out.mean.tolist(), out.n_images.tolist()
        ([1.0, 1.0], [30, 30, 30, 30])
    """
    check_images(images, value_range=value_range)
    _check_rows("patterns", patterns, images)
    k = len(patterns)
    check_labels(labels, len(images), k)
    a = _as_levels("alphas", alphas)
    if isinstance(pattern_weight, bool) or not isinstance(pattern_weight, Real) or not math.isfinite(pattern_weight):
        raise ValueError(f"pattern_weight must be a finite number; got {pattern_weight!r}")
    check_batch_size(batch_size)
    has = ~torch.isnan(patterns.reshape(k, -1)).any(1).cpu()
    tlist = _targets(targets, k, has, "a pattern row holding NaN means no pattern")
    al = a.tolist()
    dev: dict[str, torch.Tensor] = {}

    def prepare(device: torch.device, dtype: torch.dtype) -> None:
        dev["p"] = (patterns[tlist].double() * float(pattern_weight)).to(device, dtype)

    def make(x: torch.Tensor, j: int, level: int) -> torch.Tensor:
        return x * al[level] + dev["p"][j]

    hits, _, _, n = _run(model, images, labels, k, tlist, len(al), make, prepare, batch_size, norms=False)
    return BlendAttack(alphas=a, targets=torch.tensor(tlist, dtype=torch.int64), success=_share(hits, n),
                       n_images=n)


def perturbation_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor,
                        budgets: Sequence[float] | torch.Tensor, *, norm: str = "l2",
                        clip: tuple[float, float] | None = (0.0, 1.0),
                        targets: int | Sequence[int] | torch.Tensor | None = None,
                        batch_size: int = 1024, value_range: tuple[float, float] | None = IMAGE_RANGE
                        ) -> PerturbationAttack:
    """Targeted additive attack: share of ``clip(x + eps * d_t / ||d_t||_p)`` classified as t.

    For every target t and budget eps, the images whose label is not t get the direction of t,
    scaled to norm eps (``norm="l2"``: L2 over all pixels; ``"linf"``: ``max |d| = eps``), and are
    clipped to ``clip``. Clipping shrinks the perturbation, so the mean norms actually applied are
    recorded too. Compare a CI direction (:func:`ci_directions`) with the class-mean direction
    (:func:`mean_image_directions`), a random one of the same norm (:func:`random_directions`), the CI with its
    pixels shuffled (:func:`shuffled_directions`) and another class's CI (:func:`other_class_directions`), over the
    same ``targets``.

    Args:
        model: classifier returning ``(B, K)`` logits; left as found, as in :func:`blend_attack`.
        images: finite ``(N, *shape)`` images.
        labels: int ``(N,)`` true classes in ``[0, K)``.
        directions: ``(K, *shape)``, one per class of the model; a row that holds NaN or is all
            zero has no direction (skipped by default, an error when requested in ``targets``).
        budgets: perturbation norms eps, finite and >= 0 (0 measures the clean share).
        norm: ``"l2"`` or ``"linf"``; default ``"l2"``.
        clip: ``(low, high)`` range the stimuli are clamped to, or None for no clamping;
            default ``(0, 1)``. The images must lie in it.
        targets: target classes; default None (every class with a finite, nonzero direction).
        batch_size: images per forward pass; default 1,024 (does not change the result).
        value_range: the range the images must lie in when ``clip`` is None; default (0, 1); None skips
            that check (:func:`~wna_helpers.engine.checks.check_images`).

    Returns:
        :class:`PerturbationAttack` with ``budgets`` ``(E,)``, ``norm``, ``targets`` ``(T,)``,
        ``success``, ``actual_l2``, ``actual_linf`` (all ``(E, T)``), ``n_images`` ``(T,)`` and
        ``mean`` ``(E,)``.

    Raises:
        ValueError: bad images, labels, directions (shape, ±inf), budgets, norm, clip, targets (out
            of range, repeated, NaN or zero direction) or batch_size; logits without K columns.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.eye(4))
        >>> x = torch.rand(40, 1, 2, 2)
        >>> y = model(x).argmax(1)  # the clean decisions: eps = 0 sends none of them to another class
        >>> out = perturbation_attack(model, x, y, torch.eye(4).view(4, 1, 2, 2), [0.0, 2.0], clip=None)
        >>> out.mean.tolist()
        [0.0, 1.0]
    """
    if clip is not None:
        low, high = clip_range(clip)  # finite low < high, or ValueError
    check_images(images, value_range=(low, high) if clip is not None else value_range)
    _check_rows("directions", directions, images)
    k = len(directions)
    check_labels(labels, len(images), k)
    b = _as_levels("budgets", budgets)
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf'; got {norm!r}")
    check_batch_size(batch_size)
    flat = directions.reshape(k, -1).double().cpu()
    size = flat.norm(dim=1) if norm == "l2" else flat.abs().amax(1)
    usable = ~torch.isnan(flat).any(1) & (size > 0)
    tlist = _targets(targets, k, usable, "a direction holding NaN or all zero")
    unit = (flat[tlist] / size[tlist, None]).view(len(tlist), *directions.shape[1:])
    bl = b.tolist()
    dev: dict[str, torch.Tensor] = {}

    def prepare(device: torch.device, dtype: torch.dtype) -> None:
        dev["u"] = unit.to(device, dtype)

    def make(x: torch.Tensor, j: int, level: int) -> torch.Tensor:
        s = x + dev["u"][j] * bl[level]
        return s if clip is None else s.clamp(low, high)

    hits, l2, linf, n = _run(model, images, labels, k, tlist, len(bl), make, prepare, batch_size, norms=True)
    return PerturbationAttack(budgets=b, norm=norm, targets=torch.tensor(tlist, dtype=torch.int64),
                              success=_share(hits, n), actual_l2=_share(l2, n), actual_linf=_share(linf, n),
                              n_images=n)


# ---------------------------------------------------------------------------- directions


def random_directions(like: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """One standard-Gaussian direction per row of ``like``: the random control of an attack.

    :func:`perturbation_attack` normalises every direction: the control gets the CI's norm.

    Args:
        like: ``(K, *shape)`` tensor (only its shape is used), e.g. the CI directions.
        seed: seed of the explicit generator; default 0.

    Returns:
        float32 ``(K, *shape)`` on the CPU, the same for the same seed.

    Raises:
        ValueError: if ``like`` is not a tensor with at least 2 dimensions, or ``seed`` is not an int.

    Example:
        >>> import torch
        >>> random_directions(torch.zeros(3, 1, 4, 4), seed=1).shape
        torch.Size([3, 1, 4, 4])
    """
    if not isinstance(like, torch.Tensor) or like.dim() < 2:
        raise ValueError(f"like must be a tensor (K, *shape) with at least 2 dimensions; got "
                         f"{tuple(getattr(like, 'shape', ()))}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(tuple(like.shape), generator=gen, dtype=torch.float32)


def shuffled_directions(directions: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Each direction with its pixels in a random order (seeded, one permutation per row): the same values, hence
    the same norm in every norm, without their arrangement; the control of "is it the CI's pattern?".

    Args:
        directions: ``(K, *shape)``; NaN rows stay NaN.
        seed: seed of the explicit generator; default 0.

    Returns:
        float32 ``(K, *shape)``.

    Example:
        >>> d = torch.arange(8.0).view(2, 1, 2, 2)
        >>> s = shuffled_directions(d, seed=0)
        >>> bool((s.flatten(1).sort(1).values == d.flatten(1)).all())
        True
    """
    if not isinstance(directions, torch.Tensor) or directions.dim() < 2:
        raise ValueError(f"directions must be a tensor (K, *shape); got {tuple(getattr(directions, 'shape', ()))}")
    gen = torch.Generator().manual_seed(int(seed))
    flat = directions.reshape(len(directions), -1).float()
    order = torch.argsort(torch.rand(flat.shape, generator=gen), dim=1)
    return flat.gather(1, order).view(directions.shape)


def other_class_directions(directions: torch.Tensor) -> torch.Tensor:
    """For each target ``t``, the direction of the next class (cyclically) that has one: the control of "is it
    the target's pattern?" (NaN for a class without a direction, and for every class when only one has one).

    Example:
        >>> d = torch.tensor([[1.0], [float("nan")], [3.0]]).view(3, 1, 1, 1)
        >>> other_class_directions(d).flatten().tolist()[0::2]
        [3.0, 1.0]
    """
    k = len(directions)
    flat = directions.reshape(k, -1)
    have = [c for c in range(k) if not bool(torch.isnan(flat[c]).any()) and bool((flat[c] != 0).any())]
    out = torch.full_like(directions, float("nan"))
    for c in have:
        others = [h for h in have if h != c]
        if others:
            out[c] = directions[min(others, key=lambda h: (h - c) % k)]
    return out


def ci_directions(ci: ClassificationImages) -> torch.Tensor:
    """Attack directions from classification images: ``CI_c - mean of all stimuli``.

    Args:
        ci: a :class:`~wna_helpers.methods.ci.ClassificationImages` (from
            :func:`~wna_helpers.methods.ci.classification_images`).

    Returns:
        float32 ``(K, *input_shape)``; NaN rows for classes that received no sample.

    Raises:
        ValueError: if ``ci`` is not a :class:`~wna_helpers.methods.ci.ClassificationImages`.

    Example:
        >>> import wna_helpers as wna
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> ci = wna.classification_images(model, 2000, noise="uniform", input_shape=(1, 4, 4),
        ...                                null_permutations=0, progress=False)
        >>> ci_directions(ci).shape
        torch.Size([3, 1, 4, 4])
    """
    if not isinstance(ci, ClassificationImages):
        raise ValueError(f"ci must be a ClassificationImages result; got {type(ci).__name__}")
    return (ci.images - ci.mean_stimulus).float()


def mean_image_directions(images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10, *,
                          value_range: tuple[float, float] | None = IMAGE_RANGE) -> torch.Tensor:
    """Class-mean directions: mean image of class c minus the mean of all images.

    Args:
        images: finite ``(N, *shape)`` images.
        labels: int ``(N,)`` classes in ``[0, num_classes)``.
        num_classes: K; default 10.
        value_range: the range the pixels must lie in; default (0, 1); None skips that check.

    Returns:
        float32 ``(K, *shape)`` on the CPU; NaN rows for classes without images.

    Raises:
        ValueError: bad images, labels or num_classes.

    Example:
        >>> import torch
        >>> d = mean_image_directions(torch.eye(2).view(2, 1, 1, 2), torch.tensor([0, 1]), num_classes=2)
        >>> d.flatten().tolist()
        [0.5, -0.5, -0.5, 0.5]
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    check_images(images, value_range=value_range)
    check_labels(labels, len(images), int(num_classes))
    flat = images.reshape(len(images), -1).double().cpu()
    lab = labels.cpu().long()
    sums = torch.zeros(int(num_classes), flat.shape[1], dtype=torch.float64).index_add_(0, lab, flat)
    counts = torch.bincount(lab, minlength=int(num_classes)).double()
    means = sums / counts[:, None]  # 0 / 0 = NaN for a class without images
    return (means - flat.mean(0)).float().view(int(num_classes), *images.shape[1:])
