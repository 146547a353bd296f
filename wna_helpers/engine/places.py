"""Where things live: the device a run uses by default, the dataset root and the cache root.

Each follows an environment variable (``WNA_DEVICE``, ``WNA_DATA_DIR``, ``WNA_CACHE_DIR``), read at
every call, so a notebook or a test can change it.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["default_device", "data_root", "cache_root"]


def default_device() -> torch.device:
    """``$WNA_DEVICE`` if set, else ``cuda`` when available, else ``cpu``."""
    env = os.environ.get("WNA_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_root() -> Path:
    """Dataset root: ``$WNA_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("WNA_DATA_DIR") or "data").expanduser()


def cache_root() -> Path:
    """Trained-model cache: ``$WNA_CACHE_DIR`` or ``~/.cache/wna``."""
    env = os.environ.get("WNA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wna"
