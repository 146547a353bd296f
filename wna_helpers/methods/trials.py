"""Trials out and answers in, as a psychophysics lab runs them: stimuli as 8-bit PNG files with a CSV that says
what each one is, and a CSV of answers read back with clear errors.

:func:`export_trials` writes ``n`` trials of any stimulus (noise alone, or the two-class design's base image plus
noise: a :class:`~wna_helpers.engine.stimuli.Mixture`, or any tensor of stimuli) into a folder, written in full or
not at all; :func:`read_trial_images` reads the PNGs back as the observer saw them (8-bit: every pixel within
1/510 of the float stimulus); :func:`read_responses` reads the answers (trial id, response, optional response
time) for :func:`~wna_helpers.methods.responses.classification_images_from_responses`.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from ..engine.checks import check_images
from ..engine.kernel import describe_run
from ..engine.options import DEFAULT_CHUNK, RunOptions
from ..engine.stimuli import Stimulus, as_stimulus

__all__ = ["export_trials", "read_trial_images", "read_responses", "TRIALS_CSV", "quantise", "png_bytes"]

#: The name of the trial list inside an exported folder.
TRIALS_CSV = "trials.csv"


def quantise(x: torch.Tensor) -> torch.Tensor:
    """What an 8-bit file holds of stimuli in [0, 1]: ``round(255 x) / 255`` (float32)."""
    return (x.clamp(0, 1) * 255).round().float() / 255


def png_bytes(image: torch.Tensor, scale: int = 1) -> bytes:
    """One stimulus ``(C, H, W)`` in [0, 1] (C = 1 or 3) as an 8-bit PNG file's bytes (:func:`quantise`), each pixel
    drawn as ``scale x scale`` pixels (nearest neighbour)."""
    import io

    from PIL import Image

    pixels = (quantise(image) * 255).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    arr = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _stimuli(trials: torch.Tensor | Stimulus | str, n: int | None, seed: int, chunk_size: int,
             input_shape: tuple[int, ...]) -> tuple[torch.Tensor, dict[str, object]]:
    if isinstance(trials, torch.Tensor):
        check_images(trials, value_range=(0.0, 1.0))
        x = trials if n is None else trials[:n]
        return x.float(), {"kind": "tensor", "n": len(x)}
    stim = as_stimulus(trials)
    if not stim.seeded or n is None:
        raise ValueError("export a seeded stimulus with its number of trials n (or a tensor of stimuli)")
    cpu = torch.device("cpu")
    x = torch.cat([stim.chunk(c, seed=seed, chunk_size=chunk_size, input_shape=input_shape, device=cpu)[0]
                   for c in range(math.ceil(n / chunk_size))])[:n]
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(f"an 8-bit file holds pixels in [0, 1]; {stim.label()} has pixels from {float(x.min()):.3g} "
                         f"to {float(x.max()):.3g} (use noise in [0, 1], e.g. wna.Uniform())")
    return x, describe_run(stim, RunOptions(seed=seed, chunk_size=chunk_size))


def export_trials(trials: torch.Tensor | Stimulus | str, folder: str | os.PathLike, *, n: int | None = None,
                  seed: int = 0, chunk_size: int = DEFAULT_CHUNK, input_shape: tuple[int, ...] = (1, 28, 28),
                  scale: int = 4, description: str = "") -> Path:
    """Write trials as 8-bit PNG files (``trial_000000.png`` ...) and a CSV of trial id, file, seed and stimulus.

    The folder is written in full or not at all (a temporary folder beside it, renamed at the end); an existing
    folder is an error.

    Args:
        trials: float ``(N, C, H, W)`` in [0, 1] in trial order, or a seeded stimulus with pixels in [0, 1]
            (trial ``i`` is its sample ``i`` for ``seed`` and ``chunk_size``: the trials a network run of that
            stimulus sees).
        folder: where to write; must not exist.
        n: trials to write; required for a stimulus, default all for a tensor.
        seed, chunk_size: of a stimulus; default 0 and 4,096.
        input_shape: ``(C, H, W)`` of a stimulus; default ``(1, 28, 28)``.
        scale: each pixel drawn as ``scale x scale`` pixels (nearest neighbour) for display; default 4.
        description: free text stored in every row (e.g. "5 or 6?"); default empty.

    Returns:
        The path of the CSV (columns ``trial``, ``file``, ``seed``, ``chunk_size``, ``scale``, ``stimulus`` (JSON),
        ``description``).

    Raises:
        ValueError: a folder that exists, stimuli outside [0, 1], a stimulus without ``n``, a bad ``scale``.

    Example:
        >>> import tempfile, wna_helpers as wna
        >>> path = export_trials("uniform", Path(tempfile.mkdtemp()) / "exp", n=3, input_shape=(1, 4, 4))
        >>> read_trial_images(path.parent).shape
        torch.Size([3, 1, 4, 4])
    """
    folder = Path(folder)
    if folder.exists():
        raise ValueError(f"{folder} exists; export into a new folder (nothing was written)")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    x, desc = _stimuli(trials, n, seed, chunk_size, tuple(input_shape))
    if x.shape[1] not in (1, 3):
        raise ValueError(f"PNG trials need 1 (grey) or 3 (RGB) channels, got {x.shape[1]}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        rows = []
        for i, img in enumerate(x):
            name = f"trial_{i:06d}.png"
            (tmp / name).write_bytes(png_bytes(img, scale))
            rows.append({"trial": i, "file": name, "seed": seed, "chunk_size": chunk_size, "scale": scale,
                         "stimulus": json.dumps(desc, sort_keys=True), "description": description})
        with open(tmp / TRIALS_CSV, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / TRIALS_CSV


def read_trial_images(folder: str | os.PathLike) -> torch.Tensor:
    """The exported trials as the observer saw them: float32 ``(N, C, H, W)`` in [0, 1], in trial order, each
    pixel the 8-bit value of the file over 255 (the display scale undone).

    Raises:
        ValueError: a folder without :data:`TRIALS_CSV`, or a missing image file.
    """
    from PIL import Image
    import numpy as np

    folder = Path(folder)
    if not (folder / TRIALS_CSV).exists():
        raise ValueError(f"{folder} holds no {TRIALS_CSV}: not a folder written by export_trials")
    with open(folder / TRIALS_CSV, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["trial"]))
    out = []
    for r in rows:
        path, s = folder / r["file"], int(r["scale"])
        if not path.exists():
            raise ValueError(f"trial {r['trial']}: {path} is missing")
        a = torch.from_numpy(np.array(Image.open(path))).float()[::s, ::s] / 255
        out.append(a[None] if a.dim() == 2 else a.permute(2, 0, 1))
    return torch.stack(out)


def read_responses(path: str | os.PathLike, n_trials: int, *, classes: Sequence[str] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An observer's answers: a CSV with columns ``trial`` and ``response`` (and optionally ``rt``, the response
    time in seconds), one row per trial of an experiment of ``n_trials`` trials.

    Args:
        path: the CSV.
        n_trials: how many trials were shown (ids 0 .. n_trials - 1).
        classes: the class names, when responses are written as names (e.g. "T-shirt"); default None (class
            indices).

    Returns:
        ``(responses, rt)``: int64 ``(n_trials,)`` in trial order, and float64 ``(n_trials,)`` response times (NaN
        where empty) or None without an ``rt`` column.

    Raises:
        ValueError: a missing column, an unknown or repeated trial id, trials without an answer (the message lists
            the first ones), or a response that is not a class index or name.
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "trial" not in fields or "response" not in fields:
            raise ValueError(f"{path} needs the columns 'trial' and 'response' (and optionally 'rt'); it has {fields}")
        rows = list(reader)
    responses = torch.full((n_trials,), -1, dtype=torch.long)
    rt = torch.full((n_trials,), float("nan"), dtype=torch.float64) if "rt" in fields else None
    names = {c: i for i, c in enumerate(classes)} if classes is not None else None
    seen: set[int] = set()
    for line, r in enumerate(rows, start=2):
        try:
            t = int(r["trial"])
        except ValueError:
            raise ValueError(f"{path}, line {line}: trial id {r['trial']!r} is not an integer") from None
        if not 0 <= t < n_trials:
            raise ValueError(f"{path}, line {line}: unknown trial {t}; the experiment has trials 0 to {n_trials - 1}")
        if t in seen:
            raise ValueError(f"{path}, line {line}: trial {t} is answered twice")
        seen.add(t)
        v = r["response"].strip()
        if names is not None:
            if v not in names:
                raise ValueError(f"{path}, line {line}: response {v!r} is not one of the classes {list(names)}")
            responses[t] = names[v]
        else:
            try:
                responses[t] = int(v)
            except ValueError:
                raise ValueError(f"{path}, line {line}: response {v!r} is not a class index") from None
            if responses[t] < 0:
                raise ValueError(f"{path}, line {line}: response {v} is negative")
        if rt is not None and r.get("rt", "").strip():
            rt[t] = float(r["rt"])
    missing = [i for i in range(n_trials) if i not in seen]
    if missing:
        raise ValueError(f"{path}: {len(missing)} of {n_trials} trials have no answer (first: "
                         f"{', '.join(map(str, missing[:5]))})")
    return responses, rt
