import json
import warnings
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import wna_helpers as wna
from wna_helpers.zoo import training

from conftest import needs_data

TINY = wna.PROFILES["quick"].updated(name="tiny", train_subset=600, batch_size=50)


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
    # STA samples per device: a CPU's n_sta; on CUDA n_sta_gpu, else the CI count n_noise_gpu
    full, cuda = wna.get_profile("full"), torch.device("cuda")   # a device name only: no GPU needed
    assert full.sta_samples("paper_cnn", "cpu") == 100_000 and full.sta_samples("net3", "cpu") == 50_000
    assert full.sta_samples("paper_cnn", cuda) == 1_000_000 and full.noise_samples("paper_cnn", cuda) == 10_000_000
    quick = wna.get_profile("quick")
    assert quick.n_sta_gpu is None and quick.sta_samples("lenet", cuda) == quick.noise_samples("lenet", cuda)


@needs_data
def test_training_leaves_the_global_generator_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    wna.get_trained_model("logreg", "mnist", TINY, cache_dir=tmp_path, progress=False)
    assert torch.equal(torch.rand(3), expected)


def _train_worker(rank, world, init, cache, log):
    import wna_helpers.zoo.training as tr
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    real = tr.train

    def counted(*a, **k):
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        return real(*a, **k)
    tr.train = counted
    try:
        _, meta = tr.get_trained_model("logreg", "mnist", TINY, cache_dir=cache, progress=False)
        with open(log, "a") as f:
            f.write(f"acc {rank} {meta['test_accuracy']}\n")
    finally:
        dist.destroy_process_group()


@needs_data
def test_under_torchrun_rank_zero_trains_and_the_others_load(tmp_path):
    log = tmp_path / "calls.txt"
    mp.start_processes(_train_worker, args=(2, f"file://{tmp_path / 'rdv'}", str(tmp_path), str(log)), nprocs=2,
                       join=True, start_method="spawn")
    lines = log.read_text().split()
    trained_by = [x for x in log.read_text().splitlines() if not x.startswith("acc")]
    assert trained_by == ["0"], lines  # one training, by rank 0
    accs = {x.split()[1]: x.split()[2] for x in log.read_text().splitlines() if x.startswith("acc")}
    assert accs["0"] == accs["1"]


def test_checkpoint_path_is_keyed_by_the_recipe_not_the_name(tmp_path):
    a = wna.checkpoint_path("logreg", "mnist", TINY, tmp_path)
    assert a == wna.checkpoint_path("logreg", "mnist", TINY.updated(name="renamed"), tmp_path)
    assert a != wna.checkpoint_path("logreg", "mnist", TINY.updated(lr=2e-3), tmp_path)
    assert a != wna.checkpoint_path("logreg", "mnist", TINY.updated(epochs={"mnist": 2, "fashion_mnist": 1}), tmp_path)
    assert a == wna.checkpoint_path("logreg", "mnist", TINY.updated(n_noise={"default": 7}), tmp_path)
