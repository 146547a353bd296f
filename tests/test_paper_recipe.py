"""Networks trained the paper's way (wna_helpers.zoo.paper_recipe) and the paper's softmax-twice loss."""
from __future__ import annotations

import math

import pytest
import torch

import wna_helpers as wna
from wna_helpers.zoo import paper_recipe
from wna_helpers.zoo.data import Dataset

from conftest import needs_data

TINY = wna.PROFILES["quick"].updated(name="tiny", train_subset=512, paper_epochs=1, paper_seeds=2)


def _toy(n: int = 256) -> Dataset:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 10
    images = torch.rand(n, 1, 28, 28, generator=gen) * 0.1
    images[torch.arange(n), 0, labels, labels] = 1.0  # class c: one bright pixel at (c, c)
    return Dataset(images=images, labels=labels, classes=tuple(str(c) for c in range(10)), name="toy", split="train")


def test_softmax_twice_cannot_fall_below_its_floor_while_plain_cross_entropy_does():
    """The cross-entropy of a softmax output is at least log(1 + 9/e) ~ 1.461 for ten classes (the softmax of a
    one-hot probability vector), the floor PAPER.md reports for the paper's notebooks."""
    floor = math.log(1 + 9 / math.e)
    res = {}
    for loss in ("cross_entropy", "softmax_twice"):
        model = wna.build_model("logreg", seed=0)
        res[loss] = wna.train(model, _toy(), epochs=30, batch_size=64, lr=0.05, schedule="constant", loss=loss,
                              progress=False, log_every=1)
    assert min(res["softmax_twice"].step_loss) >= floor - 1e-4
    assert min(res["cross_entropy"].step_loss) < floor - 0.5  # the plain loss goes well below it
    with pytest.raises(ValueError, match=r"loss must be one of \['cross_entropy', 'softmax_twice'\], got 'mse'"):
        wna.train(wna.build_model("logreg", seed=0), _toy(), loss="mse", progress=False)


def test_the_recipe_is_the_papers_with_the_profiles_epochs_and_seeds():
    r = paper_recipe.paper_recipe("mnist", TINY, 7)
    assert {k: r[k] for k in ("arch", "optimizer", "lr", "schedule", "batch_size", "loss")} == {
        "arch": "paper_cnn", "optimizer": "adam", "lr": 1e-3, "schedule": "constant", "batch_size": 256,
        "loss": "cross_entropy"}
    assert r["epochs"] == 1 and r["seed"] == 7 and r["train_subset"] == 512
    assert wna.PROFILES["full"].paper_epochs == 15 and wna.PROFILES["full"].paper_seeds >= 3
    assert wna.paper_recipe_seeds(TINY) == [TINY.seed + 100, TINY.seed + 101]
    with pytest.raises(ValueError, match="loss must be one of"):
        paper_recipe.paper_recipe("mnist", TINY, 7, loss="hinge")


@needs_data
def test_paper_recipe_models_are_cached_per_seed_and_loss(tmp_path):
    m0, meta0 = wna.paper_recipe_model("mnist", TINY, 100, cache_dir=tmp_path, device="cpu")
    again, meta_again = wna.paper_recipe_model("mnist", TINY, 100, cache_dir=tmp_path, device="cpu")
    assert meta_again["weights_sha256"] == meta0["weights_sha256"]  # loaded, not retrained
    assert meta0["test_accuracy"] > 0.3 and not m0.training
    files = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert len(files) == 1 and files[0].startswith("paper_recipe-paper_cnn-mnist-")
    _, meta1 = wna.paper_recipe_model("mnist", TINY, 101, cache_dir=tmp_path, device="cpu")
    _, twice = wna.paper_recipe_model("mnist", TINY, 100, loss="softmax_twice", cache_dir=tmp_path, device="cpu")
    assert len({meta0["weights_sha256"], meta1["weights_sha256"], twice["weights_sha256"]}) == 3
    assert twice["loss"] == "softmax_twice" and len(list((tmp_path / "models").iterdir())) == 3
