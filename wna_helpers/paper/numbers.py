"""The paper's numbers as data, where each comes from, and how one of ours is judged against it.

:func:`paper_numbers` returns every number that the code of Borji & Lin (ICLR 2020) printed or
typed, transcribed from the project's ``PAPER.md`` into ``paper_numbers.json`` (package data),
each entry with its ``source`` (notebooks, cells, section of PAPER.md) and a short ``what``;
:func:`cite` names that source and :func:`compare` puts one of our numbers next to the paper's.
"""
from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources
from numbers import Real
from typing import Any, Sequence

import torch

__all__ = ["PAPER_WEIGHTS", "paper_numbers", "paper_weights", "cite", "compare"]

#: The weights ``w`` of the paper's gamma curves: 0, 0.1, ..., 1.0 (11 values).
PAPER_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@functools.lru_cache(maxsize=1)
def load_numbers() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("paper_numbers.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_numbers() -> dict[str, Any]:
    """Every number of the paper's code, as a nested dict (a fresh deep copy on every call).

    The file is read once and cached; callers get their own copy and cannot change the cache.
    Shares are fractions (62.4 % is ``0.624``); classes are indices with their dataset's name in
    ``"name"``; every entry carries ``"source"`` (``{"notebooks": [...], "cells": str | None,
    "section": str}``, the section of PAPER.md) and ``"what"``.

    Top-level keys: ``meta``, ``class_names``, ``data``, ``training``, ``white_noise``,
    ``gabor_noise``, ``templates``, ``feed_back``, ``gamma_curves``, ``targeted_attack``,
    ``trojan``, ``microstimulation``, ``rnn``, ``signal_in_noise``, ``sta``, ``exploratory``, ``quirks``.

    Returns:
        dict parsed from ``wna_helpers/paper_numbers.json``.

    Example:
        >>> from wna_helpers.paper import paper_numbers
        >>> p = paper_numbers()
        >>> p["gamma_curves"]["curves"]["noise_ci"]["values"][-1]
        0.9
        >>> p["templates"]["accuracy"][0]["accuracy"]
        0.356
    """
    return copy.deepcopy(load_numbers())


def paper_weights() -> torch.Tensor:
    """The gamma-curve weights 0, 0.1, ..., 1.0 as float64 ``(11,)`` (:data:`PAPER_WEIGHTS`).

    Returns:
        float64 ``(11,)``.

    Example:
        >>> from wna_helpers.paper import paper_weights
        >>> paper_weights()[[0, 5, -1]].tolist()
        [0.0, 0.5, 1.0]
    """
    return torch.tensor(PAPER_WEIGHTS, dtype=torch.float64)


def cite(entry: dict[str, Any]) -> str:
    """One line naming where an entry of :func:`paper_numbers` comes from.

    Args:
        entry: any dict of :func:`paper_numbers` with a ``"source"``.

    Returns:
        e.g. ``"Colab Notebooks/classification_images_adverserial.ipynb, cell 62"``; the section
        of PAPER.md when it names no notebook.

    Raises:
        ValueError: if ``entry`` has no ``"source"``.

    Example:
        >>> from wna_helpers.paper import cite, paper_numbers
        >>> cite(paper_numbers()["targeted_attack"])
        'Colab Notebooks/classification_images_adverserial.ipynb, cell 62'
    """
    src = entry.get("source") if isinstance(entry, dict) else None
    if not isinstance(src, dict):
        raise ValueError("entry has no 'source'; pass a dict taken from paper_numbers()")
    text = ", ".join(src.get("notebooks") or []) or f"PAPER.md, section '{src.get('section')}'"
    cells = src.get("cells")
    if cells:
        text += f", {'cells' if '-' in str(cells) else 'cell'} {cells}"
    return text


def compare(measured: float | Sequence[float] | torch.Tensor, paper: float | Sequence[float] | torch.Tensor, *,
            tolerance: float) -> dict[str, Any]:
    """Put our number (or curve) next to the paper's: is it reproduced within ``tolerance``?

    ``reproduced`` is True when every ``|ours - paper| <= tolerance`` (absolute, in the units of
    the numbers; a NaN of ours is never reproduced).

    Args:
        measured: our value: a number, or a sequence / 1-D tensor of numbers.
        paper: the paper's value, of the same length as ``measured``.
        tolerance: the largest absolute difference still counted as reproduced, >= 0.

    Returns:
        ``{"paper", "ours", "diff", "max_abs_diff", "reproduced"}``: floats for numbers, lists of
        floats for sequences (``diff = ours - paper``); ``max_abs_diff`` is a float (NaN if ours
        holds a NaN), ``reproduced`` a bool.

    Raises:
        ValueError: if ``tolerance`` is negative or not finite, the lengths differ, or the paper's
            value is not finite.

    Example:
        >>> from wna_helpers.paper import compare
        >>> compare(0.371, 0.356, tolerance=0.05)["reproduced"]
        True
        >>> compare([0.1, 0.5], [0.1, 0.2], tolerance=0.05)["diff"]
        [0.0, 0.3]
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0; got {tolerance!r}")
    try:
        ours_t = torch.as_tensor(measured, dtype=torch.float64).cpu()
        paper_t = torch.as_tensor(paper, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"measured and paper must be numbers or sequences of numbers ({err})") from None
    scalar = ours_t.dim() == 0 and paper_t.dim() == 0
    ours_t, paper_t = ours_t.flatten(), paper_t.flatten()
    if ours_t.shape != paper_t.shape or ours_t.numel() == 0:
        raise ValueError(f"measured and paper must have the same, non-zero length; got {ours_t.numel()} and "
                         f"{paper_t.numel()}")
    if not bool(torch.isfinite(paper_t).all()):
        raise ValueError("the paper's value must be finite")
    diff = ours_t - paper_t
    worst = float(diff.abs().max()) if bool(torch.isfinite(diff).all()) else float("nan")
    reproduced = bool(math.isfinite(worst) and worst <= tolerance + 1e-12)

    def _out(values: list[float]) -> float | list[float]:
        return values[0] if scalar else values

    return {"paper": _out(paper_t.tolist()), "ours": _out(ours_t.tolist()),
            "diff": _out([round(v, 12) for v in diff.tolist()]),  # 0.5 - 0.2 reads 0.3, not 0.30000000000000004
            "max_abs_diff": worst, "reproduced": reproduced}
