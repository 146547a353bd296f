"""Networks trained the paper's way: Borji & Lin's layers (``paper_cnn``) and their training recipe, several seeds.

The paper trained its network with Adam at a constant learning rate of 1e-3, batch 256, for 15 epochs, some
notebooks with a softmax inside ``forward`` before the cross-entropy (the softmax applied twice). One network
of ours against one of theirs says little either way (the paper's own MNIST runs sent 62.4 % to 91.5 % of the
noise to class 8), so the side-by-side comparison (chapter 8) sets each paper number against the spread over
several networks trained this way, differing only in their seed.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..config import Profile, cache_root, default_device
from ..engine.atomic import remove_orphans
from ..engine.fingerprint import state_digest
from .data import canonical_name, load_dataset
from .models import build_model
from .training import (CACHE_FORMAT, LOSSES, read_checkpoint, software_versions, train, uses_channels_last,
                       write_checkpoint)

__all__ = ["PAPER_RECIPE", "paper_recipe", "paper_recipe_seeds", "paper_recipe_model", "paper_recipe_path"]

#: The paper's training: Adam, learning rate 1e-3 held constant, batch 256, 15 epochs, cross-entropy of the logits.
PAPER_RECIPE: dict[str, object] = {"arch": "paper_cnn", "optimizer": "adam", "lr": 1e-3, "schedule": "constant",
                                   "batch_size": 256, "epochs": 15, "loss": "cross_entropy"}


def paper_recipe_seeds(prof: Profile) -> list[int]:
    """The seeds of the profile's paper-recipe networks: ``prof.paper_seeds`` of them, from ``prof.seed + 100`` on
    (apart from the seeds of the book's models and of the trojan study's)."""
    return [prof.seed + 100 + i for i in range(prof.paper_seeds)]


def paper_recipe(dataset: str, prof: Profile, seed: int, *, loss: str = "cross_entropy") -> dict[str, object]:
    """The full recipe of one paper-recipe network: :data:`PAPER_RECIPE` with the profile's epochs
    (``prof.paper_epochs``) and training subset, the seed, the loss and the layout; what its checkpoint keys on.

    Raises:
        ValueError: an unknown ``loss`` (the message lists :data:`~wna_helpers.zoo.training.LOSSES`).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    return {**PAPER_RECIPE, "format": CACHE_FORMAT, "dataset": canonical_name(dataset), "seed": int(seed),
            "epochs": int(prof.paper_epochs), "train_subset": prof.train_subset, "loss": loss,
            "channels_last": uses_channels_last(build_model("paper_cnn", seed=0))}


def _path(recipe: dict[str, object], cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    return root / "models" / f"paper_recipe-paper_cnn-{recipe['dataset']}-{digest}.pt"


def paper_recipe_path(dataset: str, prof: Profile, seed: int, *, loss: str = "cross_entropy",
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`paper_recipe_model` keeps the network of these arguments (named by its recipe's digest)."""
    return _path(paper_recipe(dataset, prof, seed, loss=loss), cache_dir)


def paper_recipe_model(dataset: str, prof: Profile, seed: int, *, loss: str = "cross_entropy",
                       cache_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                       progress: bool = False) -> tuple[nn.Module, dict[str, object]]:
    """``paper_cnn`` trained on ``dataset`` with the paper's recipe and ``seed``, from the cache or trained now.

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        prof: the resolved profile (its ``paper_epochs`` and ``train_subset``).
        seed: seeds the weights' initialisation and the shuffling (:func:`paper_recipe_seeds` gives the book's).
        loss: ``"cross_entropy"`` (default) or ``"softmax_twice"`` (the paper's softmax inside ``forward``).
        cache_dir: default ``$WNA_CACHE_DIR`` or ``~/.cache/wna``.
        device: default CUDA when present.
        progress: show the training bar; default False.

    Returns:
        ``(model, meta)``: the model returns logits (with ``"softmax_twice"`` too: the softmax belongs to the
        loss), in eval mode on ``device``; ``meta`` holds the recipe, ``test_accuracy``, ``train_seconds`` and
        ``weights_sha256``.

    Example:
        >>> prof = get_profile("quick")
        >>> model, meta = paper_recipe_model("mnist", prof, paper_recipe_seeds(prof)[0])
        >>> meta["batch_size"], meta["schedule"]
        (256, 'constant')
    """
    recipe = paper_recipe(dataset, prof, seed, loss=loss)
    dev = torch.device(device) if device is not None else default_device()
    path = _path(recipe, cache_dir)
    remove_orphans(path)
    model = build_model("paper_cnn", seed=int(seed))
    meta, _ = read_checkpoint(path, recipe, model)
    if meta is None:
        model = build_model("paper_cnn", seed=int(seed))
        train_data = load_dataset(recipe["dataset"], "train", limit=prof.train_subset)
        test_data = load_dataset(recipe["dataset"], "test")
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(int(seed))
            result = train(model, train_data, test_data, epochs=int(recipe["epochs"]),
                           batch_size=int(recipe["batch_size"]), lr=float(recipe["lr"]), seed=int(seed), device=dev,
                           progress=progress, schedule=str(recipe["schedule"]), loss=loss)
        meta = {**recipe, "test_accuracy": result.test_accuracy, "train_seconds": result.seconds,
                "train_size": len(train_data), "versions": software_versions(), "device": str(dev)}
        write_checkpoint(path, model.state_dict(), meta)
    model = model.to(dev).eval()
    return model, {**meta, "weights_sha256": state_digest(model)}
