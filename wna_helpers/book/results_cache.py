"""The results cache: costly book computations stored on disk, keyed by their content.

An entry's key holds everything its value depends on, as the caller states it (for the
book's studies: every setting of the profile, the digest of the model's weights, the
complete description of the stimulus and the statistics) plus the digest of the source
of ``wna_helpers`` (:func:`~wna_helpers.engine.fingerprint.code_digest`), so a changed helper
recomputes instead of serving an old number. Never a name.

Entries computed while another entry is being computed are recorded as its
dependencies, each with the random *stamp* it had. An entry is served only if every
dependency still exists with the stamp it recorded (checked recursively), so
``refresh=True`` on one entry, which recomputes it with a new stamp, also refreshes
every entry that depends on it the next time that one is asked for.

Writes are atomic (write, then rename). Files live under ``<cache>/results/``.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, TypeVar

import torch

from ..engine.atomic import atomic_torch_save
from ..config import cache_root
from ..engine.fingerprint import code_digest

__all__ = ["cached", "cache_key", "cache_path"]

T = TypeVar("T")
#: The dependency lists of the entries being computed, innermost last.
_OPEN: ContextVar[tuple[list, ...]] = ContextVar("wna_open_entries", default=())


def cache_key(kind: str, params: dict[str, object]) -> str:
    """The canonical JSON key of an entry: ``kind``, ``params`` and the code digest."""
    return json.dumps({"kind": kind, **params, "code": code_digest()}, sort_keys=True, default=str)


def cache_path(kind: str, params: dict[str, object], root: Path | None = None) -> Path:
    """Where the entry of ``kind`` with ``params`` lives."""
    digest = hashlib.sha256(cache_key(kind, params).encode()).hexdigest()[:24]
    return (root or cache_root() / "results") / f"{kind}-{digest}.pt"


def _load(path: Path) -> dict | None:
    try:
        blob = torch.load(path, weights_only=False)  # our own cache files
        return blob if isinstance(blob, dict) and "stamp" in blob else None
    except Exception:  # missing, unreadable or truncated: recompute
        return None


def _valid(blob: dict, seen: set[str]) -> bool:
    """Every dependency of ``blob`` exists with the recorded stamp and is valid itself."""
    for dep_path, stamp in blob.get("deps", []):
        if dep_path in seen:
            continue
        dep = _load(Path(dep_path))
        if dep is None or dep["stamp"] != stamp or not _valid(dep, seen | {dep_path}):
            return False
    return True


def cached(kind: str, params: dict[str, object], compute: Callable[[], T], *, refresh: bool = False,
           root: Path | None = None) -> T:
    """The value of ``compute()`` for ``(kind, params)``, from disk when a valid entry exists.

    Args:
        kind: a short name of what is computed (part of the key and the file name).
        params: everything the value depends on besides the code (JSON-serialisable).
        compute: computes the value; cached entries it asks for become dependencies.
        refresh: recompute even if a valid entry exists; the entries that depend on this one
            are recomputed when next asked for. Default False.
        root: folder of the entries; default ``<cache>/results``.

    Returns:
        The value (computed now or loaded).
    """
    path = cache_path(kind, params, root)
    key = cache_key(kind, params)
    blob = None if refresh else _load(path)
    if blob is not None and (blob.get("key") != key or not _valid(blob, {str(path)})):
        blob = None
    if blob is None:
        deps: list[tuple[str, str]] = []
        token = _OPEN.set(_OPEN.get() + (deps,))
        try:
            value = compute()
        finally:
            _OPEN.reset(token)
        blob = {"key": key, "stamp": uuid.uuid4().hex, "deps": deps, "value": value}
        atomic_torch_save(blob, path)
    parents = _OPEN.get()
    if parents:
        parents[-1].append((str(path), blob["stamp"]))
    return blob["value"]
