"""Uniform noise on the CPU from every core: PCG64 streams filled in parallel.

``torch.rand`` on the CPU draws from one Mersenne Twister in sequence (one core), about 3.4 µs for a 28x28
sample on a 2-core AMD EPYC: 14 % of the STA's time and 6 % of the CI engine's. :func:`uniform_` draws one
seed from the caller's ``torch.Generator`` (so it consumes that generator's state, as ``torch.rand`` would),
splits the tensor into blocks of :data:`BLOCK_ELEMENTS` values and fills block ``j`` from numpy's PCG64
seeded by child ``j`` of that seed (``numpy.random.SeedSequence.spawn``), the blocks spread over
``torch.get_num_threads()`` threads (numpy releases the GIL while it fills). Each value depends only on the
generator's state and its position in the tensor, never on the number of threads: the same seed gives the
same noise on one core or many. With two threads, 1.0-1.1 µs a sample into a buffer made beforehand, 1.4-2.0 µs
as ``noise_alone`` in ``benchmarks/speed_benchmark.py`` times a chunk with its buffer (AMD EPYC, 2026-12-06).

Import rule: ``engine`` modules only (with torch and numpy).
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["BLOCK_ELEMENTS", "uniform_", "host_uniform_applies"]

#: Values filled from one PCG64 stream (1 MiB of float32): large enough that a stream's set-up (about 7 µs, and
#: 9 µs a stream for ``SeedSequence.spawn``) is under 3 % of its fill (about 600 µs), small enough that a
#: 4,096-sample chunk of 28x28 images (13 blocks) splits over the cores evenly.
BLOCK_ELEMENTS = 1 << 18
#: Below this many values the fill stays in the calling thread (the same values either way).
THREADED_MIN = 1 << 17

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def host_uniform_applies(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether :func:`uniform_` draws this noise: float32 on the CPU (float64 is no faster in numpy, and a GPU has
    its own parallel generator)."""
    return device.type == "cpu" and dtype == torch.float32


def _pool(threads: int) -> ThreadPoolExecutor:
    key = (os.getpid(), threads)       # a forked worker must not use its parent's (dead) threads
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="wna-noise")
    return pool


def uniform_(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Fill ``out`` with independent U[0, 1) values (float32 with 24 random bits, as ``torch.rand``), in place.

    Args:
        out: a contiguous float32 CPU tensor, any shape.
        gen: a CPU ``torch.Generator``; one seed in [0, 2^62) is drawn from it.

    Returns:
        ``out``.

    Example:
        >>> import torch
        >>> a = uniform_(torch.empty(3, 4), torch.Generator().manual_seed(0))
        >>> b = uniform_(torch.empty(3, 4), torch.Generator().manual_seed(0))
        >>> bool(torch.equal(a, b)), bool(((a >= 0) & (a < 1)).all())
        (True, True)
    """
    if out.device.type != "cpu" or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"uniform_ fills a contiguous float32 CPU tensor, got {out.dtype} on {out.device} "
                         f"(contiguous: {out.is_contiguous()})")
    seed = int(torch.randint(0, 2**62, (), generator=gen))
    flat = out.detach().numpy().reshape(-1)
    blocks = max(1, math.ceil(flat.size / BLOCK_ELEMENTS))
    streams = np.random.SeedSequence(seed).spawn(blocks)

    def fill(j: int) -> None:
        np.random.Generator(np.random.PCG64(streams[j])).random(
            dtype=np.float32, out=flat[j * BLOCK_ELEMENTS:(j + 1) * BLOCK_ELEMENTS])

    threads = min(torch.get_num_threads(), blocks)
    if threads <= 1 or flat.size < THREADED_MIN:
        for j in range(blocks):
            fill(j)
    else:
        for _ in _pool(threads).map(fill, range(blocks)):
            pass
    return out
