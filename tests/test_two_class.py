"""Tests of wna_helpers.two_class: the two-class signal-in-noise design with known answers."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wna_helpers.engine.stimuli import Gaussian, Uniform
from wna_helpers.methods.two_class import CHUNK_SIZE, TwoClassCI, two_class_ci

SHAPE = (1, 6, 6)
IGNORED = [0, 5, 7, 12, 20, 30, 33, 35]  # pixels with weight 0 in both w_A and w_B
STRONG = 14  # the pixel with the largest weight difference


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny matmuls: extra BLAS threads only contend for the cores on a busy 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _diff() -> torch.Tensor:
    d = torch.randn(36, generator=torch.Generator().manual_seed(1))
    d[IGNORED] = 0.0
    d[STRONG] = 3.0
    return d


def linear_observer(bias_shift: float = 0.0) -> tuple[nn.Module, torch.Tensor]:
    """Logits w_A·x + b_A and w_B·x; the decision variable is (w_A - w_B)·x + b_A, unbiased under
    U[0, 1] noise when ``bias_shift`` is 0 (then P(A) = 1/2 at weight 0)."""
    d = _diff()
    w_a, w_b = d.clamp_min(0), (-d).clamp_min(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([w_a, w_b]))
        model[1].bias.copy_(torch.tensor([-0.5 * float(d.sum()) + bias_shift, 0.0]))
    return model, d


def signals() -> tuple[torch.Tensor, torch.Tensor]:
    d = _diff()
    return (d > 0).float().view(1, *SHAPE), (d < 0).float().view(1, *SHAPE)


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def test_linear_observer_noise_ci_is_weight_difference():
    model, d = linear_observer()
    ia, ib = signals()
    r = two_class_ci(model, ia, ib, weight=0.1, n_samples=20000)
    assert isinstance(r, TwoClassCI)
    assert r.counts.dtype == torch.int64 and r.counts.shape == (2, 2) and int(r.counts.sum()) == 20000
    assert abs(int(r.counts[0].sum()) - 10000) < 100  # balanced in whole chunks, nearly so in the last
    assert r.sums.dtype == torch.float64 and r.sums.shape == (2, 2, *SHAPE)
    assert r.noise_sumsq.shape == (2, 2, *SHAPE)
    assert r.ci("noise").shape == (2, *SHAPE) and r.combined("noise").shape == SHAPE
    assert corr(r.combined("noise"), d) > 0.9
    for t in range(2):
        assert corr(r.ci("noise")[t], d) > 0.9
    # the sign is right: where w_A > w_B, noise called A is brighter
    assert float(r.combined("noise").flatten()[STRONG]) > 0
    # the noise CI of a random model direction is not correlated with d
    assert abs(corr(r.combined("noise"), torch.randn(36, generator=torch.Generator().manual_seed(5)))) < 0.5


def test_weight_zero_hit_rates_follow_from_noise_alone():
    shift = 0.5  # biased towards A
    model, d = linear_observer(bias_shift=shift)
    ia, ib = signals()
    r = two_class_ci(model, ia, ib, weight=0.0, n_samples=20000, seed=3)
    # independent Monte Carlo of P(called A) under pure U[0, 1] noise
    noise = torch.rand(200000, 36, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    p_a = float(((noise - 0.5) @ d.double() + shift >= 0).double().mean())
    assert 0.6 < p_a < 0.9
    hit = r.hit_rates
    se = math.sqrt(p_a * (1 - p_a) / 10000)
    assert abs(float(hit[0]) - p_a) < 4 * se
    assert abs(float(hit[1]) - (1 - p_a)) < 4 * se
    assert abs(r.accuracy - 0.5) < 0.02  # true class and decision are independent
    # the two true-class CIs estimate the same map
    ci = r.ci("noise")
    assert corr(ci[0], ci[1]) > 0.9
    se = ci / r.zmap("noise")  # standard error of each true-class CI
    diff_z = (ci[0] - ci[1]) / (se[0] ** 2 + se[1] ** 2).sqrt()
    assert float(diff_z.abs().max()) < 5
    # weight 0: stimulus and noise are the same thing
    assert torch.equal(r.ci("stimulus"), r.ci("noise"))


def test_batch_size_invariance_and_seed():
    model, _ = linear_observer()
    ia, ib = signals()
    n = 2 * CHUNK_SIZE + 301  # a partial last chunk
    r1 = two_class_ci(model, ia, ib, weight=0.1, n_samples=n, batch_size=5)
    r2 = two_class_ci(model, ia, ib, weight=0.1, n_samples=n, batch_size=4096)
    for name in ("counts", "sums", "sumsq", "noise_sums", "noise_sumsq"):
        assert torch.equal(getattr(r1, name), getattr(r2, name)), name
    assert r1.stimulus == r2.stimulus and r1.n_samples == n
    r3 = two_class_ci(model, ia, ib, weight=0.1, n_samples=n, seed=1)
    assert not torch.equal(r1.noise_sums, r3.noise_sums)
    # a whole chunk holds exactly as many A trials as B trials
    one = two_class_ci(model, ia, ib, weight=0.1, n_samples=CHUNK_SIZE)
    assert one.counts.sum(1).tolist() == [CHUNK_SIZE // 2] * 2


def test_stimulus_ci_is_scaled_noise_ci_with_one_image_per_class():
    model, _ = linear_observer()
    ia, ib = signals()
    w = 0.2  # both true classes still have errors, so all four cells are filled
    r = two_class_ci(model, ia, ib, weight=w, n_samples=6000)
    ok = torch.isfinite(r.ci("noise"))
    assert bool(ok.all())
    torch.testing.assert_close(r.ci("stimulus"), (1 - w) * r.ci("noise"), rtol=0, atol=1e-6)
    # with several images per class the two differ: the stimulus CI also says which images were easy
    gen = torch.Generator().manual_seed(2)
    many_a = torch.rand(8, *SHAPE, generator=gen)
    many_b = torch.rand(8, *SHAPE, generator=gen)
    r2 = two_class_ci(model, many_a, many_b, weight=w, n_samples=6000)
    assert float((r2.ci("stimulus") - (1 - w) * r2.ci("noise")).abs().max()) > 1e-3


def test_zmap_ignored_pixels_not_significant_strong_pixel_is():
    model, d = linear_observer()
    ia, ib = signals()
    r = two_class_ci(model, ia, ib, weight=0.1, n_samples=20000)
    for kind in ("noise", "stimulus"):
        z = r.zmap(kind)
        assert z.shape == (2, *SHAPE) and bool(torch.isfinite(z).all())
        sig = r.significant(0.05, kind=kind).reshape(2, -1)
        assert sig.dtype == torch.bool
        assert not bool(sig[:, IGNORED].any()), kind
        assert bool(sig[:, STRONG].all()), kind
        assert float(z.reshape(2, -1)[:, STRONG].min()) > 10
    # FWER over many runs: an observer that looks at one pixel only; every other pixel is null
    one = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    with torch.no_grad():
        one[1].weight.zero_()
        one[1].weight[0, STRONG] = 1.0
        one[1].bias.copy_(torch.tensor([-0.5, 0.0]))
    maps_with_false = 0
    for seed in range(10):
        rr = two_class_ci(one, ia, ib, weight=0.1, n_samples=3000, seed=seed)
        sig = rr.significant(0.05, kind="noise").reshape(2, -1)
        assert bool(sig[:, STRONG].all())
        null = torch.ones(36, dtype=torch.bool)
        null[STRONG] = False
        maps_with_false += int(sig[:, null].any(1).sum())
    assert maps_with_false <= 3  # 20 maps at FWER 0.05: about 1 expected at most


def test_holm_matches_reference_and_alpha_monotone():
    model, _ = linear_observer()
    ia, ib = signals()
    r = two_class_ci(model, ia, ib, weight=0.05, n_samples=3000, seed=7)
    p = r.pvalues("noise").reshape(2, -1)
    for alpha in (0.01, 0.05, 0.2):
        got = r.significant(alpha, kind="noise").reshape(2, -1)
        for t in range(2):
            order = sorted(range(36), key=lambda i: float(p[t, i]))
            expect = torch.zeros(36, dtype=torch.bool)
            for rank, i in enumerate(order):
                if float(p[t, i]) > alpha / (36 - rank):
                    break
                expect[i] = True
            assert torch.equal(got[t], expect), (alpha, t)
    assert bool((r.significant(0.01, kind="noise") <= r.significant(0.2, kind="noise")).all())


def test_accuracy_rises_with_weight():
    model, _ = linear_observer()
    ia, ib = signals()
    acc = [two_class_ci(model, ia, ib, weight=w, n_samples=4000).accuracy for w in (0.0, 0.05, 0.1, 0.2)]
    assert abs(acc[0] - 0.5) < 0.04
    assert all(b > a + 0.05 for a, b in zip(acc, acc[1:])), acc
    assert acc[-1] > 0.9


def test_multiclass_model_restricted_to_two_logits_and_gaussian_noise():
    model, d = linear_observer()
    big = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    with torch.no_grad():  # logit 1 always wins the full argmax; only logits 2 (A) and 0 (B) matter
        big[1].weight.copy_(torch.stack([model[1].weight[1], torch.zeros(36), model[1].weight[0]]))
        big[1].bias.copy_(torch.tensor([0.0, 1e3, float(model[1].bias[0])]))
    ia, ib = signals()
    r = two_class_ci(big, ia, ib, classes=(2, 0), weight=0.2, n_samples=3000)
    ref = two_class_ci(model, ia, ib, classes=(0, 1), weight=0.2, n_samples=3000)
    assert r.classes == (2, 0) and r.accuracy > 0.9
    assert torch.equal(r.counts, ref.counts)
    swapped = two_class_ci(big, ia, ib, classes=(0, 2), weight=0.2, n_samples=3000)
    assert swapped.accuracy < 0.1  # the images of "A" now carry the other logit's signal
    g = two_class_ci(model, ia, ib, noise=Gaussian(0.5, 0.3), weight=0.1, n_samples=4000)
    assert g.stimulus["noise"]["kind"] == "gaussian" and g.stimulus["weight"] == 0.1
    assert corr(g.combined("noise"), d) > 0.9
    u = two_class_ci(model, ia, ib, noise=Uniform(), n_samples=50)
    assert u.stimulus["noise"] == {"kind": "uniform", "low": 0.0, "high": 1.0}


def test_empty_cell_gives_nan():
    model, _ = linear_observer()
    ia, ib = signals()
    r = two_class_ci(model, ia, ib, weight=1.0, n_samples=200)  # noise-free: never wrong
    assert r.accuracy == 1.0 and r.hit_rates.tolist() == [1.0, 1.0]
    assert bool(torch.isnan(r.ci("noise")).all()) and bool(torch.isnan(r.combined()).all())
    assert not bool(r.significant().any())


class _Stateful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(36, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.bn(x)).flatten(1))


def test_model_state_preserved():
    model = _Stateful()
    model.train()
    model.drop.eval()
    flags = {n: m.training for n, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ia, ib = signals()
    r1 = two_class_ci(model, ia, ib, n_samples=500)
    r2 = two_class_ci(model, ia, ib, n_samples=500)
    assert torch.equal(r1.counts, r2.counts)  # eval mode: dropout off, BN statistics frozen
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="cannot take"):
        two_class_ci(model, torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5))
    assert {n: m.training for n, m in model.named_modules()} == flags


@pytest.mark.parametrize("kwargs, match", [
    ({"images_b": torch.rand(2, 1, 5, 5)}, "same image shape"),
    ({"images_a": torch.rand(0, *SHAPE)}, "non-empty"),
    ({"images_a": torch.rand(6, 6)[:0]}, "non-empty"),
    ({"images_a": [[0.0]]}, "non-empty"),
    ({"images_b": torch.full((1, *SHAPE), float("nan"))}, "finite"),
    ({"weight": 1.5}, "weight"),
    ({"weight": -0.1}, "weight"),
    ({"weight": True}, "weight"),
    ({"classes": (0, 0)}, "distinct"),
    ({"classes": (0, 2)}, r"\[0, 2\)"),
    ({"classes": (0,)}, "pair"),
    ({"classes": (-1, 0)}, "distinct"),
    ({"n_samples": 0}, "n_samples"),
    ({"n_samples": 2.5}, "n_samples"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": "x"}, "seed"),
    ({"noise": "pink"}, "unknown noise"),
])
def test_errors(kwargs, match):
    model, _ = linear_observer()
    ia, ib = signals()
    args = {"images_a": ia, "images_b": ib}
    args.update(kwargs)
    a, b = args.pop("images_a"), args.pop("images_b")
    with pytest.raises(ValueError, match=match):
        two_class_ci(model, a, b, **args)


def test_result_method_errors():
    model, _ = linear_observer()
    ia, ib = signals()
    r = two_class_ci(model, ia, ib, n_samples=100)
    with pytest.raises(ValueError, match="kind"):
        r.ci("logit")
    with pytest.raises(ValueError, match="alpha"):
        r.significant(1.0)
