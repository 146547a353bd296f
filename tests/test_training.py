import json
import warnings
from dataclasses import replace

import pytest
import torch

import wna_helpers as wna
from wna_helpers import training

from conftest import needs_data

TINY = replace(wna.PROFILES["quick"], name="tiny", train_subset=600, batch_size=50)


@needs_data
def test_quick_training_reaches_accuracy():
    """The quick profile (4,000 images, one epoch) gets paper_cnn past 85% on MNIST."""
    prof = wna.get_profile("quick")
    model = wna.build_model("paper_cnn", seed=prof.seed)
    res = wna.train(model, wna.load_dataset("mnist", limit=prof.train_subset), wna.load_dataset("mnist", "test"),
                    epochs=1, batch_size=prof.batch_size, lr=prof.lr, seed=prof.seed, progress=False)
    assert res.test_accuracy >= 0.85
    assert len(res.epoch_test_accuracy) == 1 and res.step_loss[0] > res.step_loss[-1]
    assert not model.training


@needs_data
def test_training_is_deterministic_on_cpu():
    data = wna.load_dataset("mnist", limit=300)
    states = []
    for _ in range(2):
        m = wna.build_model("lenet", seed=3)
        wna.train(m, data, epochs=1, batch_size=50, seed=7, progress=False, device="cpu")
        states.append(m.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@needs_data
def test_cache_reuses(tmp_path, monkeypatch):
    m1, meta1 = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    path = wna.checkpoint_path("logreg", "mnist", TINY, tmp_path)
    assert path.exists() and meta1["profile"] == "tiny" and meta1["train_size"] == 600
    assert {"torch", "torchvision"} <= set(meta1["versions"]) and 0 < meta1["test_accuracy"] <= 1

    def boom(*a, **k):
        raise AssertionError("retrained although the checkpoint matches")

    monkeypatch.setattr(training, "train", boom)
    m2, meta2 = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    assert meta2 == meta1
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


@needs_data
def test_cache_retrains_on_mismatch_and_corruption(tmp_path):
    _, meta = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    path = wna.checkpoint_path("logreg", "mnist", TINY, tmp_path)
    blob = torch.load(path, weights_only=True)
    bad = json.loads(blob["meta"])
    bad["epochs"] = 99
    torch.save({"state_dict": blob["state_dict"], "meta": json.dumps(bad)}, path)
    with pytest.warns(UserWarning, match="another recipe"):
        _, meta2 = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    assert meta2["epochs"] == 1
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        _, meta3 = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    assert meta3["test_accuracy"] == meta["test_accuracy"]  # seeded: the same model again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)


@needs_data
def test_cache_survives_crash_mid_write(tmp_path, monkeypatch):
    real_save = torch.save

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(training.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(training.torch, "save", real_save)
    path = wna.checkpoint_path("logreg", "mnist", TINY, tmp_path)
    assert not path.exists() and not list(path.parent.glob("*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no corrupt file to warn about
        _, meta = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    assert path.exists() and meta["test_accuracy"] > 0.1  # a trained model, better than chance


def test_profiles():
    assert wna.get_profile("quick").train_subset and wna.get_profile("full").train_subset is None
    assert wna.get_profile("full").epochs_for("logreg", "mnist") >= wna.get_profile("full").epochs_for("net3", "mnist")
    with pytest.raises(ValueError, match="unknown profile 'huge'.*full.*quick"):
        wna.get_profile("huge")
    with pytest.raises(ValueError, match="unknown model"):
        wna.get_trained_model("vgg", "mnist", TINY)
