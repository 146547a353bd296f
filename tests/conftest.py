"""Test set-up: the offline data copy, the quick profile and a private model cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

os.environ.setdefault("WNA_PROFILE", "quick")
os.environ.setdefault("WNA_DEVICE", "cpu")
if "WNA_DATA_DIR" not in os.environ and SHARED.is_dir():
    os.environ["WNA_DATA_DIR"] = str(SHARED)
os.environ.setdefault("WNA_CACHE_DIR", str(ROOT / ".cache" / "wna"))


def data_available() -> bool:
    root = Path(os.environ.get("WNA_DATA_DIR", "data"))
    return (root / "MNIST" / "raw").is_dir() and (root / "FashionMNIST" / "raw").is_dir()


needs_data = pytest.mark.skipif(not data_available(), reason="MNIST/Fashion-MNIST not found in WNA_DATA_DIR")


@pytest.fixture(autouse=True)
def _seeded():
    from wna_helpers.engine.speed import forget_compile_history
    torch.manual_seed(0)
    forget_compile_history()   # compile=None weighs what the process compiled before: each test starts fresh
    yield
