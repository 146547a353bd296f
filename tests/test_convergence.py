"""Convergence series from one run: snapshots equal separate runs of every size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import wna_helpers as wna
from wna_helpers.methods import convergence


def test_geometric_sizes():
    assert wna.geometric_sizes(20000) == [500, 1000, 2000, 4000, 8000, 16000, 20000]
    assert wna.geometric_sizes(1000, 500) == [500, 1000]
    assert wna.geometric_sizes(300) == [300]
    assert wna.geometric_sizes(10, 1, 1.5) == sorted(set(wna.geometric_sizes(10, 1, 1.5)))
    with pytest.raises(ValueError):
        wna.geometric_sizes(100, factor=1.0)


def test_ci_convergence_snapshots_are_prefix_runs():
    """Known answer: the snapshot at n is exactly the CI of a run of n samples (same seed)."""
    m = wna.build_model("paper_cnn", seed=0)
    conv = wna.ci_convergence(m, [300, 1000, 2500], batch_size=256, progress=False)
    for i, n in enumerate(conv.sizes):
        ci = wna.classification_images(m, n, batch_size=700, progress=False)
        assert torch.equal(ci.counts, conv.counts[i])
        assert torch.allclose(ci.sums, conv.sums[i], rtol=0, atol=1e-9)
        snap = conv.snapshot(n)
        assert snap.n_samples == n and torch.allclose(snap.sumsq, ci.sumsq, rtol=0, atol=1e-9)
        assert snap.stimulus == ci.stimulus
    r = conv.correlation_with_final()
    ok = conv.counts[-1] >= 2
    assert torch.allclose(r[-1, ok], torch.ones(int(ok.sum()), dtype=torch.float64))
    assert torch.isnan(r[:, ~ok]).all()
    assert conv.mean_correlation()[-1] == pytest.approx(1.0)
    assert (conv.counts.sum(1) == torch.tensor(conv.sizes)).all()
    with pytest.raises(ValueError):
        conv.snapshot(999)
    with pytest.raises(ValueError):
        wna.ci_convergence(m, [1000, 500])
    with pytest.raises(ValueError, match="cannot be checkpointed"):
        wna.ci_convergence(m, [100], checkpoint="x.ckpt")


def test_ci_convergence_uniform_noise_matches_classification_images():
    m = wna.build_model("mlp", seed=0)
    conv = wna.ci_convergence(m, [700, 2000], noise=wna.Uniform(), seed=3, progress=False)
    ci = wna.classification_images(m, 2000, noise="uniform", seed=3, progress=False)
    assert torch.equal(conv.counts[-1], ci.counts) and torch.allclose(conv.sums[-1], ci.sums, atol=1e-9)


def test_ci_convergence_linear_known_answer():
    """For a linear model the CI converges toward w_c - mean_k w_k (METHOD.md)."""
    m = wna.build_model("logreg", seed=0)
    with torch.no_grad():
        m.fc1.weight.mul_(20)
    conv = wna.ci_convergence(m, [500, 20000], progress=False)
    w = m.fc1.weight.detach().double()
    target = w - w.mean(0, keepdim=True)
    r_small = [wna.pearson(conv.images[0, c], target[c]) for c in range(10)]
    r_big = [wna.pearson(conv.images[1, c], target[c]) for c in range(10)]
    assert np.mean(r_big) > np.mean(r_small) and np.mean(r_big) > 0.8


def test_sta_convergence_matches_spike_triggered_average():
    m = wna.build_model("lenet", seed=0)
    conv = wna.sta_convergence(m, "conv1", [256, 1500], batch_size=300, progress=False)
    sta = wna.spike_triggered_average(m, "conv1", 1500, progress=False)
    snap = conv.snapshot(1500)
    # the STA's sums are float32 convolutions per batch: equal up to float32 rounding
    assert torch.allclose(snap.pooled, sta.pooled, atol=1e-5, equal_nan=True)
    assert torch.allclose(snap.center, sta.center, atol=1e-5, equal_nan=True)
    assert torch.allclose(snap.mean_activation, sta.mean_activation, atol=1e-5)
    r = conv.filter_correlation(m.conv1.weight)
    assert r["pooled"].shape == (2, 32)
    assert r["pooled"][-1].nanmean() > 0.95  # Bussgang: pooled STA ~ filter
    fin = conv.correlation_with_final()
    assert torch.allclose(fin["pooled"][-1], torch.ones(32, dtype=torch.float64))
    with pytest.raises(ValueError, match="not a conv layer"):
        wna.sta_convergence(m, "fc1", [10])
    both = wna.sta_convergence(m, ["conv1", "conv2"], [256, 1500], batch_size=300, progress=False)
    assert torch.allclose(both["conv1"].pooled, conv.pooled, atol=1e-5, equal_nan=True)
    sta2 = wna.spike_triggered_average(m, "conv2", 256, progress=False)
    assert torch.allclose(both["conv2"].snapshot(256).pooled, sta2.pooled, atol=1e-5, equal_nan=True)


def test_sta_pass_carries_the_activation_statistics():
    m = wna.build_model("paper_cnn", seed=0)
    _, stats = convergence.sta_convergence_with_activations(
        m, ["conv1"], [500, 1500], noise="gaussian", input_shape=(1, 28, 28),
        run=wna.RunOptions(progress=False), activation_layers=["conv1", "conv2"])
    ref = wna.activation_statistics(m, ["conv1", "conv2"], 1500, progress=False)
    assert torch.equal(stats.counts, ref.counts) and stats.stimulus == ref.stimulus
    assert torch.allclose(stats.means["conv2"], ref.means["conv2"], equal_nan=True)


def test_convergence_null_and_points():
    conv = wna.CIConvergence(sizes=[100, 400], counts=torch.tensor([[50, 50], [200, 200]]),
                             sums=torch.randn(2, 2, 1, 2, 2, dtype=torch.float64),
                             sumsq=torch.ones(2, 2, 1, 2, 2, dtype=torch.float64), stimulus={})
    assert torch.allclose(conv.null_correlation(), torch.tensor([0.5, 1.0], dtype=torch.float64))
    n, r = conv.class_points()
    assert n.tolist() == [50.0, 50.0] and len(r) == 2


class _Coin(torch.nn.Module):
    """Answers class 0 or 1 by a hash of the input that no pixel pattern predicts: CIs without any signal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bit = (x.flatten(1) * 1e6).floor().long().sum(1) % 2
        return torch.nn.functional.one_hot(bit, 2).float()


def test_across_halves_a_ci_without_signal_gives_r_near_zero_while_the_final_ci_gives_sqrt_n_over_N():
    """Known answer: the snapshot at n shares its samples with the final CI, so pure noise correlates with it at
    sqrt(n/N); the odd half at n and the even half of the whole run share none, so pure noise gives r ~ 0
    (784 pixels: the standard deviation of a null r is about 1/28)."""
    conv = wna.ci_convergence(_Coin(), [10_000, 40_000, 80_000], noise="uniform", batch_size=2000, progress=False,
                              input_shape=(1, 28, 28))
    with_final = conv.mean_correlation()
    assert with_final[0] == pytest.approx(0.125 ** 0.5, abs=0.1) and with_final[1] == pytest.approx(0.5 ** 0.5, abs=0.1)
    across = conv.mean_correlation(across_halves=True)
    assert across.abs().max() < 0.15
    # a size inside the first (even) chunk has no odd half yet: undefined, not zero
    early = wna.ci_convergence(_Coin(), [2000, 10_000], noise="uniform", progress=False, input_shape=(1, 28, 28))
    assert torch.isnan(early.correlation_across_halves()[0]).all()
    n, r = conv.class_points(across_halves=True)
    assert len(n) == 6 and bool((n == conv.odd_counts.flatten().double().sort().values).all())
    # a model with signal: the first layer's pattern shows in both halves, r well above 0 at the final size
    m = wna.build_model("logreg", seed=0)
    sig = wna.ci_convergence(m, [10_000, 40_000], noise="uniform", batch_size=2000, progress=False)
    assert float(sig.mean_correlation(across_halves=True)[-1]) > 0.3
