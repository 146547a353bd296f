"""Snapshots of a registry model through its training, cached.

:func:`training_snapshots` trains (architecture, dataset) with a profile's recipe exactly as
:func:`~wna_helpers.zoo.training.get_trained_model` does and records the weights after chosen optimizer
steps, so that its last snapshot is the profile's cached model; :func:`model_at` builds a model
from a snapshot. The snapshots of one recipe and one list of steps live in one file next to the
model checkpoints (see :func:`snapshot_path`).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from . import training
from ..engine.atomic import atomic_torch_save
from ..config import Profile, cache_root, default_device, get_profile
from .data import Dataset, canonical_name, load_dataset
from .models import build_model

__all__ = ["training_snapshots", "model_at", "snapshot_path", "default_snapshot_steps", "DEFAULT_STEPS",
           "SNAPSHOT_FORMAT"]

#: Early optimizer steps recorded by default (those below the total), besides the end of every epoch.
DEFAULT_STEPS: tuple[int, ...] = (0, 10, 30, 100, 300, 1000)
#: Bumped whenever what a snapshot file holds changes, so that old files are recomputed.
SNAPSHOT_FORMAT = 1


def default_snapshot_steps(epochs: int, steps_per_epoch: int) -> list[int]:
    """The steps :func:`training_snapshots` records by default.

    Args:
        epochs: training epochs (at least 1).
        steps_per_epoch: optimizer steps per epoch (at least 1).

    Returns:
        :data:`DEFAULT_STEPS` below ``epochs * steps_per_epoch``, plus the end of every epoch, sorted.

    Raises:
        ValueError: ``epochs`` or ``steps_per_epoch`` not a positive integer.

    Example:
        >>> default_snapshot_steps(4, 469)
        [0, 10, 30, 100, 300, 469, 938, 1000, 1407, 1876]
    """
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (epochs, steps_per_epoch)):
        raise ValueError(f"epochs and steps_per_epoch must be positive integers, got {epochs!r} and "
                         f"{steps_per_epoch!r}")
    total = epochs * steps_per_epoch
    return sorted({s for s in DEFAULT_STEPS if s < total} | set(range(steps_per_epoch, total + 1, steps_per_epoch)))


def _plan(arch: str, dataset: str, prof: Profile,
          steps: Sequence[int] | None) -> tuple[list[int], int, Dataset]:
    """``(steps checked and sorted, total optimizer steps, training data)`` of the profile's recipe."""
    train_data = load_dataset(dataset, "train", limit=prof.train_subset)
    epochs = prof.epochs_for(arch, dataset)
    per_epoch = (len(train_data) + prof.batch_size - 1) // prof.batch_size
    total = epochs * per_epoch
    if steps is None:
        return default_snapshot_steps(epochs, per_epoch), total, train_data
    checked = training._snapshot_steps(steps, total)  # ValueError, before any training
    if not checked:
        raise ValueError(f"steps must name at least one optimizer step from 0 to {total}, got {steps!r}")
    return checked, total, train_data


def _path(arch: str, dataset: str, prof: Profile, steps: list[int],
          cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    key = json.dumps({"format": SNAPSHOT_FORMAT, "steps": steps}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return root / "models" / f"{arch}-{dataset}-{training.recipe_digest(arch, dataset, prof)}-snapshots-{digest}.pt"


def snapshot_path(arch: str, dataset: str, profile: Profile | str | None = None, *,
                  steps: Sequence[int] | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`training_snapshots` keeps the snapshots of (arch, dataset, profile, steps).

    The name holds the recipe's digest (:func:`~wna_helpers.zoo.training.recipe_digest`: profiles with
    the same training settings share it) and a digest of the checked, sorted steps (the default
    steps spelt out give the same file).

    Args:
        arch: registry name.
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        profile: a :class:`~wna_helpers.config.Profile` or its name; default ``$WNA_PROFILE``.
        steps: optimizer steps; default :func:`default_snapshot_steps` of the recipe.
        cache_dir: default ``$WNA_CACHE_DIR`` or ``~/.cache/wna``.

    Returns:
        ``<cache_dir>/models/<arch>-<dataset>-<recipe digest>-snapshots-<steps digest>.pt``.

    Raises:
        ValueError: unknown architecture or dataset, or a step that is not an integer from 0 to the
            number of optimizer steps of the recipe.

    Example:
        >>> snapshot_path("paper_cnn", "mnist", "full", cache_dir="/tmp/wna").name  # doctest: +ELLIPSIS
        'paper_cnn-mnist-...-snapshots-....pt'
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    dataset = canonical_name(dataset)
    build_model(arch, seed=prof.seed)  # validates arch
    checked, _, _ = _plan(arch, dataset, prof, steps)
    return _path(arch, dataset, prof, checked, cache_dir)


def training_snapshots(arch: str, dataset: str, profile: Profile | str | None = None, *,
                       steps: Sequence[int] | None = None, cache_dir: str | os.PathLike | None = None,
                       device: torch.device | str | None = None, progress: bool = True) -> list[dict[str, object]]:
    """The weights of (arch, dataset) at several points of its training with ``profile``'s recipe, cached.

    Trains exactly as :func:`~wna_helpers.zoo.training.get_trained_model` (same data, epochs, learning
    rate, batch size and seeding; snapshots do not change training), so a snapshot after the last
    step holds the profile's model. When that model's checkpoint is missing (or unusable) it is
    written too, the same file and meta ``get_trained_model`` would write, so it does not train
    again; when it is cached, the last snapshot is compared with it and a ``UserWarning`` says
    when they differ (a checkpoint trained on another device, say). The snapshots are stored in one
    file (:func:`snapshot_path`, written atomically) keyed by the recipe and the steps; a corrupt or
    mismatched file is recomputed with a warning. Under ``torch.distributed`` rank 0 trains while
    the other ranks wait, then they load its file.

    Args:
        arch: registry name (see :func:`~wna_helpers.zoo.models.model_names`).
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        profile: a :class:`~wna_helpers.config.Profile` or its name; default ``$WNA_PROFILE``.
        steps: optimizer steps after which the weights are recorded (0: the initial weights);
            default :func:`default_snapshot_steps`: 0, 10, 30, 100, 300, 1000 where below the
            total, and the end of every epoch.
        cache_dir: default ``$WNA_CACHE_DIR`` or ``~/.cache/wna``.
        device: where training runs; default CUDA when present.
        progress: show the training bar; default True.

    Returns:
        One dict per step, in step order: ``step`` (int), ``epoch`` (``step / steps_per_epoch``,
        float), ``test_accuracy`` (on the whole test set) and ``state_dict`` (CPU tensors; see
        :func:`model_at`).

    Raises:
        ValueError: unknown architecture, dataset or profile, or a step that is not an integer from 0
            to the number of optimizer steps (raised before training).

    Example:
        >>> snaps = training_snapshots("paper_cnn", "mnist", "full")
        >>> [(s["step"], round(s["test_accuracy"], 3)) for s in snaps][:2]  # doctest: +SKIP
        [(0, 0.098), (10, 0.704)]
        >>> model = model_at("paper_cnn", snaps[-1])  # the book's model
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    dataset = canonical_name(dataset)
    build_model(arch, seed=prof.seed)  # validates arch first (seeded: the global generator is not drawn from)
    checked, total, train_data = _plan(arch, dataset, prof, steps)
    device = torch.device(device) if device is not None else default_device()
    path = _path(arch, dataset, prof, checked, cache_dir)
    args = (arch, dataset, prof, checked, total, train_data, path, cache_dir, device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            out = _load_or_record(*args, progress)
        dist.barrier()  # the others wait for rank 0's file, then load it
        if dist.get_rank() != 0:
            out = _load_or_record(*args, False)
        return out
    return _load_or_record(*args, progress)


def _read_snapshots(path: Path, recipe: dict[str, object],
                    steps: list[int]) -> tuple[list[dict[str, object]] | None, dict[str, object] | None]:
    """``(snapshots, checkpoint meta)`` of a usable file, else ``(None, None)`` (with a warning if it exists)."""
    if not path.exists():
        return None, None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(blob["meta"])
        want = {**recipe, "steps": steps, "snapshot_format": SNAPSHOT_FORMAT}
        snaps = blob["snapshots"]
        if {k: meta.get(k) for k in want} == want and [s["step"] for s in snaps] == steps \
                and all(isinstance(s["state_dict"], dict) for s in snaps):
            return snaps, meta["checkpoint_meta"]
        problem = (f"was recorded with other settings "
                   f"({ {k: meta.get(k) for k in want if meta.get(k) != want[k]} })")
    except Exception as exc:  # corrupt, truncated, or not ours
        problem = f"is unreadable ({type(exc).__name__}: {exc})"
    warnings.warn(f"snapshot file {path} {problem}; recomputing", stacklevel=4)
    return None, None


def _sync_checkpoint(arch: str, dataset: str, prof: Profile, cache_dir: str | os.PathLike | None,
                     state: dict[str, torch.Tensor], checkpoint_meta: dict[str, object]) -> None:
    """Write the profile's checkpoint from the final weights ``state`` if it is missing or unusable,
    else warn if the cached model differs from them."""
    path = training.checkpoint_path(arch, dataset, prof, cache_dir)
    cached = build_model(arch, seed=prof.seed)
    meta, problem = training.read_checkpoint(path, training._recipe(arch, dataset, prof), cached)
    if meta is None:
        if problem is not None:
            warnings.warn(f"checkpoint {path} {problem}; replacing it with the model trained for the snapshots",
                          stacklevel=4)
        training.write_checkpoint(path, state, checkpoint_meta)
        return
    ref = cached.state_dict()
    if ref.keys() != state.keys() or not all(torch.equal(ref[k], state[k].cpu()) for k in ref):
        warnings.warn(f"the last snapshot of {arch} on {dataset} differs from the cached model {path} (trained "
                      f"on {meta.get('device')}, the snapshots on {checkpoint_meta.get('device')}): the "
                      f"snapshots do not end at the model the book uses", stacklevel=4)


def _load_or_record(arch: str, dataset: str, prof: Profile, steps: list[int], total: int, train_data: Dataset,
                    path: Path, cache_dir: str | os.PathLike | None, device: torch.device,
                    progress: bool) -> list[dict[str, object]]:
    recipe = training._recipe(arch, dataset, prof)
    snaps, checkpoint_meta = _read_snapshots(path, recipe, steps)
    if snaps is not None:
        if snaps[-1]["step"] == total:
            _sync_checkpoint(arch, dataset, prof, cache_dir, snaps[-1]["state_dict"], checkpoint_meta)
        return snaps
    model = build_model(arch, seed=prof.seed)
    result, checkpoint_meta = training.train_recipe(model, arch, dataset, prof, device, progress,
                                                     train_data=train_data, snapshot_steps=steps)
    _sync_checkpoint(arch, dataset, prof, cache_dir, model.state_dict(), checkpoint_meta)
    meta = {**recipe, "steps": steps, "snapshot_format": SNAPSHOT_FORMAT, "profile": prof.name,
            "checkpoint_meta": checkpoint_meta}
    atomic_torch_save({"meta": json.dumps(meta), "snapshots": result.snapshots}, path)
    return result.snapshots


def model_at(arch: str, snapshot: dict[str, object], device: torch.device | str | None = None) -> nn.Module:
    """The registry model ``arch`` with the weights of one snapshot.

    Args:
        arch: the registry name the snapshots were trained for.
        snapshot: one item of :func:`training_snapshots` (or of ``TrainResult.snapshots``).
        device: default CUDA when present.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        ValueError: unknown ``arch``, a ``snapshot`` without a ``state_dict``, or weights of another
            architecture.

    Example:
        >>> snaps = training_snapshots("paper_cnn", "mnist", "full")
        >>> model_at("paper_cnn", snaps[0]).conv1.weight.shape
        torch.Size([20, 1, 5, 5])
    """
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("state_dict"), dict):
        raise ValueError(f"snapshot must be a dict with a 'state_dict' (an item of training_snapshots), "
                         f"got {type(snapshot).__name__}")
    model = build_model(arch, seed=0)  # seeded: the global generator is not drawn from
    try:
        model.load_state_dict(snapshot["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"the snapshot's weights do not fit {arch!r}: {exc}") from None
    device = torch.device(device) if device is not None else default_device()
    return model.to(device).eval()
