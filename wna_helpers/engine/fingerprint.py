"""Content digests: of tensors (their bytes), of a model's weights, and of this package's code.

Cache keys and checkpoints identify what a result depends on by these digests, never by
a name or a sum of values.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

__all__ = ["tensor_digest", "state_digest", "code_digest", "code_files"]

#: The ``wna_helpers`` folder (this module lives in its ``engine`` subpackage).
_PACKAGE = Path(__file__).resolve().parent.parent


def _update(h: "hashlib._Hash", t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, not a copy of its bytes


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 (hex) of a tensor's dtype, shape and bytes."""
    h = hashlib.sha256()
    _update(h, t)
    return h.hexdigest()


def state_digest(model: nn.Module) -> str:
    """SHA-256 (hex) of every parameter and buffer of ``model`` (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _update(h, t)
    return h.hexdigest()


def code_files() -> list[Path]:
    """Every module of ``wna_helpers`` (all subpackages, the book's glue and ``config`` included), sorted: what
    :func:`code_digest` hashes, with the JSON data the package ships (the paper's numbers)."""
    return sorted([*_PACKAGE.rglob("*.py"), *_PACKAGE.rglob("*.json")])


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 (hex, first 16 characters) of the source of every module of ``wna_helpers`` (:func:`code_files`).

    Part of every results-cache key: a changed helper recomputes instead of serving old
    results. ``make book`` stamps its execution cache with the same digest
    (``python -m wna_helpers code-digest``).
    """
    h = hashlib.sha256()
    for path in code_files():
        h.update(path.relative_to(_PACKAGE).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
