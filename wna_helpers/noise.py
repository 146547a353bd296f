"""Stimulus sources for the white-noise engine.

A source yields the stimuli of a run in fixed-size *chunks*. Chunk ``c`` of a
noise source is drawn from its own generator seeded by ``(seed, c)``
(counter-based seeding), so sample ``i`` of a run is the same whatever the
batch size, the number of processes or where a resumed run restarted.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

__all__ = ["NOISE_KINDS", "NoiseSource", "ImageSource", "DEFAULT_CHUNK"]

NOISE_KINDS = ("gaussian", "uniform")
#: Samples per chunk: the unit of seeding and of work split between processes.
DEFAULT_CHUNK = 4096


def _chunk_seed(seed: int, chunk: int) -> int:
    digest = hashlib.blake2b(f"wna:{seed}:{chunk}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class NoiseSource:
    """White noise, optionally mixed with signal: ``x = (1 - gamma) * noise + gamma * image``.

    Args:
        kind: ``"gaussian"`` (``mean``, ``std``) or ``"uniform"`` (on [0, 1]).
        mean: Gaussian mean; default 0.
        std: Gaussian standard deviation, finite and >= 0; default 1.
        gamma: signal weight in [0, 1]; default 0 (pure noise).
        signal: images ``(M, *input_shape)`` to mix in (one drawn at random per sample);
            required when ``gamma > 0``.
        clip: ``(low, high)`` to clamp the stimuli to, or None; default None.
        seed: default 0.
        chunk_size: samples per seeded chunk; default :data:`DEFAULT_CHUNK`.
    """

    kind: str = "gaussian"
    mean: float = 0.0
    std: float = 1.0
    gamma: float = 0.0
    signal: torch.Tensor | None = None
    clip: tuple[float, float] | None = None
    seed: int = 0
    chunk_size: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r}; allowed: {list(NOISE_KINDS)}")
        if not (isinstance(self.std, (int, float)) and math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"noise std must be a finite number >= 0, got {self.std!r}")
        if not (isinstance(self.mean, (int, float)) and math.isfinite(self.mean)):
            raise ValueError(f"noise mean must be a finite number, got {self.mean!r}")
        if not (isinstance(self.gamma, (int, float)) and 0.0 <= self.gamma <= 1.0):
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        if self.gamma > 0 and (self.signal is None or len(self.signal) == 0):
            raise ValueError("gamma > 0 needs `signal`: a non-empty tensor of images to mix in")
        if self.clip is not None and not (len(self.clip) == 2 and self.clip[0] < self.clip[1]):
            raise ValueError(f"clip must be (low, high) with low < high, got {self.clip!r}")
        if not (isinstance(self.chunk_size, int) and self.chunk_size > 0):
            raise ValueError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")
        self._gens: dict[torch.device, torch.Generator] = {}
        self._signals: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def describe(self) -> dict[str, object]:
        """The parameters that determine the stimuli (for checkpoints and titles)."""
        d: dict[str, object] = {"kind": self.kind, "seed": self.seed, "chunk_size": self.chunk_size}
        if self.kind == "gaussian":
            d.update(mean=float(self.mean), std=float(self.std))
        if self.gamma > 0:
            assert self.signal is not None
            d.update(gamma=float(self.gamma), signal_shape=tuple(self.signal.shape),
                     signal_sum=float(self.signal.double().sum()))
        if self.clip is not None:
            d["clip"] = tuple(float(c) for c in self.clip)
        return d

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        if self.signal is not None and self.gamma > 0 and tuple(self.signal.shape[1:]) != tuple(input_shape):
            raise ValueError(f"signal images have shape {tuple(self.signal.shape[1:])}, "
                             f"the input shape is {tuple(input_shape)}")

    def chunk(self, c: int, input_shape: tuple[int, ...], device: torch.device,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, None]:
        """The ``chunk_size`` stimuli of chunk ``c``, generated on ``device``."""
        gen = self._gens.get(device)
        if gen is None:
            gen = self._gens[device] = torch.Generator(device=device)
        gen.manual_seed(_chunk_seed(self.seed, c))
        shape = (self.chunk_size, *input_shape)
        if self.kind == "gaussian":
            x = torch.randn(shape, generator=gen, device=device, dtype=dtype)
            if self.std != 1.0:
                x.mul_(self.std)
            if self.mean != 0.0:
                x.add_(self.mean)
        else:
            x = torch.rand(shape, generator=gen, device=device, dtype=dtype)
        if self.gamma > 0:
            sig = self._signals.get((device, dtype))
            if sig is None:  # moved to the device once, not once per chunk
                sig = self._signals[device, dtype] = self.signal.to(device=device, dtype=dtype)  # type: ignore[union-attr]
            pick = torch.randint(len(sig), (self.chunk_size,), generator=gen, device=device)
            x.mul_(1.0 - self.gamma).add_(sig[pick], alpha=self.gamma)
        if self.clip is not None:
            x.clamp_(*self.clip)
        return x, None


@dataclass
class ImageSource:
    """Real images (and optional labels) streamed in order, for real-data statistics.

    Args:
        images: ``(N, *input_shape)``.
        labels: int64 ``(N,)`` or None.
        chunk_size: default :data:`DEFAULT_CHUNK`.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    chunk_size: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def describe(self) -> dict[str, object]:
        return {"kind": "images", "shape": tuple(self.images.shape),
                "sum": float(self.images.double().sum()), "chunk_size": self.chunk_size}

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        if tuple(self.images.shape[1:]) != tuple(input_shape):
            raise ValueError(f"images have shape {tuple(self.images.shape[1:])}, the input shape "
                             f"is {tuple(input_shape)}")

    def chunk(self, c: int, input_shape: tuple[int, ...], device: torch.device,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor | None]:
        sl = slice(c * self.chunk_size, (c + 1) * self.chunk_size)
        x = self.images[sl].to(device=device, dtype=dtype, non_blocking=True)
        y = self.labels[sl].to(device, non_blocking=True) if self.labels is not None else None
        return x, y
