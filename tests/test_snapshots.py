"""Snapshots through training: train(snapshot_steps=...) and the cached training_snapshots."""
import json
import warnings

import pytest
import torch

import wna_helpers as wna
from wna_helpers.zoo import snapshots, training

from conftest import needs_data

# 512 images in batches of 32: 16 steps per epoch, 32 in all
TINY = wna.PROFILES["quick"].updated(name="snaptiny", train_subset=512, batch_size=32,
                                     epochs={"mnist": 2, "fashion_mnist": 2})
TOTAL = 32


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _boom(*a, **k):
    raise AssertionError("trained although the cache holds the result")


@needs_data
def test_snapshots_do_not_change_training():
    data = wna.load_dataset("mnist", limit=512)
    test = wna.load_dataset("mnist", "test", limit=300)
    runs = []
    for steps in ((), (0, 5, 16, 20, TOTAL, 5)):
        torch.manual_seed(11)
        m = wna.build_model("paper_cnn", seed=1)
        init = {k: v.clone() for k, v in m.state_dict().items()}
        res = wna.train(m, data, test, epochs=2, batch_size=32, seed=3, progress=False, device="cpu",
                        snapshot_steps=steps)
        runs.append((m, init, res, torch.rand(2)))
    (m0, _, r0, after0), (m1, init, r1, after1) = runs
    assert _equal(m0.state_dict(), m1.state_dict())  # bit-identical weights
    assert r0.step_loss == r1.step_loss and r0.epoch_test_accuracy == r1.epoch_test_accuracy
    assert r0.epoch_train_accuracy == r1.epoch_train_accuracy and not m1.training
    assert torch.equal(after0, after1)  # the global generator was not drawn from
    assert r0.snapshots == []
    snaps = r1.snapshots
    assert [s["step"] for s in snaps] == [0, 5, 16, 20, 32]  # sorted, no repeats
    assert [s["epoch"] for s in snaps] == [0.0, 5 / 16, 1.0, 1.25, 2.0]
    assert _equal(snaps[0]["state_dict"], init) and _equal(snaps[-1]["state_dict"], m1.state_dict())
    assert not _equal(snaps[1]["state_dict"], snaps[2]["state_dict"])  # copies, not views of the live weights
    assert snaps[2]["test_accuracy"] == r1.epoch_test_accuracy[0] and snaps[-1]["test_accuracy"] == r1.test_accuracy
    assert snaps[1]["test_accuracy"] == wna.evaluate(wna.model_at("paper_cnn", snaps[1], "cpu"), test)[0]
    assert all(s["state_dict"]["conv1.weight"].device.type == "cpu" for s in snaps)
    json.dumps(training._history(r1))  # the meta's history stays JSON
    assert "snapshots" not in training._history(r1)


@needs_data
def test_bad_steps_raise_before_training(tmp_path, monkeypatch):
    data = wna.load_dataset("mnist", limit=512)
    m = wna.build_model("logreg", seed=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    for bad in ([TOTAL + 1], [-1], [1.5], ["3"], [True], 7, "10"):
        with pytest.raises(ValueError, match="integers from 0"):
            wna.train(m, data, epochs=2, batch_size=32, progress=False, snapshot_steps=bad)
    assert _equal(m.state_dict(), before)
    monkeypatch.setattr(training, "train", _boom)
    with pytest.raises(ValueError, match=f"from 0 .* to {TOTAL}"):
        wna.training_snapshots("logreg", "mnist", TINY, steps=[0, TOTAL + 1], cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        wna.training_snapshots("logreg", "mnist", TINY, steps=[], cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="unknown model"):
        wna.training_snapshots("vgg", "mnist", TINY, cache_dir=tmp_path)
    assert not (tmp_path / "models").exists()
    with pytest.raises(ValueError, match="state_dict"):
        wna.model_at("logreg", {"step": 0})
    with pytest.raises(ValueError, match="do not fit 'paper_cnn'"):
        wna.model_at("paper_cnn", {"state_dict": before})


def test_default_steps():
    assert snapshots.default_snapshot_steps(2, 16) == [0, 10, 16, 30, 32]
    assert snapshots.default_snapshot_steps(4, 469) == [0, 10, 30, 100, 300, 469, 938, 1000, 1407, 1876]
    assert snapshots.default_snapshot_steps(1, 10) == [0, 10]
    with pytest.raises(ValueError, match="positive integers"):
        snapshots.default_snapshot_steps(0, 10)


@needs_data
def test_snapshot_path_is_keyed_by_recipe_and_steps(tmp_path):
    a = wna.snapshot_path("logreg", "mnist", TINY, cache_dir=tmp_path)
    assert a.parent == tmp_path / "models" and a.name.startswith(
        f"logreg-mnist-{wna.zoo.training.recipe_digest('logreg', 'mnist', TINY)}-snapshots-")
    assert a == wna.snapshot_path("logreg", "mnist", TINY.updated(name="renamed"), cache_dir=tmp_path)
    assert a == wna.snapshot_path("logreg", "mnist", TINY, steps=[32, 30, 16, 10, 0, 0], cache_dir=tmp_path)
    assert a != wna.snapshot_path("logreg", "mnist", TINY, steps=[0, 32], cache_dir=tmp_path)
    assert a != wna.snapshot_path("logreg", "mnist", TINY.updated(lr=2e-3), cache_dir=tmp_path)
    assert a != wna.snapshot_path("logreg", "fashion_mnist", TINY, cache_dir=tmp_path)
    assert a != wna.snapshot_path("logreg", "mnist", TINY.updated(seed=1), cache_dir=tmp_path)


@needs_data
def test_training_snapshots_end_at_the_cached_model_and_are_reused(tmp_path, monkeypatch):
    snaps = wna.training_snapshots("logreg", "mnist", TINY, cache_dir=tmp_path, device="cpu", progress=False)
    assert [s["step"] for s in snaps] == [0, 10, 16, 30, 32]
    assert [s["epoch"] for s in snaps] == [0.0, 10 / 16, 1.0, 30 / 16, 2.0]
    assert _equal(snaps[0]["state_dict"], wna.build_model("logreg", seed=TINY.seed).state_dict())
    assert 0 < snaps[0]["test_accuracy"] < snaps[-1]["test_accuracy"] <= 1
    assert wna.snapshot_path("logreg", "mnist", TINY, cache_dir=tmp_path).exists()
    # the checkpoint was written too: get_trained_model does not train again and gives the last snapshot
    with monkeypatch.context() as mp:
        mp.setattr(training, "train", _boom)
        model, meta = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, device="cpu",
                                            progress=False)
        again = wna.training_snapshots("logreg", "mnist", TINY, cache_dir=tmp_path, device="cpu", progress=False)
    assert _equal(model.state_dict(), snaps[-1]["state_dict"]) and meta["test_accuracy"] == snaps[-1]["test_accuracy"]
    assert "snapshots" not in meta["history"] and meta["profile"] == "snaptiny" and meta["train_size"] == 512
    assert len(again) == len(snaps) and all(
        a["step"] == b["step"] and a["test_accuracy"] == b["test_accuracy"] and _equal(a["state_dict"], b["state_dict"])
        for a, b in zip(snaps, again))
    m = wna.model_at("logreg", snaps[1], "cpu")
    assert not m.training and wna.evaluate(m, wna.load_dataset("mnist", "test"))[0] == snaps[1]["test_accuracy"]
    # the same model as get_trained_model trains on its own (in another cache), same meta but for timings
    other = tmp_path / "other"
    model2, meta2 = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=other, device="cpu", progress=False)
    assert _equal(model2.state_dict(), snaps[-1]["state_dict"])
    drop = lambda d: {k: v for k, v in d.items() if k not in ("train_seconds", "history", "versions")}  # noqa: E731
    assert drop(meta2) == drop(meta)
    assert {k: v for k, v in meta2["history"].items() if k != "seconds"} == \
        {k: v for k, v in meta["history"].items() if k != "seconds"}
    # other steps: another file, trained again, and the cached checkpoint is checked, not rewritten
    stamp = wna.checkpoint_path("logreg", "mnist", TINY, tmp_path).stat().st_mtime_ns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        few = wna.training_snapshots("logreg", "mnist", TINY, steps=[3, 32], cache_dir=tmp_path, device="cpu",
                                     progress=False)
    assert [s["step"] for s in few] == [3, 32] and _equal(few[-1]["state_dict"], snaps[-1]["state_dict"])
    assert wna.checkpoint_path("logreg", "mnist", TINY, tmp_path).stat().st_mtime_ns == stamp
    assert len(list((tmp_path / "models").glob("logreg-mnist-*-snapshots-*.pt"))) == 2


@needs_data
def test_training_snapshots_warn_on_a_different_checkpoint_and_a_corrupt_file(tmp_path):
    steps = [0, TOTAL]
    wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, device="cpu", progress=False)
    ckpt = wna.checkpoint_path("logreg", "mnist", TINY, tmp_path)
    blob = torch.load(ckpt, weights_only=True)
    blob["state_dict"]["fc1.bias"] += 1  # as if trained elsewhere
    torch.save(blob, ckpt)
    with pytest.warns(UserWarning, match="differs from the cached model"):
        wna.training_snapshots("logreg", "mnist", TINY, steps=steps, cache_dir=tmp_path, device="cpu",
                               progress=False)
    assert torch.equal(torch.load(ckpt, weights_only=True)["state_dict"]["fc1.bias"], blob["state_dict"]["fc1.bias"])
    path = wna.snapshot_path("logreg", "mnist", TINY, steps=steps, cache_dir=tmp_path)
    path.write_bytes(b"half a file")
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning) as record:
        snaps = wna.training_snapshots("logreg", "mnist", TINY, steps=steps, cache_dir=tmp_path, device="cpu",
                                       progress=False)
    messages = " | ".join(str(w.message) for w in record)
    assert "snapshot file" in messages and "unreadable" in messages and "replacing it" in messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, _ = wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, device="cpu", progress=False)
        wna.training_snapshots("logreg", "mnist", TINY, steps=steps, cache_dir=tmp_path, device="cpu",
                               progress=False)
    assert _equal(model.state_dict(), snaps[-1]["state_dict"])
