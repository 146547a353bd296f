"""What the engine streams into: the :class:`Accumulator` interface, the whole :class:`Chunk` an accumulator
may ask for, and the :class:`StopRule` that lets a run end itself."""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Accumulator", "Chunk", "StopRule"]


@dataclass(frozen=True)
class Chunk:
    """One whole seeded chunk, handed to :meth:`Accumulator.end_chunk` once all its samples ran.

    Attributes:
        index: the chunk's number ``c`` (samples ``c * chunk_size`` on).
        seed: the run's seed (derive per-chunk randomness from ``(seed, index)``).
        x: the chunk's stimuli ``(n, *input_shape)`` (do not modify).
        logits: float32 ``(n, K)``, or None when no accumulator of the run needs logits.
        labels: the stimuli's labels ``(n,)`` or None.
    """

    index: int
    seed: int
    x: torch.Tensor
    logits: torch.Tensor | None
    labels: torch.Tensor | None


class StopRule:
    """Lets a run stop itself before ``n_samples``: ``criterion()`` is asked at fixed milestones.

    The milestones are every ``every_chunks`` chunks of the whole run (not of one process), so
    where a run stops does not depend on the batch size, the number of processes or where it
    was resumed. At a milestone the accumulators hold the totals of every chunk before it (all
    processes' totals, all-reduced, while ``criterion`` runs); ``criterion`` reads them and
    returns True to stop. With a stop rule, checkpoints are written at milestones only.

    After the run, ``n_samples`` is the number of samples used and ``stopped`` says whether the
    criterion ended it.
    """

    def __init__(self, criterion: Callable[[], bool], every_chunks: int = 4) -> None:
        if isinstance(every_chunks, bool) or not isinstance(every_chunks, numbers.Integral) or every_chunks <= 0:
            raise ValueError(f"every_chunks must be a positive integer, got {every_chunks!r}")
        self.criterion, self.every_chunks = criterion, int(every_chunks)
        self.n_samples: int | None = None
        self.stopped = False


class Accumulator:
    """Base class of the statistics the engine folds batches into.

    Subclasses fill ``self.acc`` (name -> float64 or int64 tensor on the model's
    device) in ``setup`` and add to it in ``update``; the engine checkpoints and
    all-reduces exactly those tensors. ``update`` gets the samples of one seeded chunk at
    a time (a batch that spans two chunks is handed over in two pieces), so sums it forms
    in float32 before adding them to the float64 totals never span more than one chunk.
    """

    taps: tuple[str, ...] = ()
    #: False when ``update`` ignores ``logits``: if no accumulator of a run needs them, the
    #: engine stops each forward pass right after the last tapped layer (it gets ``logits=None``).
    needs_logits: bool = True
    #: True when ``update`` reads every tap only through its ReLU: the engine then hands over ``ReLU(tap)``
    #: (computed once per batch for all such accumulators, inside the convolution where it can).
    relu_taps: bool = False
    #: The most samples per batch this accumulator streams best at on a CPU (None: no cap); a run on a CPU with
    #: the default ``batch_size`` takes the smallest cap of its accumulators (the STA's: 128).
    cpu_batch_cap: int | None = None
    #: Set by the engine before a run: True when no other accumulator of the run reads this one's taps, so
    #: ``update`` may write into the tap tensors it is handed (nothing reads them after it).
    owns_taps: bool = False

    def __init__(self) -> None:
        self.acc: dict[str, torch.Tensor] = {}

    def setup(self, num_classes: int, input_shape: tuple[int, ...], device: torch.device,
              tap_shapes: dict[str, tuple[int, ...]]) -> None:
        raise NotImplementedError

    def update(self, x: torch.Tensor, logits: torch.Tensor | None, taps: dict[str, torch.Tensor],
               labels: torch.Tensor | None) -> None:
        raise NotImplementedError

    def end_chunk(self, chunk: Chunk) -> None:
        """Called once per whole chunk, after ``update`` saw all of its samples: for statistics
        that need a chunk at once (permutations within a chunk, even/odd chunks). Default: nothing."""

    @property
    def wants_chunks(self) -> bool:
        """Whether this accumulator overrides :meth:`end_chunk` (the engine then keeps each chunk's logits)."""
        return type(self).end_chunk is not Accumulator.end_chunk

    def describe(self) -> dict[str, object]:
        return {"type": type(self).__name__, "taps": list(self.taps)}
