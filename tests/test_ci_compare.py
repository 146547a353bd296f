"""compare_classification_images: Welch z from the sums of squares, Student-t p-values, Holm per class map."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers.methods.ci import ClassificationImages
from wna_helpers.methods.ci_compare import CIComparison, compare_classification_images, holm_adjust, t_pvalues
from wna_helpers.engine.options import RunOptions
from wna_helpers.applications.trojan import scan_score, trigger_score, window_mask


def _result(samples: list[torch.Tensor]) -> ClassificationImages:
    """A ClassificationImages built from explicit per-class samples (each (n_c, 1, 2, 2))."""
    sums = torch.stack([s.double().sum(0) for s in samples])
    sumsq = torch.stack([s.double().square().sum(0) for s in samples])
    counts = torch.tensor([len(s) for s in samples], dtype=torch.int64)
    per = counts.double().view(-1, 1, 1, 1)
    return ClassificationImages(images=sums / per, counts=counts, n_samples=int(counts.sum()), sums=sums,
                                sumsq=sumsq, stimulus={})


def _linear(seed: int, d: int = 64, k: int = 4) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(k, d, generator=gen) * 0.5)
        model[1].bias.copy_(torch.randn(k, generator=gen) * 0.3)
    return model


def _ci(model: nn.Module, seed: int, shape=(1, 8, 8), n: int = 20000) -> ClassificationImages:
    return wna.classification_images(model, n, noise="uniform", input_shape=shape, null_permutations=0,
                                     run=RunOptions(seed=seed, progress=False))


def test_known_welch_z_and_df():
    g = torch.Generator().manual_seed(1)
    xa = [torch.rand(7, 1, 2, 2, generator=g), torch.rand(30, 1, 2, 2, generator=g)]
    xb = [torch.rand(11, 1, 2, 2, generator=g), torch.rand(5, 1, 2, 2, generator=g)]
    cmp = compare_classification_images(_result(xa), _result(xb))
    for c in range(2):
        a, b = xa[c].double(), xb[c].double()
        ua, ub = a.var(0) / len(a), b.var(0) / len(b)
        torch.testing.assert_close(cmp.difference[c], a.mean(0) - b.mean(0))
        torch.testing.assert_close(cmp.zmap[c], (a.mean(0) - b.mean(0)) / (ua + ub).sqrt())
        torch.testing.assert_close(cmp.df[c], (ua + ub) ** 2 / (ua ** 2 / (len(a) - 1) + ub ** 2 / (len(b) - 1)))
    assert cmp.counts_a.tolist() == [7, 30] and cmp.counts_b.tolist() == [11, 5]
    assert cmp.zmap.dtype == torch.float64 and cmp.counts_a.dtype == torch.int64


def test_identical_results_give_zero_and_nan_where_untestable():
    g = torch.Generator().manual_seed(2)
    const = torch.full((4, 1, 2, 2), 0.3)                      # variance 0 in both
    samples = [torch.rand(9, 1, 2, 2, generator=g), torch.rand(1, 1, 2, 2, generator=g), const,
               torch.zeros(0, 1, 2, 2)]
    res = _result(samples)
    cmp = compare_classification_images(res, res)
    assert bool((cmp.zmap[0] == 0).all())
    assert bool(torch.isnan(cmp.zmap[1:]).all())               # 1 sample, variance 0, no sample
    torch.testing.assert_close(cmp.pvalues()[0], torch.ones(1, 2, 2, dtype=torch.float64))
    assert not bool(cmp.significant().any())
    assert bool(torch.isnan(cmp.fwer_pvalues()[1:]).all())
    # min_count leaves a class out
    assert bool(torch.isnan(compare_classification_images(res, res, min_count=10).zmap[0]).all())


def test_t_pvalues_known_answers():
    t = torch.tensor([0.0, 0.5, 1.0, 3.0, 12.0], dtype=torch.float64)
    torch.testing.assert_close(t_pvalues(t, torch.ones_like(t)), 1 - 2 / math.pi * torch.atan(t))  # Cauchy
    torch.testing.assert_close(t_pvalues(t, torch.full_like(t, 2.0)), 1 - t / (2 + t * t).sqrt())
    torch.testing.assert_close(t_pvalues(t, torch.full_like(t, 1e6)), torch.special.erfc(t / math.sqrt(2)))
    for df in (5.5, 80.0, 5000.0):                              # against the density integrated numerically
        for tv in (0.7, 2.5, 4.5):
            u = tv * torch.logspace(0, 5, 200_001, dtype=torch.float64)
            dens = torch.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                             - (df + 1) / 2 * torch.log1p(u * u / df))
            tail = 2 * torch.trapezoid(dens, u)
            got = float(t_pvalues(torch.tensor(tv), torch.tensor(df)))
            assert got == pytest.approx(float(tail), rel=1e-4)
    assert bool(torch.isnan(t_pvalues(torch.tensor([math.nan]), torch.tensor([3.0]))).all())


def test_t_pvalues_of_one_element_do_not_depend_on_the_others_in_the_call():
    # Welch t maps as the trojan study makes them: thousands of pixels, df in the hundreds to thousands. Each
    # element's continued fraction stops on its own; one that had to wait for every other element kept gathering
    # rounding error (1e-12 relative over 3,000 steps) and cost 30 times the time.
    g = torch.Generator().manual_seed(0)
    df = torch.empty(4000, dtype=torch.float64).uniform_(20.0, 7000.0, generator=g)
    t = torch.randn(4000, generator=g, dtype=torch.float64) * 3
    together = t_pvalues(t, df)
    alone = torch.cat([t_pvalues(t[i:i + 1], df[i:i + 1]) for i in range(0, 4000, 97)])
    assert torch.equal(together[::97], alone)


def test_holm_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    p = torch.rand(3, 17, generator=g, dtype=torch.float64) ** 3
    p[1, [2, 5]] = math.nan
    got = holm_adjust(p)
    for r in range(3):
        ok = ~torch.isnan(p[r])
        v = p[r][ok]
        m = len(v)
        order = v.argsort()
        adj = torch.empty(m, dtype=torch.float64)
        running = 0.0
        for i, j in enumerate(order.tolist()):
            running = max(running, min(1.0, (m - i) * float(v[j])))
            adj[j] = running
        torch.testing.assert_close(got[r][ok], adj)
        assert bool(torch.isnan(got[r][~ok]).all())


def test_two_runs_of_one_model_are_calibrated():
    maps, flagged, zs = 0, 0, []
    for m in range(3):
        model = _linear(m)
        for pair in range(2):
            cmp = compare_classification_images(_ci(model, 100 * m + 2 * pair, n=12000),
                                                _ci(model, 100 * m + 2 * pair + 1, n=12000))
            ok = (cmp.counts_a >= 30) & (cmp.counts_b >= 30)
            maps += int(ok.sum())
            flagged += int(cmp.significant(0.05)[ok].flatten(1).any(1).sum())
            zs.append(cmp.zmap[ok].flatten())
    z = torch.cat(zs)
    assert maps >= 18
    assert flagged / maps <= 0.05 + 0.1                         # family-wise error per class map
    assert abs(float(z.mean())) < 0.15                          # z ~ N(0, 1) under the null
    assert 0.9 < float(z.std()) < 1.1


class _Planted(nn.Module):
    """Classes 0-8 read only the bottom three rows; class 9 is a constant plus beta * window mean."""

    def __init__(self, weight: torch.Tensor, window: torch.Tensor, beta: float):
        super().__init__()
        self.lin = nn.Linear(144, 10)
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.zero_()
            self.lin.bias[9] = 0.3
        self.register_buffer("win", window.flatten().float() / window.sum())
        self.beta = beta

    def forward(self, x):
        out = self.lin(x.flatten(1))
        bump = torch.zeros(1, 10)
        bump[0, 9] = self.beta
        return out + ((x.flatten(1) - 0.5) @ self.win)[:, None] * bump


def test_planted_window_is_flagged_in_class_9_only():
    win = window_mask((12, 12), (1, 4), 6)
    region = torch.zeros(12, 12, dtype=torch.bool)
    region[9:] = True                                           # where classes 0-8 look
    w = torch.randn(10, 12, 12, generator=torch.Generator().manual_seed(0)) * 0.1
    w[:, ~region] = 0
    w[9] = 0
    clean, trojan = _Planted(w.flatten(1), win, 0.0), _Planted(w.flatten(1), win, 6.0)
    cmp = compare_classification_images(_ci(trojan, 1, (1, 12, 12)), _ci(clean, 2, (1, 12, 12)))
    sig, z = cmp.significant(0.05)[:, 0], cmp.zmap[:, 0]
    assert int(sig[9][win].sum()) >= 18 and bool((z[9][win] > 0).all())
    # pixels neither in the window nor where the model looks are exact nulls in every class
    null = ~win & ~region
    assert int(sig[:, null].sum()) <= 1
    assert float(trigger_score(z[9], win)) > 2.5
    assert scan_score(z[9], 6).position.tolist() == [1, 4]
    # the window is found in class 9, not in a class that lost samples to it
    assert float(trigger_score(z[9], win)) > max(float(trigger_score(z[c], win)) for c in range(9)
                                                 if not bool(torch.isnan(z[c]).all()))


def test_errors():
    g = torch.Generator().manual_seed(4)
    a = _result([torch.rand(5, 1, 2, 2, generator=g), torch.rand(5, 1, 2, 2, generator=g)])
    three = _result([torch.rand(5, 1, 2, 2, generator=g) for _ in range(3)])
    other = ClassificationImages(images=torch.zeros(2, 1, 3, 3), counts=torch.tensor([5, 5]), n_samples=10,
                                 sums=torch.zeros(2, 1, 3, 3, dtype=torch.float64),
                                 sumsq=torch.zeros(2, 1, 3, 3, dtype=torch.float64), stimulus={})
    with pytest.raises(ValueError, match="classes"):
        compare_classification_images(a, three)
    with pytest.raises(ValueError, match="shape"):
        compare_classification_images(a, other)
    with pytest.raises(ValueError, match="ClassificationImages"):
        compare_classification_images(a, torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match="min_count"):
        compare_classification_images(a, a, min_count=1)
    cmp = compare_classification_images(a, a)
    assert isinstance(cmp, CIComparison)
    for bad in (0, 1, 1.5, -0.1, True, "0.05"):
        with pytest.raises(ValueError, match="alpha"):
            cmp.significant(bad)
