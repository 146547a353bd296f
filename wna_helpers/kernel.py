"""The white-noise engine: stream stimuli through a model and accumulate statistics.

Nothing here stores the stimuli: each batch is generated on the model's device,
pushed through the model, folded into float64 accumulators and dropped, so memory
is O(batch size) whatever ``n_samples`` is. Work is split into fixed-size seeded
chunks (:mod:`wna_helpers.noise`), which makes a result independent of the batch
size, of the number of processes (``torch.distributed``: ranks take every
``world``-th chunk and the accumulators are all-reduced) and of where a resumed
run restarted.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ._io import atomic_torch_save
from .noise import ImageSource, NoiseSource

__all__ = ["Accumulator", "run_engine", "check_n_samples", "model_device", "probe_model",
           "default_batch_size"]


class Accumulator:
    """Base class of the statistics the engine folds batches into.

    Subclasses fill ``self.acc`` (name -> float64 or int64 tensor on the model's
    device) in ``setup`` and add to it in ``update``; the engine checkpoints and
    all-reduces exactly those tensors.
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

    def describe(self) -> dict[str, object]:
        return {"type": type(self).__name__, "taps": list(self.taps)}


def check_n_samples(n_samples: object) -> int:
    """``n_samples`` as an int, or ``ValueError`` unless it is a positive integer."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return int(n_samples)


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


def probe_model(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                taps: Sequence[str] = ()) -> tuple[int, dict[str, tuple[int, ...]]]:
    """Run two zero inputs through ``model``: the number of classes and the tapped shapes.

    Raises:
        ValueError: if a tap is not a submodule (the message lists the layers), or the
            model cannot take ``input_shape``, or does not return ``(N, classes)`` logits.
    """
    num_classes, shapes, _ = _probe(model, input_shape, device, taps)
    return num_classes, shapes


def _probe(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
           taps: Sequence[str]) -> tuple[int, dict[str, tuple[int, ...]], list[str]]:
    """:func:`probe_model`, plus the order in which the tapped layers ran (one entry per call)."""
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


def _fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(name.encode())
        h.update(str(float(p.double().sum())).encode())
    return h.hexdigest()[:16]


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


def run_engine(model: nn.Module, source: NoiseSource | ImageSource, n_samples: int,
               accumulators: Sequence[Accumulator], *, input_shape: tuple[int, ...],
               batch_size: int | None = None, device: torch.device | str | None = None,
               autocast: torch.dtype | None = None, checkpoint: str | os.PathLike | None = None,
               checkpoint_every: int = 50, progress: bool = True, desc: str = "white noise") -> int:
    """Stream ``n_samples`` stimuli of ``source`` through ``model`` into ``accumulators``.

    Args:
        model: any classifier returning ``(N, classes)`` logits; left as found
            (training flag, grads, device).
        source: a :class:`~wna_helpers.noise.NoiseSource` or :class:`~wna_helpers.noise.ImageSource`.
        n_samples: positive integer.
        accumulators: what to compute; their ``taps`` name the layers to hook.
        input_shape: ``(C, H, W)`` of one stimulus.
        batch_size: samples per forward pass; default :func:`default_batch_size`.
        device: must be the model's device if given; default the model's device.
        autocast: ``torch.bfloat16`` or ``torch.float16`` to run the forward pass under
            autocast (CUDA); default None (float32).
        checkpoint: file to save accumulators to every ``checkpoint_every`` batches; a
            run given an existing checkpoint of the same job resumes from it. With several
            processes each rank uses ``<checkpoint>.rank<r>``.
        checkpoint_every: default 50 batches.
        progress: show a ``tqdm`` bar (samples/s); default True.
        desc: label of the bar.

    When no accumulator needs the logits (``needs_logits = False``, as for STAs) and each
    tapped layer runs once per pass, every forward pass stops right after the last tapped
    layer: the layers behind it are never computed.

    Returns:
        The number of processes that shared the work (1 without ``torch.distributed``).
        The accumulators hold the totals over all processes.
    """
    n_samples = check_n_samples(n_samples)
    device = model_device(model, device)
    input_shape = tuple(int(s) for s in input_shape)
    if batch_size is None:
        batch_size = default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(checkpoint_every, int) and checkpoint_every > 0):
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if autocast not in (None, torch.bfloat16, torch.float16):
        raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}")
    source.check_shape(input_shape)
    if isinstance(source, ImageSource) and n_samples > len(source.images):
        raise ValueError(f"n_samples={n_samples} but only {len(source.images)} images were given")
    taps = sorted({t for a in accumulators for t in a.taps})
    was_training = model.training
    model.eval()
    hooks = []
    try:
        num_classes, tap_shapes, calls = _probe(model, input_shape, device, taps)
        # no logits needed and every tap runs once per pass: stop after the last one
        stop_at = calls[-1] if calls and not any(a.needs_logits for a in accumulators) \
            and len(calls) == len(set(calls)) else None
        for a in accumulators:
            a.setup(num_classes, input_shape, device, tap_shapes)
        world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() \
            else (1, 0)
        chunk = source.chunk_size
        chunks = list(range(rank, math.ceil(n_samples / chunk), world))
        mine = sum(min(chunk, n_samples - c * chunk) for c in chunks)
        key = json.dumps({"n_samples": n_samples, "source": source.describe(), "world": world, "rank": rank,
                          "input_shape": input_shape, "model": _fingerprint(model),
                          "accumulators": [a.describe() for a in accumulators]}, sort_keys=True, default=str)
        ckpt = None if checkpoint is None else Path(f"{checkpoint}.rank{rank}" if world > 1 else checkpoint)
        done = 0
        if ckpt is not None and ckpt.exists():
            state = torch.load(ckpt, map_location=device, weights_only=True)
            if state.get("key") != key:
                raise ValueError(f"checkpoint {ckpt} belongs to another job (other model, noise, "
                                 f"n_samples or statistics); delete it or choose another path")
            done = int(state["done"])
            for a, saved in zip(accumulators, state["acc"]):
                for k in a.acc:
                    a.acc[k].copy_(saved[k])

        def save() -> None:
            if ckpt is not None:
                atomic_torch_save({"key": key, "done": done,
                                    "acc": [{k: v.cpu() for k, v in a.acc.items()} for a in accumulators]}, ckpt)

        captured: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        def capture(t: str, o: torch.Tensor) -> None:
            captured[t] = o
            if t == stop_at:
                raise _StopForward
        for t in taps:
            hooks.append(modules[t].register_forward_hook(lambda m, i, o, t=t: capture(t, o)))
        amp = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast is not None else nullcontext
        bar = tqdm(total=mine, initial=done, disable=not progress or rank != 0, desc=desc,
                   unit="sample", unit_scale=True, smoothing=0.1)
        cache: tuple[int, torch.Tensor, torch.Tensor | None] | None = None
        with torch.inference_mode():
            for i, segs in enumerate(_segments(chunks, chunk, n_samples, done, batch_size), start=1):
                xs, ys = [], []
                for c, lo, hi in segs:
                    if cache is None or cache[0] != c:
                        cache = (c, *source.chunk(c, input_shape, device))
                    xs.append(cache[1][lo:hi])
                    ys.append(cache[2][lo:hi] if cache[2] is not None else None)
                x = xs[0] if len(xs) == 1 else torch.cat(xs)
                y = None if ys[0] is None else (ys[0] if len(ys) == 1 else torch.cat(ys))
                logits = None
                try:
                    with amp():
                        logits = model(x).float()
                except _StopForward:
                    pass
                for a in accumulators:
                    a.update(x, logits, {t: captured[t].float() for t in a.taps}, y)
                captured.clear()
                done += len(x)
                bar.update(len(x))
                if i % checkpoint_every == 0:
                    save()
        bar.close()
        save()
        if world > 1:
            for a in accumulators:
                for v in a.acc.values():
                    dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return world
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
