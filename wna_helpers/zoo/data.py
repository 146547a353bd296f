"""MNIST and Fashion-MNIST, offline first, verified by SHA-256.

The data root is ``$WNA_DATA_DIR`` or ``./data``; it uses torchvision's layout,
``<root>/<Name>/raw/<file>[.gz]``. When the four files are there (gzipped or
extracted) nothing touches the network; each file's decompressed content is
checked against the official SHA-256. Only when files are missing does the
loader download them through :mod:`torchvision.datasets`.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..config import data_root
from ..engine.atomic import atomic_write_bytes

__all__ = ["Dataset", "DATASETS", "dataset_names", "load_dataset", "DataIntegrityError",
           "DatasetNotFoundError", "class_names", "canonical_name"]

_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class _Spec:
    folder: str            # torchvision's class name and folder
    classes: tuple[str, ...]
    sha256: dict[str, str]  # of the decompressed files


DATASETS: dict[str, _Spec] = {
    "mnist": _Spec("MNIST", tuple(str(d) for d in range(10)), {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }),
    "fashion_mnist": _Spec("FashionMNIST", (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"), {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }),
}

_ALIASES = {"fashion-mnist": "fashion_mnist", "fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist"}


class DataIntegrityError(RuntimeError):
    """A dataset file is corrupt, truncated or not the official one."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Dataset:
    """One split of a dataset.

    Attributes:
        images: float32 tensor ``(N, 1, 28, 28)`` in [0, 1].
        labels: int64 tensor ``(N,)``.
        classes: the ten class names.
        name: canonical dataset name.
        split: ``"train"`` or ``"test"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def dataset_names() -> list[str]:
    """Canonical dataset names."""
    return list(DATASETS)


def canonical_name(name: str) -> str:
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {dataset_names()}")
    return key


def class_names(name: str) -> tuple[str, ...]:
    """The ten class names of dataset ``name``."""
    return DATASETS[canonical_name(name)].classes


def _read_verified(raw: Path, fname: str, expected: str) -> bytes:
    """Decompressed bytes of ``fname``, checked against ``expected`` SHA-256."""
    plain, packed = raw / fname, raw / f"{fname}.gz"
    if plain.exists():
        source, payload = plain, plain.read_bytes()
    else:
        source = packed
        try:
            payload = gzip.decompress(packed.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise DataIntegrityError(f"{packed}: cannot decompress ({exc}); the file is corrupt or "
                                     f"truncated: delete it and download it again") from exc
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected:
        raise DataIntegrityError(
            f"{source}: SHA-256 checksum mismatch of the decompressed content "
            f"(expected {expected}, got {digest}); the file is corrupt, truncated or not the "
            f"official release: delete it and download it again")
    if source is packed and os.access(raw, os.W_OK):
        # keep the extracted copy for later loads; written to a temp file then renamed
        atomic_write_bytes(plain, payload)
    return payload


def _parse_idx(payload: bytes, source: str) -> np.ndarray:
    if len(payload) < 8 or payload[:2] != b"\x00\x00" or payload[2] != 0x08:
        raise DataIntegrityError(f"{source}: not an IDX file of unsigned bytes")
    ndim = payload[3]
    dims = np.frombuffer(payload, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    body = np.frombuffer(payload, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataIntegrityError(f"{source}: expected {int(np.prod(dims))} values, found {body.size}")
    return body.reshape(tuple(dims))


def _missing(raw: Path) -> list[str]:
    return [f for f in _FILES if not (raw / f).exists() and not (raw / f"{f}.gz").exists()]


def _download(key: str, root: Path, raw: Path) -> None:
    spec = DATASETS[key]
    import torchvision.datasets as tvd

    try:
        for train in (True, False):
            getattr(tvd, spec.folder)(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise _not_found(key, raw, f"could not be downloaded ({type(exc).__name__}: {exc})") from exc


@lru_cache(maxsize=8)
def _load_arrays(key: str, root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    spec = DATASETS[key]
    raw = Path(root) / spec.folder / "raw"
    prefix = "train" if split == "train" else "t10k"
    arrays = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        fname = f"{prefix}-{kind}"
        arrays.append(_parse_idx(_read_verified(raw, fname, spec.sha256[fname]), str(raw / fname)))
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise DataIntegrityError(f"{raw}: {images.shape[0]} images but {labels.shape[0]} labels")
    return images, labels


def load_dataset(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
                 download: bool = True, limit: int | None = None) -> Dataset:
    """Load MNIST or Fashion-MNIST as tensors.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (``"fashion-mnist"`` and ``"FashionMNIST"`` work too).
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000); default ``"train"``.
        root: data root; default ``$WNA_DATA_DIR`` or ``./data``.
        download: download through torchvision when files are missing; default True.
        limit: keep only the first ``limit`` images; default all.

    Returns:
        A :class:`Dataset`: ``images`` float32 ``(N, 1, 28, 28)`` in [0, 1], ``labels`` int64 ``(N,)``,
        ``classes`` (ten names).

    Raises:
        ValueError: unknown dataset or split.
        DatasetNotFoundError: files missing and not downloadable (names the files, folder and WNA_DATA_DIR).
        DataIntegrityError: a file fails its SHA-256 check or cannot be decompressed.

    Example:
        >>> ds = load_dataset("mnist", "test")
        >>> ds.images.shape, ds.classes[:3]
        (torch.Size([10000, 1, 28, 28]), ('0', '1', '2'))
    """
    key = canonical_name(name)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; valid splits: ['train', 'test']")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    root_path = Path(root).expanduser() if root is not None else data_root()
    raw = root_path / DATASETS[key].folder / "raw"
    if _missing(raw):
        if not download:
            raise _not_found(key, raw, "download=False")
        _download(key, root_path, raw)
    images, labels = _load_arrays(key, str(root_path.resolve()), split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(x, y, DATASETS[key].classes, key, split)


def _not_found(key: str, raw: Path, reason: str) -> DatasetNotFoundError:
    folder = DATASETS[key].folder
    return DatasetNotFoundError(
        f"{folder} files are missing and {reason}.\nPut these four files (gzipped .gz or "
        f"extracted) into {raw}:\n  " + "\n  ".join(f"{f}.gz" for f in _FILES)
        + f"\nor set WNA_DATA_DIR to a folder that holds {folder}/raw/ (missing now: {_missing(raw)}).")
