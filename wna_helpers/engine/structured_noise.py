"""Structured noise kinds: the paper's Gabor noise and psychophysics-style sinusoid noise.

White noise is flat in space and frequency; these kinds put the energy where images have it.

* :class:`GaborNoise` is the noise behind the paper's template accuracies (PAPER.md, "Gabor
  noise"): every training image is regressed (ridge, alpha 0.1) onto a dictionary of 960 Gabor
  atoms tiled over the image (:func:`gabor_dictionary`), the weights are reduced by PCA (250
  components), and a noise image draws each component's score uniformly between that
  component's smallest and largest score over the training set, maps it back to an image and
  min-max scales it to [0, 1]. :meth:`GaborNoise.fit` does the fit in closed form (seconds for
  60,000 images on a CPU) and caches it on disk; sampling is one matrix product per chunk.
* :class:`Sinusoid` is the sinusoid noise of reverse-correlation toolboxes (rcicr): a sum of
  sinusoid patches at several scales, orientations and phases, each with a random contrast in
  [-1, 1], min-max scaled to ``[low, high]``.

Both are :class:`~wna_helpers.engine.stimuli.Noise` kinds: they draw only from the generator they are
given, so a run is the same whatever its batch size.

Example:
    >>> import torch, wna_helpers as wna
    >>> x, _ = wna.Sinusoid().chunk(0, seed=0, chunk_size=4, input_shape=(1, 28, 28), device=torch.device("cpu"))
    >>> x.shape, float(x.amin()), float(x.amax())
    (torch.Size([4, 1, 28, 28]), 0.0, 1.0)
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from .atomic import atomic_torch_save
from .places import cache_root
from .fingerprint import tensor_digest
from .checks import check_number
from .stimuli import Noise

__all__ = ["gabor_dictionary", "GaborNoise", "Sinusoid"]

#: Version of the fitted-noise file format and recipe; part of every cache key.
_FORMAT = 1
#: Fitted Gabor noises of this process, by cache key.
_MEMO: dict[str, "GaborNoise"] = {}
#: Images per block in the fit's passes over the data.
_BLOCK = 8192
#: The paper's dictionary: kernel sizes, orientations, phases.
_KERNELS, _ORIENTATIONS, _PHASES = (3, 7, 15), 4, 2


def _int_at_least(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _int_tuple(name: str, values: object, minimum: int) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a non-empty sequence of integers >= {minimum}, got {values!r}")
    out = tuple(_int_at_least(f"each of {name}", v, minimum) for v in values)  # type: ignore[union-attr]
    if not out:
        raise ValueError(f"{name} must be a non-empty sequence of integers >= {minimum}, got {values!r}")
    return out


def _minmax_rows(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Each row of ``x`` (n, D) scaled in place so that its minimum is ``low`` and its maximum
    ``high``; a constant row becomes ``low``."""
    lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)  # (aminmax over a dim is slow on CPUs)
    x.sub_(lo).div_((hi - lo).clamp_min_(torch.finfo(x.dtype).tiny))
    if (low, high) != (0.0, 1.0):
        x.mul_(high - low).add_(low)
    return x


def _gabor_kernel(k: int, theta: float, psi: float) -> torch.Tensor:
    """OpenCV's ``getGaborKernel((k, k), k/7, theta, k/2, 0.5, psi)`` in float64, min-max scaled to [0, 1].

    OpenCV stores the value at ``(x, y)`` in row ``k//2 - y``, column ``k//2 - x``; the same here.
    """
    half = k // 2
    r = torch.arange(half, -half - 1, -1, dtype=torch.float64)  # coordinate of row / column i
    y, x = r.view(-1, 1), r.view(1, -1)
    c, s = math.cos(theta), math.sin(theta)
    xr, yr = x * c + y * s, -x * s + y * c
    sigma_x, sigma_y, wavelength = k / 7.0, k / 7.0 / 0.5, k / 2.0
    envelope = torch.exp(-0.5 * (xr / sigma_x) ** 2 - 0.5 * (yr / sigma_y) ** 2)
    g = envelope * torch.cos(2 * math.pi / wavelength * xr + psi)
    return (g - g.min()) / (g.max() - g.min()).clamp_min(1e-300)


def gabor_dictionary(size: int = 28, kernel_sizes: tuple[int, ...] = _KERNELS, tiles: tuple[int, ...] = (10, 4, 2),
                     orientations: int = _ORIENTATIONS, phases: int = _PHASES, *,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The paper's dictionary of Gabor atoms tiled over a ``size`` x ``size`` image.

    For every kernel size ``k`` (with its tile count ``t``), orientation ``theta = i·180°/orientations``
    and phase ``psi = j·180°/phases``: the OpenCV Gabor kernel with ``sigma = k/7``, wavelength
    ``k/2`` and aspect ratio 0.5, min-max scaled to [0, 1], is placed on a ``t`` x ``t`` grid of
    non-overlapping ``k`` x ``k`` tiles starting at the top-left corner, one atom per tile, zero
    elsewhere. A tile that runs over the image's edge keeps the kernel's top-left part (as the
    paper's code does), so such an atom's maximum may be below 1. Atoms are ordered by kernel size,
    orientation, phase, tile row, tile column.

    Args:
        size: image side in pixels; default 28.
        kernel_sizes: odd kernel sizes >= 3; default ``(3, 7, 15)``.
        tiles: tiles per side for each kernel size, each with ``k·(t - 1) < size``; default
            ``(10, 4, 2)`` (``ceil(28 / k)``, the paper's).
        orientations: number of orientations; default 4 (0°, 45°, 90°, 135°).
        phases: number of phases; default 2 (0°, 90°).
        dtype: floating dtype of the result; default float32 (computed in float64).

    Returns:
        ``(orientations · phases · Σ t², size²)`` atoms, one flattened image per row: ``(960, 784)``
        with the defaults, values in [0, 1].

    Raises:
        ValueError: a bad size, kernel size, tile count (the message says what is allowed).

    Example:
        >>> import wna_helpers as wna
        >>> d = wna.gabor_dictionary()
        >>> d.shape, float(d.min()), float(d.max())
        (torch.Size([960, 784]), 0.0, 1.0)
    """
    size = _int_at_least("size", size, 1)
    kernel_sizes = _int_tuple("kernel_sizes", kernel_sizes, 3)
    tiles = _int_tuple("tiles", tiles, 1)
    orientations = _int_at_least("orientations", orientations, 1)
    phases = _int_at_least("phases", phases, 1)
    if any(k % 2 == 0 for k in kernel_sizes):
        raise ValueError(f"kernel_sizes must be odd (OpenCV's kernels have odd sizes), got {kernel_sizes}")
    if len(tiles) != len(kernel_sizes):
        raise ValueError(f"tiles needs one count per kernel size: {len(kernel_sizes)} kernel sizes, "
                         f"{len(tiles)} tile counts")
    for k, t in zip(kernel_sizes, tiles):
        if k * (t - 1) >= size:
            raise ValueError(f"{t} tiles of size {k} do not fit a {size}-pixel image: the last tile would be "
                             f"empty; at most {math.ceil(size / k)} tiles for size {k}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    pix = torch.arange(size)
    parts = []
    for k, t in zip(kernel_sizes, tiles):
        kernels = torch.stack([_gabor_kernel(k, i * math.pi / orientations, j * math.pi / phases)
                               for i in range(orientations) for j in range(phases)])  # (O·P, k, k)
        tiled = kernels[:, pix % k][:, :, pix % k]  # (O·P, size, size): kernel repeated from the top-left
        onehot = (pix // k == torch.arange(t).view(-1, 1)).to(torch.float64)  # (t, size): pixel in tile i
        atoms = torch.einsum("nyx,iy,jx->nijyx", tiled, onehot, onehot)
        parts.append(atoms.reshape(-1, size * size))
    return torch.cat(parts).to(dtype)


def _check_images(images: object, who: str) -> tuple[int, tuple[int, ...]]:
    """Validate single-channel square images; return (side, image_shape)."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() not in (3, 4):
        raise ValueError(f"{who} needs `images`: a floating-point tensor (N, 1, H, W) or (N, H, W)")
    shape = tuple(images.shape[1:])
    if images.dim() == 4 and shape[0] != 1:
        raise ValueError(f"{who} needs single-channel images (N, 1, H, W), got {shape[0]} channels")
    if shape[-1] != shape[-2]:
        raise ValueError(f"{who} needs square images (the Gabor dictionary is square), got {shape[-2]}x{shape[-1]}")
    if len(images) < 2:
        raise ValueError(f"{who} needs at least 2 images, got {len(images)}")
    return shape[-1], shape


@dataclass(frozen=True, eq=False)
class GaborNoise(Noise):
    """The paper's Gabor noise: uniform scores on the principal components of Gabor-dictionary weights.

    A sample draws ``w = low + (high - low)·U(0, 1)`` (``k`` scores), forms ``w @ basis + offset``
    and min-max scales it to [0, 1]. Build it with :meth:`fit`; the fields are its full description.

    Args:
        basis: float32 ``(k, D)``: the principal components (rows, orthonormal in weight space)
            mapped to image space through the dictionary.
        offset: float32 ``(D,)``: an image added before scaling (zero for the paper's recipe;
            the mean weight vector mapped to image space with ``fit(add_mean=True)``).
        low: float32 ``(k,)``: each component's smallest score over the training images.
        high: float32 ``(k,)``: each component's largest score (``>= low``).
        image_shape: shape of one image, e.g. ``(1, 28, 28)``; its size must be ``D``.

    :attr:`explained_variance` and :attr:`components` come from :meth:`fit` (None when built by
    hand) and are not part of :meth:`describe`.

    Example:
        >>> import torch, wna_helpers as wna
        >>> g = wna.GaborNoise(torch.eye(2, 4), torch.zeros(4), -torch.ones(2), torch.ones(2), (1, 2, 2))
        >>> x = g.sample(torch.Generator().manual_seed(0), (3, 1, 2, 2), torch.device("cpu"), torch.float32)
        >>> x.shape, float(x.amin()), float(x.amax())
        (torch.Size([3, 1, 2, 2]), 0.0, 1.0)
    """

    basis: torch.Tensor
    offset: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    image_shape: tuple[int, ...]
    _explained_variance: float | None = field(default=None, repr=False, compare=False)
    _components: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _on_device: dict = field(default_factory=dict, repr=False, compare=False)
    kind: ClassVar[str] = "gabor"

    def __post_init__(self) -> None:
        shape = _int_tuple("image_shape", self.image_shape, 1)
        object.__setattr__(self, "image_shape", shape)
        d = math.prod(shape)
        for name in ("basis", "offset", "low", "high"):
            v = getattr(self, name)
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                raise ValueError(f"GaborNoise {name} must be a floating-point tensor, got {type(v).__name__}")
            if not bool(torch.isfinite(v).all()):
                raise ValueError(f"GaborNoise {name} contains NaN or infinite values")
            object.__setattr__(self, name, v.detach().to("cpu", torch.float32).contiguous())
        if self.basis.dim() != 2 or len(self.basis) == 0 or self.basis.shape[1] != d:
            raise ValueError(f"GaborNoise basis must be (k, {d}) with k >= 1 for image_shape {shape}, "
                             f"got {tuple(self.basis.shape)}")
        if tuple(self.offset.shape) != (d,):
            raise ValueError(f"GaborNoise offset must be ({d},), got {tuple(self.offset.shape)}")
        k = len(self.basis)
        for name in ("low", "high"):
            if tuple(getattr(self, name).shape) != (k,):
                raise ValueError(f"GaborNoise {name} must be ({k},), one value per component, got "
                                 f"{tuple(getattr(self, name).shape)}")
        if bool((self.high < self.low).any()):
            raise ValueError("GaborNoise needs low <= high for every component")

    @property
    def explained_variance(self) -> float | None:
        """Share of the dictionary weights' variance kept by the components (None if unknown)."""
        return self._explained_variance

    @property
    def components(self) -> torch.Tensor | None:
        """float64 ``(k, n_atoms)``: the principal components in weight space (None if unknown)."""
        return self._components

    def label(self) -> str:  # noqa: D102
        return f"Gabor noise ({len(self.basis)} PCA components)"

    def check_shape(self, input_shape):  # noqa: D102
        if tuple(input_shape) != self.image_shape:
            raise ValueError(f"GaborNoise was fitted to images of shape {self.image_shape}, the input shape is "
                             f"{tuple(input_shape)}")

    def sample(self, gen, shape, device, dtype):  # noqa: D102
        self.check_shape(tuple(shape[1:]))
        t = self._on_device.get((device, dtype))
        if t is None:  # moved to the device once, not once per chunk
            t = self._on_device[device, dtype] = tuple(v.to(device=device, dtype=dtype) for v in (
                self.basis, self.offset, self.low, self.high - self.low))
        basis, offset, low, span = t
        w = torch.rand((shape[0], len(basis)), generator=gen, device=device, dtype=dtype).mul_(span).add_(low)
        return _minmax_rows((w @ basis).add_(offset)).view(shape)  # (addmm is slower on CPUs)

    @classmethod
    def fit(cls, images: torch.Tensor, *, n_components: int = 250, alpha: float = 0.1, add_mean: bool = False,
            cache: bool = True, cache_dir: str | Path | None = None, progress: bool = False) -> "GaborNoise":
        """Fit the paper's Gabor noise to ``images`` (e.g. a training set).

        1. Ridge regression with intercept (scikit-learn's ``Ridge(alpha)``, as the paper) of every
           image onto :func:`gabor_dictionary` (``ceil(H / k)`` tiles per kernel size), in closed
           form for all images at once, float64: ``w = (D̃ D̃ᵀ + αI)⁻¹ D̃ y`` with ``D̃`` the atoms
           centred over pixels.
        2. PCA of the weights (float64 eigendecomposition of their covariance), ``n_components`` kept.
        3. Each component's smallest and largest score over ``images``.

        The result is cached in ``cache_dir`` under a digest of the images' bytes, every setting
        and the format version (written atomically), and memoised in this process.

        Args:
            images: float ``(N, 1, H, W)`` or ``(N, H, W)``, square, N >= 2, finite; their scale does
                not matter (ridge is linear in the images and samples are min-max scaled).
            n_components: principal components kept, 1 to ``min(N, n_atoms)``; default 250.
            alpha: ridge penalty, > 0; default 0.1.
            add_mean: add the mean weight vector (mapped to an image) to every sample before scaling;
                default False: the paper's code maps the scores back without the PCA mean.
            cache: read and write the disk cache (and the in-process memo); default True.
            cache_dir: cache folder; default None (``cache_root() / "noise"``).
            progress: show a progress bar over the passes through the images; default False.

        Returns:
            :class:`GaborNoise` with ``explained_variance`` and ``components`` set.

        Raises:
            ValueError: bad images or settings, before any heavy work.

        Example:
            >>> import wna_helpers as wna
            >>> train = wna.load_dataset("mnist", "train").images  # doctest: +SKIP
            >>> g = wna.GaborNoise.fit(train)  # doctest: +SKIP
            >>> round(g.explained_variance, 2)  # doctest: +SKIP
            0.96
        """
        size, shape = _check_images(images, "GaborNoise.fit")
        tiles = tuple(math.ceil(size / k) for k in _KERNELS)
        n_atoms = _ORIENTATIONS * _PHASES * sum(t * t for t in tiles)
        n_components = _int_at_least("n_components", n_components, 1)
        if n_components > min(len(images), n_atoms):
            raise ValueError(f"n_components must be at most min(number of images, atoms) = "
                             f"{min(len(images), n_atoms)}, got {n_components}")
        alpha = check_number("alpha", alpha)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha:g}")
        if not bool(torch.isfinite(images).all()):
            raise ValueError("GaborNoise.fit: `images` contain NaN or infinite values")
        if float(images.amax()) == float(images.amin()):
            raise ValueError(f"GaborNoise.fit: every pixel of every image is {float(images.amin()):g}: constant images "
                             f"have no structure to fit Gabor weights to (give the training images)")
        settings = {"format": _FORMAT, "images": tensor_digest(images), "n_components": n_components,
                    "alpha": alpha, "add_mean": bool(add_mean), "size": size, "kernel_sizes": list(_KERNELS),
                    "tiles": list(tiles), "orientations": _ORIENTATIONS, "phases": _PHASES}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
        path = Path(cache_dir if cache_dir is not None else cache_root() / "noise") / f"gabor-{key}.pt"
        if cache and key in _MEMO:
            return _MEMO[key]
        state = None
        if cache and path.exists():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                if state.get("key") != key:
                    state = None
            except Exception:  # unreadable file: fit again and overwrite it
                state = None
        if state is None:
            state = _fit(images.detach().cpu(), gabor_dictionary(size, _KERNELS, tiles, dtype=torch.float64),
                         n_components, alpha, bool(add_mean), progress)
            state.update(key=key, settings=settings)
            if cache:
                atomic_torch_save(state, path)
        noise = cls(state["basis"], state["offset"], state["low"], state["high"], shape,
                    _explained_variance=float(state["explained_variance"]), _components=state["components"])
        if cache:
            _MEMO[key] = noise
        return noise


def _fit(images: torch.Tensor, atoms: torch.Tensor, k: int, alpha: float, add_mean: bool,
         progress: bool) -> dict[str, object]:
    """The Gabor-noise fit in float64; returns the tensors of a :class:`GaborNoise` and its statistics."""
    n = len(images)
    y = images.reshape(n, -1)
    centred = atoms - atoms.mean(1, keepdim=True)  # the intercept: atoms centred over pixels
    gram = centred @ centred.T
    gram.diagonal().add_(alpha)
    ridge = torch.linalg.solve(gram, centred)  # (A, D): weights of image y are ridge @ y
    blocks = range(0, n, _BLOCK)
    bar = tqdm(total=2 * len(blocks), disable=not progress, desc="Gabor noise fit", unit="block")
    mean = y.sum(0, dtype=torch.float64) / n
    cov = torch.zeros(y.shape[1], y.shape[1], dtype=torch.float64)
    for s in blocks:  # pixel covariance of the images, in blocks (float64)
        b = y[s:s + _BLOCK].double() - mean
        cov.addmm_(b.T, b)
        bar.update()
    cov /= n - 1
    wcov = ridge @ cov @ ridge.T  # covariance of the weights (A, A)
    evals, evecs = torch.linalg.eigh((wcov + wcov.T) / 2)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    components = evecs[:, :k].T.clone()  # (k, A), rows orthonormal; a copy, not a view of all A x A
    project = components @ ridge  # (k, D): score of image y is project @ (y - mean)
    low = torch.full((k,), math.inf, dtype=torch.float64)
    high = torch.full((k,), -math.inf, dtype=torch.float64)
    for s in blocks:
        scores = (y[s:s + _BLOCK].double() - mean) @ project.T
        low, high = torch.minimum(low, scores.amin(0)), torch.maximum(high, scores.amax(0))
        bar.update()
    bar.close()
    offset = (ridge @ mean) @ atoms if add_mean else torch.zeros(atoms.shape[1], dtype=torch.float64)
    return {"basis": (components @ atoms).float(), "offset": offset.float(), "low": low.float(),
            "high": high.float(), "components": components,
            "explained_variance": float(evals[:k].sum() / evals.sum().clamp_min(1e-300))}


@dataclass(frozen=True)
class Sinusoid(Noise):
    """Sinusoid noise as reverse-correlation toolboxes build it (rcicr): a sum of sinusoid patches.

    At each scale ``s`` the image is cut into ``s`` x ``s`` equal patches; every patch carries, for
    every orientation and phase, a sinusoid of ``cycles`` cycles across the patch
    (``sin(2π·(x·cos θ + y·sin θ) + φ)`` with ``x``, ``y`` running from 0 to ``cycles`` over the
    patch). A sample weights each of these patterns by its own contrast drawn uniformly from
    [-1, 1], sums them (one matrix product per chunk) and min-max scales the sum to
    ``[low, high]``: every sample spans the whole range, like the paper's Gabor noise. All channels
    get the same pattern.

    Args:
        image_shape: ``(C, H, W)`` (or ``(H, W)``); default ``(1, 28, 28)``.
        scales: patches per side, each dividing ``H`` and ``W`` with patches of at least 2 pixels;
            default ``(1, 2, 4)`` (rcicr's ``(1, 2, 4, 8, 16)`` needs sides divisible by 16; 28 allows 3 scales).
        orientations: angles in degrees; default ``(0, 30, 60, 90, 120, 150)``.
        phases: phases in radians; default ``(0, π/2)``.
        cycles: cycles per patch, > 0; default 2.
        low: default 0.
        high: default 1; must exceed ``low``.

    Example:
        >>> import wna_helpers as wna
        >>> wna.Sinusoid().label()
        'sinusoid noise (252 patterns, 3 scales) on [0, 1]'
    """

    image_shape: tuple[int, ...] = (1, 28, 28)
    scales: tuple[int, ...] = (1, 2, 4)
    orientations: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0)
    phases: tuple[float, ...] = (0.0, math.pi / 2)
    cycles: float = 2.0
    low: float = 0.0
    high: float = 1.0
    _on_device: dict = field(default_factory=dict, repr=False, compare=False)
    kind: ClassVar[str] = "sinusoid"

    def __post_init__(self) -> None:
        shape = _int_tuple("image_shape", self.image_shape, 1)
        if len(shape) < 2:
            raise ValueError(f"image_shape must be (C, H, W) or (H, W), got {shape}")
        h, w = shape[-2:]
        scales = _int_tuple("scales", self.scales, 1)
        for s in scales:
            if h % s or w % s or min(h, w) // s < 2:
                ok = [d for d in range(1, min(h, w) // 2 + 1) if h % d == 0 and w % d == 0]
                raise ValueError(f"scale {s} does not cut a {h}x{w} image into equal patches of at least "
                                 f"2 pixels; allowed scales: {ok}")
        for name in ("orientations", "phases"):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__") or len(tuple(v)) == 0:
                raise ValueError(f"{name} must be a non-empty sequence of numbers, got {v!r}")
            object.__setattr__(self, name, tuple(check_number(f"each of {name}", x) for x in v))
        cycles = check_number("cycles", self.cycles)
        if cycles <= 0:
            raise ValueError(f"cycles must be > 0, got {cycles:g}")
        low, high = check_number("sinusoid low", self.low), check_number("sinusoid high", self.high)
        if not low < high:
            raise ValueError(f"sinusoid noise needs low < high, got [{low:g}, {high:g}]")
        for name, v in (("image_shape", shape), ("scales", scales), ("cycles", cycles), ("low", low),
                        ("high", high)):
            object.__setattr__(self, name, v)

    @property
    def n_patterns(self) -> int:
        """Number of patterns (each with its own random contrast): orientations · phases · Σ s²."""
        return len(self.orientations) * len(self.phases) * sum(s * s for s in self.scales)

    def patterns(self) -> torch.Tensor:
        """float64 ``(n_patterns, H·W)``: every patch pattern, ordered by scale, orientation, phase,
        patch row, patch column; zero outside its patch."""
        h, w = self.image_shape[-2:]
        theta = torch.tensor(self.orientations, dtype=torch.float64).deg2rad().view(-1, 1, 1, 1)
        phi = torch.tensor(self.phases, dtype=torch.float64).view(1, -1, 1, 1)
        rows, cols = torch.arange(h), torch.arange(w)
        parts = []
        for s in self.scales:
            ph, pw = h // s, w // s
            y = torch.linspace(0, self.cycles, ph, dtype=torch.float64)[rows % ph].view(-1, 1)  # within-patch
            x = torch.linspace(0, self.cycles, pw, dtype=torch.float64)[cols % pw].view(1, -1)
            waves = torch.sin(2 * math.pi * (x * theta.cos() + y * theta.sin()) + phi)  # (O, P, H, W)
            in_row = (rows // ph == torch.arange(s).view(-1, 1)).double()  # (s, H)
            in_col = (cols // pw == torch.arange(s).view(-1, 1)).double()  # (s, W)
            parts.append(torch.einsum("opyx,iy,jx->opijyx", waves, in_row, in_col).reshape(-1, h * w))
        return torch.cat(parts)

    def label(self) -> str:  # noqa: D102
        return (f"sinusoid noise ({self.n_patterns} patterns, {len(self.scales)} scales) "
                f"on [{self.low:g}, {self.high:g}]")

    def check_shape(self, input_shape):  # noqa: D102
        if tuple(input_shape) != self.image_shape:
            raise ValueError(f"Sinusoid noise has image_shape {self.image_shape}, the input shape is "
                             f"{tuple(input_shape)}; pass Sinusoid(image_shape={tuple(input_shape)})")

    def sample(self, gen, shape, device, dtype):  # noqa: D102
        self.check_shape(tuple(shape[1:]))
        base = self._on_device.get((device, dtype))
        if base is None:  # built and moved to the device once
            base = self._on_device[device, dtype] = self.patterns().to(device=device, dtype=dtype)
        contrast = torch.rand((shape[0], len(base)), generator=gen, device=device, dtype=dtype).mul_(2).sub_(1)
        x = _minmax_rows(contrast @ base, self.low, self.high)
        channels = math.prod(self.image_shape[:-2])
        return x.view(shape[0], 1, -1).expand(shape[0], channels, x.shape[1]).reshape(shape)
