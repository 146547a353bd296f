"""Stimuli for the white-noise engine: noise kinds, noise mixed with images, real images.

Every method of the package takes one as ``noise=``: ``Uniform()``,
``Gaussian(mean=0, std=1)``, ``Mixture(Uniform(), images, gamma=0.3, clip=(0, 1))``;
the strings ``"gaussian"`` and ``"uniform"`` are shorthands for ``Gaussian()`` and
``Uniform()``. A run is cut into fixed-size *chunks*; chunk ``c`` of a seeded stimulus
is drawn from its own generator seeded by ``(seed, c)`` (counter-based seeding), so
sample ``i`` of a run is the same whatever the batch size, the number of processes or
where a resumed run restarted.

A new noise kind is one small class: a frozen dataclass deriving from :class:`Noise`
whose :meth:`Noise.sample` draws ``shape`` samples from a generator. Its fields are its
complete description (:meth:`Stimulus.describe`), which cache keys and checkpoints use.

Example:
    >>> import torch, wna_helpers as wna
    >>> x, _ = wna.Uniform().chunk(0, seed=0, chunk_size=4, input_shape=(1, 2, 2), device=torch.device("cpu"))
    >>> x.shape, bool((x >= 0).all() and (x <= 1).all())
    (torch.Size([4, 1, 2, 2]), True)
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from .checks import IMAGE_RANGE, check_images, check_number, check_value_range, clip_range
from .fingerprint import tensor_digest
from .host_noise import host_uniform_applies, uniform_

__all__ = ["Stimulus", "Noise", "Gaussian", "Uniform", "Mixture", "Images", "as_stimulus", "NOISE_SHORTHANDS",
           "chunk_seed"]


def chunk_seed(seed: int, chunk: int) -> int:
    """The generator seed of chunk ``chunk`` of a run seeded with ``seed`` (a 63-bit hash)."""
    digest = hashlib.blake2b(f"wna:{seed}:{chunk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class Stimulus:
    """Base class of everything the engine can stream through a model.

    Subclasses define :meth:`chunk`; ``seeded`` says whether the stimuli depend on the
    run's seed (noise) or not (real images in order).
    """

    seeded: ClassVar[bool] = True
    #: Short name used in :meth:`describe` and in titles.
    kind: ClassVar[str] = "stimulus"

    def describe(self) -> dict[str, object]:
        """Everything the stimuli depend on (tensors by the digest of their bytes), for cache keys,
        checkpoints and titles. Two stimuli with equal descriptions produce equal chunks."""
        out: dict[str, object] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name.startswith("_"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                out[f.name] = {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": tensor_digest(v)}
            elif isinstance(v, Stimulus):
                out[f.name] = v.describe()
            elif isinstance(v, tuple):
                out[f.name] = [float(x) for x in v]
            elif v is not None:
                out[f.name] = v
        return out

    def label(self) -> str:
        """A short name for titles and tables, e.g. ``"uniform noise U[0, 1]"``."""
        return self.kind

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """Raise ``ValueError`` if the stimuli cannot have ``input_shape``."""

    def available(self) -> int | None:
        """How many stimuli exist (``None``: unlimited)."""
        return None

    def chunk(self, c: int, *, seed: int, chunk_size: int, input_shape: tuple[int, ...], device: torch.device,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stimuli ``c * chunk_size`` to ``(c + 1) * chunk_size - 1`` on ``device``, and their labels (or None)."""
        raise NotImplementedError


class Noise(Stimulus):
    """A seeded noise kind: subclasses implement :meth:`sample`."""

    def sample(self, gen: torch.Generator, shape: tuple[int, ...], device: torch.device,
               dtype: torch.dtype) -> torch.Tensor:
        """``shape`` samples drawn from ``gen`` on ``device``."""
        raise NotImplementedError

    def chunk(self, c, *, seed, chunk_size, input_shape, device, dtype=torch.float32):  # noqa: D102
        gen = _generator(device)
        gen.manual_seed(chunk_seed(seed, c))
        return self.sample(gen, (chunk_size, *input_shape), device, dtype), None


_GENERATORS: dict[torch.device, torch.Generator] = {}


def _generator(device: torch.device) -> torch.Generator:
    gen = _GENERATORS.get(device)
    if gen is None:
        gen = _GENERATORS[device] = torch.Generator(device=device)
    return gen


@dataclass(frozen=True)
class Gaussian(Noise):
    """Independent Gaussian pixels N(mean, std²), optionally clamped to a range.

    Args:
        mean: default 0.
        std: finite, > 0; default 1.
        clip: ``(low, high)`` with ``low < high`` to clamp every sample to, or None (no clamping);
            default None.

    Example:
        >>> import wna_helpers as wna
        >>> wna.Gaussian(0.13, 0.31, clip=(0, 1)).label()
        'Gaussian noise N(0.13, 0.31²) clipped to [0, 1]'
    """

    mean: float = 0.0
    std: float = 1.0
    clip: tuple[float, float] | None = None
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", check_number("noise mean", self.mean))
        object.__setattr__(self, "std", check_number("noise std", self.std, 0.0))
        if self.std == 0.0:
            raise ValueError("noise std must be > 0: Gaussian noise of zero spread is one constant image, "
                             "which no classification image or STA can be measured from")
        if self.clip is not None:
            object.__setattr__(self, "clip", clip_range(self.clip))

    @classmethod
    def matched(cls, images: torch.Tensor, clip: bool = True) -> "Gaussian":
        """The Gaussian with the mean and standard deviation of all pixels of ``images``.

        Noise that lives where the model's inputs live (METHOD.md): the moments are computed in
        float64 over every pixel of every image (population standard deviation).

        Args:
            images: a non-empty floating tensor ``(N, *input_shape)`` of finite values.
            clip: also clamp the samples to the images' ``[min, max]`` range; default True.

        Returns:
            :class:`Gaussian` with ``mean``, ``std`` (and ``clip``) taken from ``images``.

        Raises:
            ValueError: ``images`` is not a non-empty floating tensor of finite values, or ``clip``
                is asked of constant images (an empty range).

        Example:
            >>> import torch, wna_helpers as wna
            >>> g = wna.Gaussian.matched(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
            >>> g.mean, g.std, g.clip
            (0.5, 0.5, (0.0, 1.0))
        """
        if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.numel() == 0:
            raise ValueError("Gaussian.matched needs `images`: a non-empty floating-point tensor (N, *input_shape)")
        x = images.detach().reshape(-1).double()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("Gaussian.matched: `images` contain NaN or infinite values")
        std, mean = torch.std_mean(x, correction=0)
        rng = None
        if clip:
            low, high = float(x.min()), float(x.max())
            if not low < high:
                raise ValueError(f"Gaussian.matched: the images are constant ({low:g}), there is no range to "
                                 "clip to; pass clip=False")
            rng = (low, high)
        return cls(mean=float(mean), std=float(std), clip=rng)

    def label(self) -> str:  # noqa: D102
        name = f"Gaussian noise N({self.mean:g}, {self.std:g}²)" if self.std != 1.0 else \
            f"Gaussian noise N({self.mean:g}, 1)"
        return name if self.clip is None else f"{name} clipped to [{self.clip[0]:g}, {self.clip[1]:g}]"

    def sample(self, gen, shape, device, dtype):  # noqa: D102
        x = torch.randn(shape, generator=gen, device=device, dtype=dtype)
        if self.std != 1.0:
            x.mul_(self.std)
        if self.mean != 0.0:
            x.add_(self.mean)
        if self.clip is not None:
            x.clamp_(*self.clip)
        return x


@dataclass(frozen=True)
class Uniform(Noise):
    """Independent uniform pixels on [low, high] (the paper's noise is the default [0, 1]).

    float32 noise on the CPU comes from numpy's PCG64 streams filled on every core
    (:func:`~wna_helpers.engine.host_noise.uniform_`, 0.4-0.6 of ``torch.rand``'s time in ``noise_alone``);
    other dtypes and devices from ``torch.rand``.

    Args:
        low: default 0.
        high: default 1; must exceed ``low``.
    """

    low: float = 0.0
    high: float = 1.0
    kind: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        low, high = check_number("uniform low", self.low), check_number("uniform high", self.high)
        if not low < high:
            raise ValueError(f"uniform noise needs low < high, got [{low:g}, {high:g}]")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def label(self) -> str:  # noqa: D102
        return f"uniform noise U[{self.low:g}, {self.high:g}]"

    def sample(self, gen, shape, device, dtype):  # noqa: D102
        if host_uniform_applies(device, dtype):   # float32 on the CPU: PCG64 streams on every core
            x = uniform_(torch.empty(shape, dtype=dtype), gen)
        else:
            x = torch.rand(shape, generator=gen, device=device, dtype=dtype)
        if (self.low, self.high) != (0.0, 1.0):
            x.mul_(self.high - self.low).add_(self.low)
        return x


@dataclass(frozen=True, eq=False)
class Mixture(Noise):
    """Noise mixed with signal: ``x = (1 - gamma) * noise + gamma * image``, optionally clipped.

    One image is drawn (seeded, with replacement) from ``images`` per sample.

    Args:
        noise: a :class:`Noise` or a shorthand string.
        images: ``(M, *input_shape)`` images to mix in (at least one).
        gamma: signal weight in [0, 1].
        clip: ``(low, high)`` to clamp the stimuli to, or None; default None.
        value_range: the range the images' pixels must lie in (the model's input range); default (0, 1);
            None skips the check (:func:`~wna_helpers.engine.checks.check_images`).
    """

    noise: Noise | str
    images: torch.Tensor
    gamma: float
    clip: tuple[float, float] | None = None
    value_range: tuple[float, float] | None = IMAGE_RANGE
    kind: ClassVar[str] = "mixture"
    _on_device: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise", as_stimulus(self.noise))
        if not isinstance(self.noise, Noise):
            raise ValueError(f"Mixture needs a noise kind to mix images into, got {self.noise!r}")
        object.__setattr__(self, "value_range", check_value_range(self.value_range))
        check_images(self.images, name="Mixture images", value_range=self.value_range)
        gamma = check_number("gamma", self.gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        object.__setattr__(self, "gamma", gamma)
        if self.clip is not None:
            if not (len(self.clip) == 2 and float(self.clip[0]) < float(self.clip[1])):
                raise ValueError(f"clip must be (low, high) with low < high, got {self.clip!r}")
            object.__setattr__(self, "clip", (float(self.clip[0]), float(self.clip[1])))

    def label(self) -> str:  # noqa: D102
        return f"(1 − {self.gamma:g})·{self.noise.label()} + {self.gamma:g}·image"  # type: ignore[union-attr]

    def check_shape(self, input_shape):  # noqa: D102
        if tuple(self.images.shape[1:]) != tuple(input_shape):
            raise ValueError(f"Mixture images have shape {tuple(self.images.shape[1:])}, "
                             f"the input shape is {tuple(input_shape)}")

    def sample(self, gen, shape, device, dtype):  # noqa: D102
        x = self.noise.sample(gen, shape, device, dtype)  # type: ignore[union-attr]
        if self.gamma > 0:
            sig = self._on_device.get((device, dtype))
            if sig is None:  # moved to the device once, not once per chunk
                sig = self._on_device[device, dtype] = self.images.to(device=device, dtype=dtype)
            pick = torch.randint(len(sig), (shape[0],), generator=gen, device=device)
            x.mul_(1.0 - self.gamma).add_(sig[pick], alpha=self.gamma)
        if self.clip is not None:
            x.clamp_(*self.clip)
        return x


@dataclass(frozen=True, eq=False)
class Images(Stimulus):
    """Real images (and optional labels) streamed in order, for real-data statistics (not seeded).

    Args:
        images: ``(N, *input_shape)`` floating, finite.
        labels: integer ``(N,)``, each >= 0, or None; default None.
        value_range: the range the pixels must lie in (the model's input range); default (0, 1); None skips
            the check (:func:`~wna_helpers.engine.checks.check_images`).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    value_range: tuple[float, float] | None = IMAGE_RANGE
    seeded: ClassVar[bool] = False
    kind: ClassVar[str] = "images"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_range", check_value_range(self.value_range))
        check_images(self.images, value_range=self.value_range)
        y = self.labels
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool \
                    or y.shape != (len(self.images),):
                raise ValueError(f"labels must be an integer tensor of shape ({len(self.images)},), one per image; "
                                 f"got {getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
            if int(y.min()) < 0:
                raise ValueError(f"labels must be class indices >= 0; got {int(y.min())}")

    def check_shape(self, input_shape):  # noqa: D102
        if tuple(self.images.shape[1:]) != tuple(input_shape):
            raise ValueError(f"images have shape {tuple(self.images.shape[1:])}, the input shape "
                             f"is {tuple(input_shape)}")

    def label(self) -> str:  # noqa: D102
        return f"{len(self.images):,} real images"

    def available(self) -> int:  # noqa: D102
        return len(self.images)

    def chunk(self, c, *, seed, chunk_size, input_shape, device, dtype=torch.float32):  # noqa: D102
        sl = slice(c * chunk_size, (c + 1) * chunk_size)
        x = self.images[sl].to(device=device, dtype=dtype, non_blocking=True)
        y = self.labels[sl].to(device, non_blocking=True) if self.labels is not None else None
        return x, y


#: The string shorthands every ``noise=`` argument accepts.
NOISE_SHORTHANDS: dict[str, type[Noise]] = {"gaussian": Gaussian, "uniform": Uniform}


def as_stimulus(noise: Stimulus | str) -> Stimulus:
    """``noise`` itself, or the default instance of a shorthand (``"gaussian"``, ``"uniform"``).

    Raises:
        ValueError: an unknown shorthand or something that is not a stimulus (the message lists both).
    """
    if isinstance(noise, Stimulus):
        return noise
    if isinstance(noise, str) and noise in NOISE_SHORTHANDS:
        return NOISE_SHORTHANDS[noise]()
    raise ValueError(f"unknown noise {noise!r}; pass a stimulus object (Gaussian, Uniform, GaborNoise, Sinusoid, "
                     f"Mixture, Images) "
                     f"or one of the shorthands {list(NOISE_SHORTHANDS)}")
