import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

import wna_helpers as wna
from wna_helpers.zoo import data as wdata

from conftest import needs_data

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@needs_data
@pytest.mark.parametrize("name,split,n,counts", [
    ("mnist", "train", 60000, MNIST_TRAIN), ("mnist", "test", 10000, MNIST_TEST),
    ("fashion_mnist", "train", 60000, [6000] * 10), ("fashion_mnist", "test", 10000, [1000] * 10)])
def test_shared_copy(name, split, n, counts):
    ds = wna.load_dataset(name, split)
    assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (n,)
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
    assert torch.bincount(ds.labels, minlength=10).tolist() == counts
    assert len(ds.classes) == 10


def test_class_names():
    assert wna.class_names("mnist") == tuple("0123456789")
    assert wna.class_names("fashion-mnist")[0] == "T-shirt/top" and wna.class_names("FashionMNIST")[9] == "Ankle boot"


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*mnist.*fashion_mnist"):
        wna.load_dataset("cifar")


def test_bad_split_and_limit():
    with pytest.raises(ValueError, match="split"):
        wna.load_dataset("mnist", "val")
    with pytest.raises(ValueError, match="limit"):
        wna.load_dataset("mnist", limit=0)


def _copy_raw(tmp_path: Path, name: str = "MNIST") -> Path:
    src = Path(os.environ["WNA_DATA_DIR"]) / name / "raw"
    dst = tmp_path / name / "raw"
    dst.mkdir(parents=True)
    for f in FILES:
        shutil.copy(src / f"{f}.gz", dst / f"{f}.gz")
    return dst


@needs_data
def test_corrupted_copy_names_file_and_checksum(tmp_path):
    raw = _copy_raw(tmp_path)
    payload = bytearray(gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    payload[100] = (payload[100] + 1) % 10  # a wrong label, still a valid IDX file
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(wna.DataIntegrityError, match=r"t10k-labels-idx1-ubyte.*SHA-256 checksum mismatch"):
        wna.load_dataset("mnist", "test", root=tmp_path, download=False)
    assert not (raw / "t10k-labels-idx1-ubyte").exists()  # nothing wrong left behind as extracted


@needs_data
def test_truncated_gzip(tmp_path):
    raw = _copy_raw(tmp_path)
    blob = (raw / "t10k-images-idx3-ubyte.gz").read_bytes()
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(wna.DataIntegrityError, match="t10k-images-idx3-ubyte.gz.*corrupt or truncated"):
        wna.load_dataset("mnist", "test", root=tmp_path, download=False)


@needs_data
def test_corrupted_extracted_file(tmp_path):
    raw = _copy_raw(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x02" + b"\x01\x02")
    with pytest.raises(wna.DataIntegrityError, match="t10k-labels-idx1-ubyte.*checksum"):
        wna.load_dataset("mnist", "test", root=tmp_path, download=False)


@needs_data
def test_extraction_is_atomic(tmp_path, monkeypatch):
    raw = _copy_raw(tmp_path)
    real_replace = os.replace

    def crash(src, dst):
        raise KeyboardInterrupt("killed mid-extraction")

    monkeypatch.setattr(wdata.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        wna.load_dataset("mnist", "test", root=tmp_path)
    monkeypatch.setattr(wdata.os, "replace", real_replace)
    assert not any(p.name.endswith(".tmp") for p in raw.iterdir())
    assert not (raw / "t10k-images-idx3-ubyte").exists()
    ds = wna.load_dataset("mnist", "test", root=tmp_path)
    assert (raw / "t10k-images-idx3-ubyte").exists() and len(ds) == 10000
    wdata._load_arrays.cache_clear()
    assert torch.equal(wna.load_dataset("mnist", "test", root=tmp_path).images, ds.images)  # from the extracted file


def test_offline_error_names_files_folder_and_env(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "FashionMNIST", no_network)
    with pytest.raises(wna.DatasetNotFoundError) as err:
        wna.load_dataset("fashion_mnist", root=tmp_path)
    msg = str(err.value)
    for f in FILES:
        assert f"{f}.gz" in msg
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and "WNA_DATA_DIR" in msg and "unreachable" in msg
    with pytest.raises(wna.DatasetNotFoundError, match="download=False"):
        wna.load_dataset("mnist", root=tmp_path, download=False)
