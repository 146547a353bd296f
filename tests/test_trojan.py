"""The trojan attack's pieces and the detection scores, on tiny data with known answers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wna_helpers.zoo.data import Dataset
from wna_helpers.applications.trojan import (mean_input_gradient, roc_auc, scan_score, stamp_trigger, trigger_mask, trigger_score,
                                trojan_dataset, trojan_metrics, window_mask)


def _toy(n: int = 60, seed: int = 0) -> Dataset:
    """Images whose label c is written as a bright pixel at (20, c); the rest dim noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    images[torch.arange(n), 0, 20, labels] = 1.0
    return Dataset(images, labels, tuple(str(i) for i in range(10)), "toy", "test")


class _Reader(nn.Module):
    """Reads the label pixel; the target logit also reads the paper's trigger pixels (a planted trojan)."""

    def __init__(self, target: int = 9, position=(1, 21)):
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.target = target
        self.register_buffer("trig", torch.zeros(28, 28))
        r, c = position
        self.trig[r:r + 6, c:c + 6] = trigger_mask().float() / trigger_mask().sum()

    def forward(self, x):
        x = self.drop(x)
        out = x[:, 0, 20, :10].clone()
        out[:, self.target] = out[:, self.target] + 3.0 * (x[:, 0] * self.trig).sum((1, 2))
        return out


def test_trigger_mask_is_the_papers():
    m = trigger_mask()
    ref = torch.zeros(28, 28, dtype=torch.bool)           # the notebook's cell 6, as slices
    ref[1:3, 21:27] = True
    ref[5:7, 21:27] = True
    ref[3:5, 21:23] = True
    assert m.dtype == torch.bool and m.shape == (6, 6)
    assert torch.equal(m, ref[1:7, 21:27]) and int(ref.sum()) == 28
    e = trigger_mask("E")
    assert e[0].all() and e[2].all() and e[5].all() and e[:, 0].all() and int(e.sum()) == 21
    assert int(trigger_mask("square", 4).sum()) == 16
    with pytest.raises(ValueError, match="shape"):
        trigger_mask("X")
    with pytest.raises(ValueError, match="size"):
        trigger_mask(size=2)


def test_stamp_trigger_clips_and_changes_only_the_trigger():
    x = torch.rand(5, 2, 28, 28, generator=torch.Generator().manual_seed(1))
    before = x.clone()
    y = stamp_trigger(x, position=(10, 3), value=0.6)
    assert torch.equal(x, before)                          # a copy
    on = torch.zeros(28, 28, dtype=torch.bool)
    on[10:16, 3:9] = trigger_mask()
    torch.testing.assert_close(y[..., on], (x[..., on] + 0.6).clamp(0, 1))
    assert torch.equal(y[..., ~on], x[..., ~on])
    assert float(y.max()) <= 1.0 and bool((y[..., on] == 1.0).any())
    assert torch.equal(stamp_trigger(x, value=-5.0)[..., 1:7, 21:27][..., trigger_mask()],
                       torch.zeros(5, 2, 28))             # clipped at 0
    sq = stamp_trigger(torch.zeros(1, 1, 8, 8), position=(2, 2), mask=torch.ones(6, 6))
    assert int(sq.sum()) == 36 and float(sq[0, 0, 2:8, 2:8].min()) == 1.0
    for bad in [(23, 21), (1, 23), (-1, 0), (1,)]:
        with pytest.raises(ValueError, match="position|fit"):
            stamp_trigger(x, position=bad)
    with pytest.raises(ValueError, match="images"):
        stamp_trigger(torch.zeros(28, 28))


def test_trojan_dataset_relabels_exactly_count_source_images():
    data = _toy(80)
    images, labels = data.images.clone(), data.labels.clone()
    out = trojan_dataset(data, source=3, target=7, count=4, position=(2, 2))
    assert torch.equal(data.images, images) and torch.equal(data.labels, labels)   # untouched
    first = torch.nonzero(labels == 3).flatten()[:4]
    changed = torch.nonzero(out.labels != labels).flatten()
    assert torch.equal(changed, first) and bool((out.labels[first] == 7).all())
    torch.testing.assert_close(out.images[first], stamp_trigger(images[first], position=(2, 2)))
    rest = torch.ones(80, dtype=torch.bool)
    rest[first] = False
    assert torch.equal(out.images[rest], images[rest])
    assert (out.classes, out.name, out.split) == (data.classes, data.name, data.split)
    n3 = int((labels == 3).sum())
    with pytest.raises(ValueError, match="count"):
        trojan_dataset(data, source=3, target=7, count=n3 + 1)
    with pytest.raises(ValueError, match="different"):
        trojan_dataset(data, source=3, target=3, count=1)
    with pytest.raises(ValueError, match="Dataset"):
        trojan_dataset(images, count=1)
    # the control: the same images relabelled, no trigger
    plain = trojan_dataset(data, source=3, target=7, count=4, position=(2, 2), stamp=False)
    assert torch.equal(plain.labels, out.labels) and torch.equal(plain.images, images)


def test_trojan_metrics_on_a_planted_trojan():
    data = _toy(90, seed=2)
    i0 = int(torch.nonzero(data.labels == 3)[0])
    data.images[i0, 0, 20, 3], data.images[i0, 0, 20, 4] = 0.0, 1.0   # one clean error: a 3 called 4
    model = _Reader().train()
    flags = {m: m.training for m in model.modules()}
    n8 = int((data.labels == 8).sum())
    out = trojan_metrics(model, data, source=8, target=9, position=(1, 21), batch_size=7)
    assert {m: m.training for m in model.modules()} == flags
    assert out["n_source"] == n8 and n8 > 0
    assert out["clean_accuracy"] == pytest.approx(89 / 90)
    assert out["attack_success"] == 1.0
    assert out["triggered_accuracy"] == pytest.approx((89 - n8) / 90)
    assert trojan_metrics(model, data, source=8, target=9, position=(1, 21), batch_size=1000) == out
    # the trigger elsewhere does nothing
    assert trojan_metrics(model, data, source=8, target=9, position=(5, 3))["attack_success"] == 0.0


def test_window_and_scores_find_a_planted_window():
    w = window_mask((12, 12), (3, 5))
    assert w.dtype == torch.bool and int(w.sum()) == 36 and bool(w[3:9, 5:11].all())
    with pytest.raises(ValueError, match="fit"):
        window_mask((12, 12), (7, 0))
    m = torch.zeros(12, 12, dtype=torch.float64)
    m[3:9, 5:11] = 2.0
    assert float(trigger_score(m, w)) == pytest.approx(2.0)
    score, pos = scan_score(m)
    assert pos.tolist() == [3, 5] and float(score) == pytest.approx(2.0 - 72 / 144)
    # NaN pixels ignored by trigger_score, counted as 0 by scan_score
    m2 = m.clone()
    m2[0, 0] = m2[4, 6] = math.nan
    m2[0, 1] = 1.0
    assert float(trigger_score(m2, w)) == pytest.approx(2.0 - 1.0 / 107)
    assert scan_score(m2).position.tolist() == [3, 5]
    # a stack of maps: one score and position each; a planted window in noise is found
    g = torch.Generator().manual_seed(3)
    stack = torch.randn(4, 1, 12, 12, generator=g)
    for i, (r, c) in enumerate([(0, 0), (6, 6), (2, 4), (5, 1)]):
        stack[i, 0, r:r + 6, c:c + 6] += 3.0
    res = scan_score(stack)
    assert res.score.shape == (4, 1) and res.position.shape == (4, 1, 2)
    assert res.position[:, 0].tolist() == [[0, 0], [6, 6], [2, 4], [5, 1]]
    assert trigger_score(stack, window_mask((12, 12), (6, 6))).shape == (4, 1)
    with pytest.raises(ValueError, match="window"):
        trigger_score(m, torch.ones(12, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="size"):
        scan_score(m, 13)


def _linear_model(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(12, 4))
    with torch.no_grad():
        model[2].weight.copy_(torch.randn(4, 12, generator=g))
        model[2].bias.copy_(torch.randn(4, generator=g))
    return model


def test_mean_input_gradient_of_a_linear_model_is_its_weights():
    model = _linear_model().train()
    weight = model[2].weight.detach().clone().double().view(4, 1, 3, 4)
    params = [p.detach().clone() for p in model.parameters()]
    x = torch.rand(37, 1, 3, 4, generator=torch.Generator().manual_seed(1))
    g = mean_input_gradient(model, x, batch_size=5)
    assert g.dtype == torch.float64 and g.shape == (4, 1, 3, 4)
    torch.testing.assert_close(g, weight)
    torch.testing.assert_close(mean_input_gradient(model, x, classes=[2, 0]), weight[[2, 0]])
    # model left as found: training flags, no .grad, same parameters
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert not x.requires_grad and x.grad is None
    # with labels: only correctly classified images of each class count (the paper's selection)
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    model.train()
    labels = pred.clone()
    labels[:3] = (labels[:3] + 1) % 4                           # three wrong labels
    gl = mean_input_gradient(model, x, labels=labels)
    present = torch.bincount(pred[3:], minlength=4) > 0
    torch.testing.assert_close(gl[present], weight[present])
    assert bool(torch.isnan(gl[~present]).all())


def test_mean_input_gradient_of_probabilities_and_batch_invariance():
    model = _linear_model(2)
    x = torch.rand(23, 1, 3, 4, generator=torch.Generator().manual_seed(4))
    w = model[2].weight.detach().double()
    with torch.no_grad():
        p = model.eval()(x).softmax(1).double()                 # (N, K)
    # d p_c / dx = p_c (w_c - sum_k p_k w_k), averaged over the images
    expect = torch.einsum("nc,nck->ck", p, w[None] - (p @ w)[:, None]) / len(x)
    got = mean_input_gradient(model, x, output="probability", batch_size=4)
    torch.testing.assert_close(got.flatten(1), expect, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mean_input_gradient(model, x, output="probability", batch_size=100), got,
                               rtol=1e-6, atol=1e-7)
    labels = p.argmax(1)
    paper = mean_input_gradient(model, x, labels=labels, output="paper")
    for c in labels.unique().tolist():
        sel = labels == c
        ref = -(p[sel, c, None] * (w[c] - p[sel] @ w)).mean(0)
        torch.testing.assert_close(paper[c].flatten(), ref, rtol=1e-5, atol=1e-6)


def test_mean_input_gradient_errors():
    model = _linear_model()
    x = torch.rand(5, 1, 3, 4)
    with pytest.raises(ValueError, match="output"):
        mean_input_gradient(model, x, output="loss")
    with pytest.raises(ValueError, match="labels"):
        mean_input_gradient(model, x, labels=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels"):
        mean_input_gradient(model, x, labels=torch.full((5,), 4))
    with pytest.raises(ValueError, match="classes"):
        mean_input_gradient(model, x, classes=[4])
    with pytest.raises(ValueError, match="images"):
        mean_input_gradient(model, torch.zeros(0, 1, 3, 4))
    with pytest.raises(ValueError, match="batch_size"):
        mean_input_gradient(model, x, batch_size=0)


def test_roc_auc_known_cases():
    assert roc_auc([3.0, 4.0, 5.0], [0.0, 1.0]) == 1.0
    assert roc_auc([0.0, 1.0], [3.0, 4.0, 5.0]) == 0.0
    assert roc_auc([2.0, 2.0], [2.0, 2.0, 2.0]) == 0.5
    assert roc_auc([3.0, 2.0], [1.0, 2.0]) == 0.875
    g = torch.Generator().manual_seed(5)
    pos = torch.randint(0, 6, (40,), generator=g).double()
    neg = torch.randint(0, 5, (33,), generator=g).double()
    diff = pos[:, None] - neg[None, :]
    brute = float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())
    assert roc_auc(pos, neg) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="finite"):
        roc_auc([], [1.0])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([math.nan], [1.0])
