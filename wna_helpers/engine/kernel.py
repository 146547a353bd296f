"""The white-noise engine: stream stimuli through a model and accumulate statistics.

Nothing here stores the stimuli: each batch is generated on the model's device,
pushed through the model, folded into float64 accumulators and dropped, so memory
is O(batch size) whatever ``n_samples`` is. Work is split into fixed-size seeded
chunks (:mod:`wna_helpers.engine.stimuli`), which makes a result independent of the batch
size, of the number of processes (``torch.distributed``: ranks take every
``world``-th chunk and the accumulators are all-reduced) and of where a resumed
run restarted, up to float32 rounding (an accumulator may sum in float32 within one
chunk piece). How the model itself is run fast is :mod:`wna_helpers.engine.speed`; what the
engine streams into is :mod:`wna_helpers.engine.accumulator`.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .accumulator import Accumulator, Chunk, StopRule
from .atomic import atomic_torch_save, remove_orphans
from .checks import check_input_shape, check_n_samples
from .fingerprint import state_digest
from .layers import WidestOutput
from .options import RunOptions, resolve_options
from .allocator import HeapWatch, heap_batch_size, heap_only, tune_allocator
from .speed import (choose_channels_last, compile_forward, forward_signature, fused_conv_relu, memory_layout,
                    note_eager_run, should_compile)
from .stimuli import Stimulus, as_stimulus

__all__ = ["Accumulator", "Chunk", "StopRule", "run_engine", "check_n_samples", "model_device", "default_batch_size",
           "describe_run", "resolve_n_samples", "batch_segments", "probe_model"]


def resolve_n_samples(stimulus: Stimulus, n_samples: int | None) -> int:
    """``n_samples`` checked; for real images (:class:`~wna_helpers.engine.stimuli.Images`) None means all of them."""
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


def default_batch_size(device: torch.device, widest_bytes: int | None = None, *, cap: int | None = None,
                       total_bytes: int | None = None) -> int:
    """32,768 on CUDA; on a CPU :func:`~wna_helpers.engine.allocator.heap_batch_size` of the widest layer output
    and of all layers' outputs (``widest_bytes`` and ``total_bytes`` per sample, :func:`probe_model`), at most
    ``cap`` (the accumulators' ``cpu_batch_cap``)."""
    if device.type == "cuda":
        return 32_768
    batch = heap_batch_size(widest_bytes, total_bytes=total_bytes)
    return batch if cap is None else min(batch, cap)


def probe_model(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                taps: Sequence[str] = ()) -> tuple[int, dict[str, tuple[int, ...]], list[str], int, int]:
    """Run two zero inputs through ``model`` (eval mode, no gradients): the number of classes, the tapped
    layers' output shapes, the order in which the tapped layers ran (one entry per call), the bytes per
    sample of the widest tensor a leaf module returned, and of all the tensors the leaf modules returned.

    Raises:
        ValueError: if a tap is not a submodule (the message lists the layers), the model's parameters are
            not float32 (the engine feeds float32 stimuli), the model cannot take ``input_shape``, or it
            does not return ``(N, classes)`` logits.
    """
    names = dict(model.named_modules())
    for t in taps:
        if t not in names or t == "":
            layers = [n for n in names if n]
            raise ValueError(f"the model has no layer {t!r}; available layers: {layers}")
    dtypes = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point()} - {"torch.float32"})
    if dtypes:
        raise ValueError(f"the model's parameters are {', '.join(dtypes)}, but the engine feeds it float32 stimuli; "
                         f"call model.float() (for a faster, rounded forward pass use autocast=torch.bfloat16)")
    shapes: dict[str, tuple[int, ...]] = {}
    calls: list[str] = []

    def record(t: str, o: torch.Tensor) -> None:
        shapes[t] = tuple(o.shape[1:])
        calls.append(t)
    hooks = [names[t].register_forward_hook(lambda m, i, o, t=t: record(t, o)) for t in taps]
    try:
        with torch.inference_mode(), WidestOutput(model, samples=2) as widest:
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
    return int(out.shape[1]), shapes, calls, widest.bytes, widest.total


class _StopForward(Exception):
    """Raised by the last tap's hook to skip the rest of a forward pass nobody needs."""


def describe_run(stimulus: Stimulus, opts: RunOptions) -> dict[str, object]:
    """The description of a run's stimuli that results carry: the stimulus, and the seed and
    chunk size when it is seeded noise."""
    d = stimulus.describe()
    if stimulus.seeded:
        d.update(seed=opts.seed, chunk_size=opts.chunk_size)
    return d


def batch_segments(chunks: Sequence[int], chunk_size: int, n_samples: int, start: int,
                   batch_size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Batches of ``(chunk, lo, hi)`` slices over this rank's ``chunks`` (a list or range), from sample ``start``.

    Every chunk but the run's last is full, so the chunks before ``start`` are skipped in O(1).
    """
    first = min(start // chunk_size, len(chunks))
    skip = start - first * chunk_size
    batch: list[tuple[int, int, int]] = []
    room = batch_size
    for c in chunks[first:]:
        size = min(chunk_size, n_samples - c * chunk_size)
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


def rank_chunks(n_samples: int, chunk_size: int, rank: int, world: int) -> tuple[range, int]:
    """The chunks rank ``rank`` of ``world`` streams (every ``world``-th) and their number of samples, in O(1)."""
    n_chunks = math.ceil(n_samples / chunk_size)
    chunks = range(rank, n_chunks, world)
    last = n_chunks - 1
    mine = len(chunks) * chunk_size - ((n_chunks * chunk_size - n_samples) if last in chunks else 0)
    return chunks, mine


class _Run:
    """One call of :func:`run_engine`: its plan, its position, its checkpoint and its forward pass."""

    def __init__(self, model: nn.Module, stimulus: Stimulus, n_samples: int, accumulators: Sequence[Accumulator],
                 input_shape: tuple[int, ...], opts: RunOptions, stop: StopRule | None, device: torch.device,
                 taps: list[str]) -> None:
        self.model, self.stimulus, self.n_samples, self.accumulators = model, stimulus, n_samples, accumulators
        self.input_shape, self.opts, self.stop, self.device, self.taps = input_shape, opts, stop, device, taps
        num_classes, tap_shapes, calls, widest, total = probe_model(model, input_shape, device, taps)
        # no logits needed and every tap runs once per pass: stop after the last one
        self.stop_at = calls[-1] if calls and not any(a.needs_logits for a in accumulators) \
            and len(calls) == len(set(calls)) else None
        caps = [a.cpu_batch_cap for a in accumulators if a.cpu_batch_cap]
        self.batch_size = opts.batch_size or default_batch_size(device, widest, cap=min(caps, default=None),
                                                                    total_bytes=total)
        for a in accumulators:
            a.setup(num_classes, input_shape, device, tap_shapes)
        readers = Counter(t for a in accumulators for t in a.taps)
        for a in accumulators:
            a.owns_taps = all(readers[t] == 1 for t in a.taps)
        # taps some accumulator reads only through a ReLU (relu_taps), and taps some accumulator reads as they are
        self.relu_wanted = {t for a in accumulators if a.relu_taps for t in a.taps}
        self.raw_wanted = {t for a in accumulators if not a.relu_taps for t in a.taps}
        # the last tap, read only through its ReLU, of a pass that stops there: the ReLU computed by the convolution
        self.fused: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        t = self.stop_at
        if t is not None and t in self.relu_wanted and t not in self.raw_wanted and opts.autocast is None:
            f = fused_conv_relu(dict(model.named_modules())[t])
            if f is not None:
                self.fused[t] = f
        self.world, self.rank = (dist.get_world_size(), dist.get_rank()) \
            if dist.is_available() and dist.is_initialized() else (1, 0)
        self.chunk = opts.chunk_size
        self.n_chunks = math.ceil(n_samples / self.chunk)
        self.chunks, self.mine = rank_chunks(n_samples, self.chunk, self.rank, self.world)
        self.key = json.dumps({"n_samples": n_samples, "stimulus": stimulus.describe(), "seed": opts.seed,
                               "chunk_size": self.chunk, "world": self.world, "rank": self.rank,
                               "input_shape": input_shape, "model": state_digest(model),
                               "accumulators": [a.describe() for a in accumulators],
                               "stop_every": None if stop is None else stop.every_chunks}, sort_keys=True, default=str)
        self.ckpt = None if opts.checkpoint is None else Path(
            f"{opts.checkpoint}.rank{self.rank}" if self.world > 1 else opts.checkpoint)
        self.done = 0
        self.next_check = None if stop is None else stop.every_chunks  # the next milestone, in chunks of the run
        self.pending = False     # a checkpoint is due at the next chunk end (or milestone)
        self.stopped_at: int | None = None  # the milestone the stop rule ended the run at

    def restore(self) -> None:
        """Continue from the checkpoint of this same job, if there is one."""
        if self.ckpt is None:
            return
        remove_orphans(self.ckpt)
        if not self.ckpt.exists():
            return
        try:
            state = torch.load(self.ckpt, map_location=self.device, weights_only=True)
            if not isinstance(state, dict):
                raise TypeError(f"a {type(state).__name__}, not a dict")
        except Exception as exc:
            raise ValueError(f"checkpoint {self.ckpt} cannot be read as an engine checkpoint "
                             f"({type(exc).__name__}: {str(exc)[:120]}); delete it or choose another path") from None
        if state.get("key") != self.key:
            raise ValueError(f"checkpoint {self.ckpt} belongs to another job (other model, noise, "
                             f"n_samples or statistics); delete it or choose another path")
        self.done = int(state["done"])
        if self.stop is not None:
            self.next_check = int(state["next_check"])
        for a, saved in zip(self.accumulators, state["acc"]):
            for k in a.acc:
                a.acc[k].copy_(saved[k])
        at_chunk_end = self.done in (0, self.mine) or (self.done % self.chunk == 0 and self.done < self.mine)
        if not at_chunk_end:
            raise ValueError(f"checkpoint {self.ckpt} stops inside a chunk (written by an older version); delete it")

    def save(self) -> None:
        if self.ckpt is not None:
            atomic_torch_save({"key": self.key, "done": self.done, "next_check": self.next_check,
                               "acc": [{k: v.cpu() for k, v in a.acc.items()} for a in self.accumulators]}, self.ckpt)

    def criterion(self) -> bool:
        """The stop rule's verdict on the totals of all processes."""
        assert self.stop is not None
        if self.world == 1:
            return bool(self.stop.criterion())
        own = [a.acc for a in self.accumulators]
        try:
            for a in self.accumulators:
                a.acc = {k: v.clone() for k, v in a.acc.items()}
                for v in a.acc.values():
                    dist.all_reduce(v, op=dist.ReduceOp.SUM)
            return bool(self.stop.criterion())
        finally:
            for a, acc in zip(self.accumulators, own):
                a.acc = acc

    def forward(self, stack: ExitStack) -> tuple[Callable[[torch.Tensor], object], torch.memory_format, int]:
        """The fastest forward this model allows (:mod:`~wna_helpers.engine.speed`): weights channels-last
        while the run lasts; compiled for one batch shape (short batches padded) when ``should_compile``
        says so. Returns the forward, the stimuli's memory format and the padded batch (0: not padded)."""
        model, shape = self.model, self.input_shape
        channels_last = choose_channels_last(model, shape, self.device, self.opts.channels_last)
        stack.enter_context(memory_layout(model, channels_last))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        fixed, todo = min(self.batch_size, self.mine - self.done), self.mine - self.done
        if fixed <= 0:
            return model, layout, 0
        example = torch.zeros(fixed, *shape, device=self.device).to(memory_format=layout)
        signature = forward_signature(model, example)
        convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
        if should_compile(self.opts.compile, todo, self.device, bool(self.taps), signature,
                          convolutional=convolutional):
            compiled = compile_forward(model, example)
            return compiled, layout, (fixed if compiled is not model else 0)
        if not self.taps:
            note_eager_run(signature, todo)
        return model, layout, 0

    def at_milestones(self, c: int) -> bool:
        """Ask the stop rule at every milestone up to chunk ``c`` (all chunks before it are done); True to stop."""
        assert self.stop is not None and self.next_check is not None
        while c >= self.next_check:
            if self.criterion():
                self.stopped_at = self.next_check
                return True
            self.next_check += self.stop.every_chunks
            if self.pending:
                self.save()
                self.pending = False
        return False

    def stream(self, forward: Callable[[torch.Tensor], object], layout: torch.memory_format, padded: int,
               desc: str) -> None:
        """Every batch of this rank's chunks, forward and folded into the accumulators."""
        captured: dict[str, torch.Tensor] = {}    # the tapped outputs as they are
        relu: dict[str, torch.Tensor] = {}        # their ReLU, for accumulators with relu_taps
        modules = dict(self.model.named_modules())

        def capture(t: str, o: torch.Tensor, inputs: tuple) -> None:
            if t in self.raw_wanted:
                captured[t] = o
            if t in self.relu_wanted:
                # in place when no one else reads the output: the pass stops here, no accumulator wants it raw and
                # it is not its input (a layer that passes its input on: the stimuli themselves)
                alone = t == self.stop_at and t not in self.raw_wanted and not any(
                    isinstance(i, torch.Tensor) and i.untyped_storage().data_ptr() == o.untyped_storage().data_ptr()
                    for i in inputs)
                relu[t] = torch.relu_(o) if alone else torch.relu(o)
            if t == self.stop_at:
                raise _StopForward

        def fused(t: str, args: tuple) -> None:
            if len(args) == 1 and isinstance(args[0], torch.Tensor):
                relu[t] = self.fused[t](args[0])   # the convolution and its ReLU in one call; the module never runs
                raise _StopForward
        hooks = [modules[t].register_forward_hook(lambda m, i, o, t=t: capture(t, o, i)) for t in self.taps]
        hooks += [modules[t].register_forward_pre_hook(lambda m, a, t=t: fused(t, a)) for t in self.fused]
        amp = (lambda: torch.autocast(self.device.type, dtype=self.opts.autocast)) \
            if self.opts.autocast is not None else nullcontext
        bar = tqdm(total=self.mine, initial=self.done, disable=not self.opts.progress or self.rank != 0, desc=desc,
                   unit="sample", unit_scale=True, smoothing=0.1)
        folder = _Folder(self, bar)
        heap = HeapWatch()
        try:
            with torch.inference_mode(), heap_only():
                for i, segs in enumerate(batch_segments(self.chunks, self.chunk, self.n_samples, self.done,
                                                        self.batch_size), start=1):
                    x, y, whole = folder.stimuli(segs)
                    xin = x.to(memory_format=layout)
                    if padded and len(x) < padded:
                        xin = torch.cat([xin, xin.new_zeros(padded - len(x), *self.input_shape)
                                         .to(memory_format=layout)])
                    logits = None
                    try:
                        with amp():
                            logits = forward(xin).float()[:len(x)]  # type: ignore[union-attr]
                    except _StopForward:
                        pass
                    folder.fold(segs, whole, x, y, logits, captured, relu)
                    captured.clear()
                    relu.clear()
                    if self.stopped_at is not None:
                        break
                    if i % self.opts.checkpoint_every == 0:
                        self.pending = True
                    heap.step(i)  # the peak stays flat in n (see allocator.HeapWatch)
                # a process whose chunks ran out still takes part in the milestones the others reach
                while self.stop is not None and self.stopped_at is None and self.world > 1 \
                        and self.next_check < self.n_chunks:
                    if self.criterion():
                        self.stopped_at = self.next_check
                    else:
                        self.next_check += self.stop.every_chunks
        finally:
            bar.close()
            for h in hooks:
                h.remove()

    def finish(self) -> int:
        self.save()
        if self.stop is not None:
            self.stop.stopped = self.stopped_at is not None
            self.stop.n_samples = self.n_samples if self.stopped_at is None \
                else min(self.n_samples, self.stopped_at * self.chunk)
        if self.world > 1:
            for a in self.accumulators:
                for v in a.acc.values():
                    dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return self.world


class _Folder:
    """Turns batches of chunk pieces into accumulator updates, whole chunks and checkpoints."""

    def __init__(self, run: _Run, bar: tqdm) -> None:
        self.run, self.bar = run, bar
        self.wanting = [a for a in run.accumulators if a.wants_chunks]
        self.chunk_logits: list[torch.Tensor] = []
        self.cache: tuple[int, torch.Tensor, torch.Tensor | None] | None = None

    def stimuli(self, segs: list[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor | None, list]:
        """The batch's stimuli and labels, drawn chunk by chunk (a chunk is drawn once, kept while in use)."""
        r = self.run
        xs, ys, whole = [], [], []
        for c, lo, hi in segs:
            if self.cache is None or self.cache[0] != c:
                self.cache = (c, *r.stimulus.chunk(c, seed=r.opts.seed, chunk_size=r.chunk,
                                                   input_shape=r.input_shape, device=r.device))
            xs.append(self.cache[1][lo:hi])
            ys.append(self.cache[2][lo:hi] if self.cache[2] is not None else None)
            whole.append(self.cache)
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
        y = None if ys[0] is None else (ys[0] if len(ys) == 1 else torch.cat(ys))
        return x, y, whole

    def fold(self, segs: list[tuple[int, int, int]], whole: list, x: torch.Tensor, y: torch.Tensor | None,
             logits: torch.Tensor | None, captured: dict[str, torch.Tensor], relu: dict[str, torch.Tensor]) -> None:
        """One update per chunk piece: float32 partial sums never span two chunks. Accumulators with ``relu_taps``
        get the ReLU of each tap, the others the tap as it is."""
        r = self.run
        start = 0
        for (c, lo, hi), (_, cx, cy) in zip(segs, whole):
            if r.stop is not None and lo == 0 and r.at_milestones(c):
                return
            sl = slice(start, start + hi - lo)
            start = sl.stop
            piece_logits = None if logits is None else logits[sl]
            for a in r.accumulators:
                a.update(x[sl], piece_logits, {t: (relu if a.relu_taps else captured)[t][sl].float() for t in a.taps},
                         None if y is None else y[sl])
            r.done += hi - lo
            self.bar.update(hi - lo)
            if self.wanting and piece_logits is not None:
                self.chunk_logits.append(piece_logits)
            size = min(r.chunk, r.n_samples - c * r.chunk)
            if hi == size:  # the chunk is complete
                self.end_chunk(c, cx[:size], None if cy is None else cy[:size])

    def end_chunk(self, c: int, x: torch.Tensor, y: torch.Tensor | None) -> None:
        r = self.run
        if self.wanting:
            logits = None if not self.chunk_logits else (
                self.chunk_logits[0] if len(self.chunk_logits) == 1 else torch.cat(self.chunk_logits))
            for a in self.wanting:
                a.end_chunk(Chunk(c, r.opts.seed, x, logits, y))
            self.chunk_logits.clear()
        if r.pending and r.stop is None:
            r.save()
            r.pending = False


def run_engine(model: nn.Module, stimulus: Stimulus | str, n_samples: int, accumulators: Sequence[Accumulator],
               *, input_shape: tuple[int, ...], run: RunOptions | None = None, desc: str = "white noise",
               stop: StopRule | None = None, **options: object) -> int:
    """Stream ``n_samples`` stimuli through ``model`` into ``accumulators``.

    Args:
        model: any classifier returning ``(N, classes)`` logits, with float32 parameters; left as found
            (training flag, grads, device).
        stimulus: a :class:`~wna_helpers.engine.stimuli.Stimulus` (noise kind, mixture or real images)
            or a shorthand (``"gaussian"``, ``"uniform"``).
        n_samples: positive integer, at most :data:`~wna_helpers.engine.checks.MAX_SAMPLES`.
        accumulators: what to compute; their ``taps`` name the layers to hook.
        input_shape: ``(C, H, W)`` of one stimulus (positive integers).
        run: the :class:`~wna_helpers.engine.options.RunOptions`; default ``RunOptions()``.
        desc: label of the progress bar.
        stop: a :class:`StopRule` that may end the run early (at a milestone); default None.
        **options: fields of :class:`~wna_helpers.engine.options.RunOptions` (``batch_size``, ``seed``,
            ``device``, ``autocast``, ``checkpoint``, ``checkpoint_every``, ``progress``,
            ``chunk_size``), applied on top of ``run``.

    Every argument, the model (on a two-sample probe: its dtype, the input shape, its logits) and the
    checkpoint are checked before the first sample is drawn.

    The run is as fast as the model allows (:mod:`wna_helpers.engine.speed`): glibc's allocator is
    tuned once per process (``WNA_MALLOPT=0`` turns that off), convolutional models run
    channels-last when they give the same logits that way (``channels_last``), and long
    CPU runs that tap no layer are compiled (``compile``).

    When no accumulator needs the logits (``needs_logits = False``, as for STAs) and each
    tapped layer runs once per pass, every forward pass stops right after the last tapped
    layer: the layers behind it are never computed. Accumulators that read a tap only through its
    ReLU (``relu_taps = True``, as STAs) get the ReLU; when that last tap is a plain convolution on the
    CPU and nobody reads it otherwise, the convolution computes its ReLU itself
    (:func:`~wna_helpers.engine.speed.fused_conv_relu`).

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
    input_shape = check_input_shape(input_shape)
    stimulus.check_shape(input_shape)
    available = stimulus.available()
    if available is not None and n_samples > available:
        raise ValueError(f"n_samples={n_samples} but only {available} images were given")
    taps = sorted({t for a in accumulators for t in a.taps})
    tune_allocator()
    was_training = model.training
    model.eval()
    try:
        with ExitStack() as stack:
            job = _Run(model, stimulus, n_samples, accumulators, input_shape, opts, stop, device, taps)
            job.restore()
            forward, layout, padded = job.forward(stack)
            job.stream(forward, layout, padded, desc)
            return job.finish()
    finally:
        model.train(was_training)
