"""How a white-noise run is executed, passed the same way to every method.

Each method (:func:`~wna_helpers.methods.ci.classification_images`,
:func:`~wna_helpers.methods.sta.spike_triggered_average`, ...) takes its own arguments plus the
run options below, either as keywords (``batch_size=512, seed=1, progress=False``) or
bundled once as ``run=RunOptions(...)`` (keywords win). None of them changes what is
measured except ``seed`` and ``chunk_size``, which choose the noise samples.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass

import torch

from .checks import check_positive_int

__all__ = ["RunOptions", "DEFAULT_CHUNK", "resolve_options"]

#: Samples per chunk: the unit of seeding and of work split between processes.
DEFAULT_CHUNK = 4096


@dataclass(frozen=True)
class RunOptions:
    """Run options of every white-noise method.

    Args:
        batch_size: samples per forward pass; default None (32,768 on CUDA; on a CPU 1,024, halved while the
            model's widest layer output would make a batch's buffer wider than 48 MiB or all its layers' outputs
            would add up to more than 192 MiB: ``lenet`` 512, ``net3`` and ``alexnet_small`` 256;
            :func:`~wna_helpers.engine.allocator.heap_batch_size`; at most 128 for STAs: ``cpu_batch_cap`` of
            :class:`~wna_helpers.engine.accumulator.Accumulator`).
            Does not change the result.
        seed: seed of the noise (an int); default 0. With ``chunk_size``, the stimulus and
            ``n_samples`` it fixes the result.
        device: must be the model's device if given; default None (the model's device).
        autocast: ``torch.bfloat16`` or ``torch.float16`` for the forward pass (CUDA);
            default None (float32).
        checkpoint: file to save the running sums to every ``checkpoint_every`` batches; a run
            given the checkpoint of the same job resumes from it; with several processes each
            rank uses ``<checkpoint>.rank<r>``; default None.
        checkpoint_every: batches between checkpoints; default 50.
        progress: show a ``tqdm`` progress bar; default True.
        chunk_size: samples per seeded chunk (part of the seed); default 4,096.
        channels_last: run the model with channels-last tensors: None (default) on a CPU when that
            works for the model (it has a 2-d convolution and gives the same logits both ways; about 2x
            faster on CPUs), never on a GPU (slower there with cuDNN), True to insist (``ValueError`` if it
            cannot), False never.
            See :mod:`wna_helpers.engine.speed`.
        compile: run the forward pass through ``torch.compile``: None (default) on the CPU for runs of a
            convolutional model that tap no layer (classification images, not STAs) where it pays: dense and
            recurrent models ran no faster compiled; at least 5 x 10^5 samples in this
            process, or 2 x 10^4 when this process has compiled the same forward pass before (for a network of
            the same class and shapes too), or when the samples streamed eagerly through it in this process
            reach 5 x 10^5 (:func:`~wna_helpers.engine.speed.should_compile`); True always (``ValueError``
            with tapped layers), False never. The first warm-up takes seconds to a minute; if compiling fails
            the run goes on eagerly with a warning, and None does not try that forward pass again.

    Only ``seed`` and ``chunk_size`` choose the samples. ``channels_last``, ``compile``,
    ``autocast`` and (through the blocking of matrix products) ``batch_size`` change float32
    rounding in the forward pass, which can move a noise sample lying on a decision boundary
    to the neighbouring class; checkpoints may be resumed with other values of them.

    Raises:
        ValueError: a value out of range (the message says what is allowed).
    """

    batch_size: int | None = None
    seed: int = 0
    device: torch.device | str | None = None
    autocast: torch.dtype | None = None
    checkpoint: str | os.PathLike | None = None
    checkpoint_every: int = 50
    progress: bool = True
    chunk_size: int = DEFAULT_CHUNK
    channels_last: bool | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", check_positive_int("batch_size", self.batch_size))
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "checkpoint_every", check_positive_int("checkpoint_every", self.checkpoint_every))
        object.__setattr__(self, "chunk_size", check_positive_int("chunk_size", self.chunk_size))
        if not (self.channels_last is None or isinstance(self.channels_last, bool)):
            raise ValueError(f"channels_last must be None, True or False, got {self.channels_last!r}")
        if not (self.compile is None or isinstance(self.compile, bool)):
            raise ValueError(f"compile must be None, True or False, got {self.compile!r}")
        if self.autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16, got {self.autocast!r}")


_FIELDS = tuple(f.name for f in dataclasses.fields(RunOptions))


def resolve_options(run: RunOptions | None, options: dict[str, object]) -> RunOptions:
    """``run`` (default :class:`RunOptions`) with the keyword ``options`` applied on top.

    Raises:
        TypeError: an option that is not a field of :class:`RunOptions` (the message lists them).
    """
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise TypeError(f"unknown run option(s) {unknown}; the run options are {list(_FIELDS)}")
    if run is not None and not isinstance(run, RunOptions):
        raise TypeError(f"run must be a RunOptions, got {type(run).__name__}")
    base = run or RunOptions()
    return dataclasses.replace(base, **options) if options else base  # type: ignore[arg-type]
