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

Nothing in the cache runs code: entries load with ``torch.load(..., weights_only=True)``, which rebuilds only
tensors, numbers, strings, containers and the result types listed in :data:`RESULT_TYPES`. A dependency is
followed only inside the cache's own folder. A file that cannot be loaded that way (planted, truncated,
written by another version) is a miss, with a warning that names it, and is recomputed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, TypeVar

import torch

from ..applications.attacks import BlendAttack, PerturbationAttack
from ..config import cache_root
from ..engine.atomic import atomic_torch_save
from ..engine.fingerprint import code_digest
from ..methods.activations import ActivationStatistics
from ..methods.ci import ClassificationImages
from ..methods.convergence import CIConvergence, STAConvergence
from ..methods.psychometrics import PsychometricCurve, PsychometricFit
from ..methods.sta import ReceptiveField, SpikeTriggeredAverage
from ..methods.stc import SpikeTriggeredCovariance
from ..methods.two_class import TwoClassCI

__all__ = ["cached", "cache_key", "cache_path", "check_storable", "RESULT_TYPES", "UnsafeCacheWarning"]

#: The result types a cache entry may hold besides plain data (the only classes ``torch.load`` may rebuild).
RESULT_TYPES: tuple[type, ...] = (ClassificationImages, SpikeTriggeredAverage, ReceptiveField, SpikeTriggeredCovariance,
                                  ActivationStatistics, CIConvergence, STAConvergence, BlendAttack, PerturbationAttack,
                                  TwoClassCI, PsychometricCurve, PsychometricFit)


class UnsafeCacheWarning(UserWarning):
    """A results-cache file could not be loaded safely and is recomputed (the message names it)."""

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
    """The entry at ``path``; None when there is none, or (with a warning naming it) when it cannot be loaded
    safely."""
    if not path.is_file():
        return None
    try:
        with torch.serialization.safe_globals(list(RESULT_TYPES)):
            blob = torch.load(path, weights_only=True)
    except Exception as exc:  # planted, truncated or written by another version: recompute
        warnings.warn(f"results cache: {path} cannot be loaded safely ({type(exc).__name__}: {str(exc)[:200]}); "
                      f"treating it as missing and recomputing it", UnsafeCacheWarning, stacklevel=3)
        return None
    if not (isinstance(blob, dict) and "stamp" in blob):
        warnings.warn(f"results cache: {path} is not a cache entry; treating it as missing and recomputing it",
                      UnsafeCacheWarning, stacklevel=3)
        return None
    return blob


def check_storable(value: object, where: str = "value") -> None:
    """Raise ``TypeError`` unless ``value`` is made of what a safe load rebuilds: None, bools, numbers,
    strings, tensors, lists, tuples and dicts of them, and the dataclasses of :data:`RESULT_TYPES`."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_storable(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_storable(k, f"{where} key")
            check_storable(v, f"{where}[{k!r}]")
    elif type(value) in RESULT_TYPES and dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            check_storable(getattr(value, f.name), f"{where}.{f.name}")
    else:
        raise TypeError(f"the results cache cannot store {where} of type {type(value).__name__}: a safe load rebuilds "
                        f"only plain data, tensors and {[t.__name__ for t in RESULT_TYPES]} (add the type to "
                        f"RESULT_TYPES if it is a plain dataclass of those)")


def _inside(dep: str, root: Path) -> Path | None:
    """``dep`` as a path when it lies inside ``root`` (the cache's folder), else None."""
    try:
        path = Path(dep).resolve()
        return path if path.is_relative_to(root.resolve()) else None
    except (OSError, TypeError, ValueError):
        return None


def _valid(blob: dict, seen: set[str], root: Path) -> bool:
    """Every dependency of ``blob`` lies in ``root``, exists with the recorded stamp and is valid itself."""
    deps = blob.get("deps", [])
    if not isinstance(deps, list):
        return False
    for item in deps:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            return False
        dep_path, stamp = item
        if dep_path in seen:
            continue
        path = _inside(dep_path, root)
        if path is None:
            warnings.warn(f"results cache: an entry names a dependency outside the cache folder {root} "
                          f"({dep_path!r}); it is not followed and the entry is recomputed", UnsafeCacheWarning,
                          stacklevel=4)
            return False
        dep = _load(path)
        if dep is None or dep["stamp"] != stamp or not _valid(dep, seen | {dep_path}, root):
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
    if blob is not None and (blob.get("key") != key or not _valid(blob, {str(path)}, path.parent)):
        blob = None
    if blob is None:
        deps: list[tuple[str, str]] = []
        token = _OPEN.set(_OPEN.get() + (deps,))
        try:
            value = compute()
        finally:
            _OPEN.reset(token)
        check_storable(value)
        blob = {"key": key, "stamp": uuid.uuid4().hex, "deps": deps, "value": value}
        atomic_torch_save(blob, path)
    parents = _OPEN.get()
    if parents:
        parents[-1].append((str(path), blob["stamp"]))
    return blob["value"]
