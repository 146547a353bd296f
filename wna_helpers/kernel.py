"""The white-noise engine: stream stimuli through a model and accumulate statistics.

Nothing here stores the stimuli: each batch is generated on the model's device,
pushed through the model, folded into float64 accumulators and dropped, so memory
is O(batch size) whatever ``n_samples`` is. Work is split into fixed-size seeded
chunks (:mod:`wna_helpers.stimuli`), which makes a result independent of the batch
size, of the number of processes (``torch.distributed``: ranks take every
``world``-th chunk and the accumulators are all-reduced) and of where a resumed
run restarted, up to float32 rounding (an accumulator may sum in float32 within one
chunk piece). How the model itself is run fast is :mod:`wna_helpers.speed`.
"""
from __future__ import annotations

import itertools
import json
import math
import numbers
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ._io import atomic_torch_save
from .fingerprint import state_digest
from .options import RunOptions, resolve_options
from .speed import choose_channels_last, compile_forward, memory_layout, should_compile, tune_allocator
from .stimuli import Stimulus, as_stimulus

__all__ = ["Accumulator", "Chunk", "StopRule", "run_engine", "check_n_samples", "model_device", "default_batch_size",
           "describe_run", "resolve_n_samples"]


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


def check_n_samples(n_samples: object) -> int:
    """``n_samples`` as an int, or ``ValueError`` unless it is a positive integer."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return int(n_samples)


def resolve_n_samples(stimulus: Stimulus, n_samples: int | None) -> int:
    """``n_samples`` checked; for real images (:class:`~wna_helpers.stimuli.Images`) None means all of them."""
    if n_samples is None:
        available = stimulus.available()
        if available is None:
            raise ValueError("n_samples must be a positive integer when the stimulus is noise")
        return int(available)
    return check_n_samples(n_samples)


def model_device(model: nn.Module, device: torch.device | str | None = None) -> torch.device:
    """The device of ``model``'s parameters; ``device``, if given, must agree with it."""
    param = next(iter(model.parameters()), None)
    found = param.device if param is not None else torch.device("cpu")
    if device is not None and torch.device(device) != found:
        if not (torch.device(device).type == found.type and torch.device(device).index is None):
            raise ValueError(f"device={device!r} but the model's parameters are on {found}; "
                             f"move the model (model.to(device)) or leave device=None")
    return found


def default_batch_size(device: torch.device) -> int:
    """1,024 on CPU, 32,768 on CUDA."""
    return 32_768 if device.type == "cuda" else 1024


def _probe(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
           taps: Sequence[str]) -> tuple[int, dict[str, tuple[int, ...]], list[str]]:
    """Run two zero inputs through ``model``: the number of classes, the tapped layers' output
    shapes, and the order in which the tapped layers ran (one entry per call).

    Raises:
        ValueError: if a tap is not a submodule (the message lists the layers), or the
            model cannot take ``input_shape``, or does not return ``(N, classes)`` logits.
    """
    names = dict(model.named_modules())
    for t in taps:
        if t not in names or t == "":
            layers = [n for n in names if n]
            raise ValueError(f"the model has no layer {t!r}; available layers: {layers}")
    shapes: dict[str, tuple[int, ...]] = {}
    calls: list[str] = []

    def record(t: str, o: torch.Tensor) -> None:
        shapes[t] = tuple(o.shape[1:])
        calls.append(t)
    hooks = [names[t].register_forward_hook(lambda m, i, o, t=t: record(t, o)) for t in taps]
    try:
        with torch.inference_mode():
            out = model(torch.zeros(2, *input_shape, device=device))
    except Exception as exc:
        raise ValueError(f"the model cannot take inputs of shape (N, {', '.join(map(str, input_shape))}) "
                         f"({type(exc).__name__}: {exc}); pass the input_shape it expects") from exc
    finally:
        for h in hooks:
            h.remove()
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == 2):
        raise ValueError("the model must return logits of shape (N, num_classes), got "
                         f"{getattr(out, 'shape', type(out))}")
    return int(out.shape[1]), shapes, calls


class _StopForward(Exception):
    """Raised by the last tap's hook to skip the rest of a forward pass nobody needs."""


def describe_run(stimulus: Stimulus, opts: RunOptions) -> dict[str, object]:
    """The description of a run's stimuli that results carry: the stimulus, and the seed and
    chunk size when it is seeded noise."""
    d = stimulus.describe()
    if stimulus.seeded:
        d.update(seed=opts.seed, chunk_size=opts.chunk_size)
    return d


def _segments(chunks: Sequence[int], chunk_size: int, n_samples: int, start: int,
              batch_size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Batches of ``(chunk, lo, hi)`` slices over this rank's chunks, from sample ``start``."""
    batch: list[tuple[int, int, int]] = []
    room = batch_size
    skip = start
    for c in chunks:
        size = min(chunk_size, n_samples - c * chunk_size)
        lo = 0
        if skip >= size:
            skip -= size
            continue
        lo, skip = skip, 0
        while lo < size:
            hi = min(size, lo + room)
            batch.append((c, lo, hi))
            room -= hi - lo
            lo = hi
            if room == 0:
                yield batch
                batch, room = [], batch_size
    if batch:
        yield batch


def run_engine(model: nn.Module, stimulus: Stimulus | str, n_samples: int, accumulators: Sequence[Accumulator],
               *, input_shape: tuple[int, ...], run: RunOptions | None = None, desc: str = "white noise",
               stop: StopRule | None = None, **options: object) -> int:
    """Stream ``n_samples`` stimuli through ``model`` into ``accumulators``.

    Args:
        model: any classifier returning ``(N, classes)`` logits; left as found
            (training flag, grads, device).
        stimulus: a :class:`~wna_helpers.stimuli.Stimulus` (noise kind, mixture or real images)
            or a shorthand (``"gaussian"``, ``"uniform"``).
        n_samples: positive integer.
        accumulators: what to compute; their ``taps`` name the layers to hook.
        input_shape: ``(C, H, W)`` of one stimulus.
        run: the :class:`~wna_helpers.options.RunOptions`; default ``RunOptions()``.
        desc: label of the progress bar.
        stop: a :class:`StopRule` that may end the run early (at a milestone); default None.
        **options: fields of :class:`~wna_helpers.options.RunOptions` (``batch_size``, ``seed``,
            ``device``, ``autocast``, ``checkpoint``, ``checkpoint_every``, ``progress``,
            ``chunk_size``), applied on top of ``run``.

    The run is as fast as the model allows (:mod:`wna_helpers.speed`): glibc's allocator is
    tuned once per process (``WNA_MALLOPT=0`` turns that off), convolutional models run
    channels-last when they give the same logits that way (``channels_last``), and long
    CPU runs that tap no layer are compiled (``compile``).

    When no accumulator needs the logits (``needs_logits = False``, as for STAs) and each
    tapped layer runs once per pass, every forward pass stops right after the last tapped
    layer: the layers behind it are never computed.

    Accumulators that override :meth:`Accumulator.end_chunk` get each whole chunk once all of
    its samples ran. Checkpoints are written at chunk ends (the first after every
    ``checkpoint_every`` batches), so a resumed run never starts inside a chunk.

    Returns:
        The number of processes that shared the work (1 without ``torch.distributed``).
        The accumulators hold the totals over all processes.
    """
    opts = resolve_options(run, options)
    stimulus = as_stimulus(stimulus)
    n_samples = check_n_samples(n_samples)
    device = model_device(model, opts.device)
    input_shape = tuple(int(s) for s in input_shape)
    batch_size = opts.batch_size or default_batch_size(device)
    stimulus.check_shape(input_shape)
    available = stimulus.available()
    if available is not None and n_samples > available:
        raise ValueError(f"n_samples={n_samples} but only {available} images were given")
    taps = sorted({t for a in accumulators for t in a.taps})
    tune_allocator()
    was_training = model.training
    model.eval()
    hooks = []
    stack = ExitStack()
    try:
        num_classes, tap_shapes, calls = _probe(model, input_shape, device, taps)
        # no logits needed and every tap runs once per pass: stop after the last one
        stop_at = calls[-1] if calls and not any(a.needs_logits for a in accumulators) \
            and len(calls) == len(set(calls)) else None
        for a in accumulators:
            a.setup(num_classes, input_shape, device, tap_shapes)
        world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() \
            else (1, 0)
        chunk = opts.chunk_size
        chunks = list(range(rank, math.ceil(n_samples / chunk), world))
        mine = sum(min(chunk, n_samples - c * chunk) for c in chunks)
        n_chunks = math.ceil(n_samples / chunk)
        key = json.dumps({"n_samples": n_samples, "stimulus": stimulus.describe(), "seed": opts.seed,
                          "chunk_size": chunk, "world": world, "rank": rank, "input_shape": input_shape,
                          "model": state_digest(model), "accumulators": [a.describe() for a in accumulators],
                          "stop_every": None if stop is None else stop.every_chunks}, sort_keys=True, default=str)
        ckpt = None if opts.checkpoint is None else Path(f"{opts.checkpoint}.rank{rank}" if world > 1
                                                         else opts.checkpoint)
        done = 0
        next_check = None if stop is None else stop.every_chunks   # the next milestone, in chunks of the run
        if ckpt is not None and ckpt.exists():
            state = torch.load(ckpt, map_location=device, weights_only=True)
            if state.get("key") != key:
                raise ValueError(f"checkpoint {ckpt} belongs to another job (other model, noise, "
                                 f"n_samples or statistics); delete it or choose another path")
            done = int(state["done"])
            if stop is not None:
                next_check = int(state["next_check"])
            for a, saved in zip(accumulators, state["acc"]):
                for k in a.acc:
                    a.acc[k].copy_(saved[k])
            ends = set(itertools.accumulate(min(chunk, n_samples - c * chunk) for c in chunks))
            if done and done not in ends:
                raise ValueError(f"checkpoint {ckpt} stops inside a chunk (written by an older version); "
                                 f"delete it")

        def save() -> None:
            if ckpt is not None:
                atomic_torch_save({"key": key, "done": done, "next_check": next_check,
                                    "acc": [{k: v.cpu() for k, v in a.acc.items()} for a in accumulators]}, ckpt)

        def criterion() -> bool:
            """The stop rule's verdict on the totals of all processes."""
            assert stop is not None
            if world == 1:
                return bool(stop.criterion())
            mine_acc = [a.acc for a in accumulators]
            try:
                for a in accumulators:
                    a.acc = {k: v.clone() for k, v in a.acc.items()}
                    for v in a.acc.values():
                        dist.all_reduce(v, op=dist.ReduceOp.SUM)
                return bool(stop.criterion())
            finally:
                for a, own in zip(accumulators, mine_acc):
                    a.acc = own

        # the fastest forward this model allows (wna_helpers.speed): weights channels-last while
        # the run lasts; compiled for one batch shape (short batches padded) when should_compile says so
        channels_last = choose_channels_last(model, input_shape, device, opts.channels_last)
        stack.enter_context(memory_layout(model, channels_last))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        forward: Callable[[torch.Tensor], object] = model
        fixed = min(batch_size, mine - done)
        if should_compile(opts.compile, mine - done, device, bool(taps)) and fixed > 0:
            forward = compile_forward(model, torch.zeros(fixed, *input_shape, device=device).to(memory_format=layout))
        padded = forward is not model

        captured: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        def capture(t: str, o: torch.Tensor) -> None:
            captured[t] = o
            if t == stop_at:
                raise _StopForward
        for t in taps:
            hooks.append(modules[t].register_forward_hook(lambda m, i, o, t=t: capture(t, o)))
        amp = (lambda: torch.autocast(device.type, dtype=opts.autocast)) if opts.autocast is not None \
            else nullcontext
        bar = tqdm(total=mine, initial=done, disable=not opts.progress or rank != 0, desc=desc,
                   unit="sample", unit_scale=True, smoothing=0.1)
        wanting = [a for a in accumulators if a.wants_chunks]
        chunk_logits: list[torch.Tensor] = []
        cache: tuple[int, torch.Tensor, torch.Tensor | None] | None = None
        pending = False        # a checkpoint is due at the next chunk end (or milestone)
        stopped_at = None      # the milestone the stop rule ended the run at
        with torch.inference_mode():
            for i, segs in enumerate(_segments(chunks, chunk, n_samples, done, batch_size), start=1):
                xs, ys, whole = [], [], []
                for c, lo, hi in segs:
                    if cache is None or cache[0] != c:
                        cache = (c, *stimulus.chunk(c, seed=opts.seed, chunk_size=chunk,
                                                    input_shape=input_shape, device=device))
                    xs.append(cache[1][lo:hi])
                    ys.append(cache[2][lo:hi] if cache[2] is not None else None)
                    whole.append(cache)
                x = xs[0] if len(xs) == 1 else torch.cat(xs)
                y = None if ys[0] is None else (ys[0] if len(ys) == 1 else torch.cat(ys))
                xin = x.to(memory_format=layout)
                if padded and len(x) < fixed:
                    xin = torch.cat([xin, xin.new_zeros(fixed - len(x), *input_shape).to(memory_format=layout)])
                logits = None
                try:
                    with amp():
                        logits = forward(xin).float()[:len(x)]
                except _StopForward:
                    pass
                # one update per chunk piece: float32 partial sums never span two chunks
                start = 0
                for (c, lo, hi), (_, cx, cy) in zip(segs, whole):
                    if stop is not None and lo == 0:
                        while c >= next_check:          # every chunk before the milestone is done
                            if criterion():
                                stopped_at = next_check
                                break
                            next_check += stop.every_chunks
                            if pending:
                                save()
                                pending = False
                        if stopped_at is not None:
                            break
                    sl = slice(start, start + hi - lo)
                    start = sl.stop
                    piece_logits = None if logits is None else logits[sl]
                    for a in accumulators:
                        a.update(x[sl], piece_logits, {t: captured[t][sl].float() for t in a.taps},
                                 None if y is None else y[sl])
                    done += hi - lo
                    bar.update(hi - lo)
                    if wanting and piece_logits is not None:
                        chunk_logits.append(piece_logits)
                    if hi == (size := min(chunk, n_samples - c * chunk)):     # the chunk is complete
                        if wanting:
                            whole_logits = None if not chunk_logits else (
                                chunk_logits[0] if len(chunk_logits) == 1 else torch.cat(chunk_logits))
                            for a in wanting:
                                a.end_chunk(Chunk(c, opts.seed, cx[:size], whole_logits,
                                                  None if cy is None else cy[:size]))
                            chunk_logits.clear()
                        if pending and stop is None:
                            save()
                            pending = False
                captured.clear()
                if stopped_at is not None:
                    break
                if i % opts.checkpoint_every == 0:
                    pending = True
            # a process whose chunks ran out still takes part in the milestones the others reach
            while stop is not None and stopped_at is None and world > 1 and next_check < n_chunks:
                if criterion():
                    stopped_at = next_check
                else:
                    next_check += stop.every_chunks
        bar.close()
        save()
        if stop is not None:
            stop.stopped = stopped_at is not None
            stop.n_samples = n_samples if stopped_at is None else min(n_samples, stopped_at * chunk)
        if world > 1:
            for a in accumulators:
                for v in a.acc.values():
                    dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return world
    finally:
        for h in hooks:
            h.remove()
        stack.close()
        model.train(was_training)
