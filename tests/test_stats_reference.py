"""The hand-written statistics against the reference libraries (scipy, statsmodels: test-only dependencies).

The package stays torch-only, for speed and for the GPU; these tests hold each of its statistics to the
reference implementation on random inputs: the Mann-Whitney AUC and its exact permutation p-value,
Welch's test (z and Welch-Satterthwaite degrees of freedom) and its t p-values, Holm's adjustment, the
logistic psychometric fit, and the cluster test's connected components.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats")
ndimage = pytest.importorskip("scipy.ndimage")
sm = pytest.importorskip("statsmodels.api")
multitest = pytest.importorskip("statsmodels.stats.multitest")

from wna_helpers.applications.detection import detection_test, roc_auc  # noqa: E402
from wna_helpers.methods.ci_compare import holm_adjust, t_pvalues, welch  # noqa: E402
from wna_helpers.methods.ci_stats import _components  # noqa: E402
from wna_helpers.methods.psychometrics import fit_psychometric  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("trial", range(20))
def test_auc_is_mann_whitney_u_over_n1_n2(trial):
    pos = RNG.integers(0, 6, size=RNG.integers(1, 8)).astype(float)   # small integers: plenty of ties
    neg = RNG.integers(0, 6, size=RNG.integers(1, 8)).astype(float)
    u = scipy_stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert roc_auc(pos, neg) == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)


@pytest.mark.parametrize("n_pos, n_neg", [(5, 5), (3, 6), (4, 4)])
def test_exact_auc_pvalue_is_scipys_exact_one_sided_test(n_pos, n_neg):
    scores = RNG.normal(size=n_pos + n_neg)          # continuous: no ties, where scipy's exact test applies
    ours = detection_test(torch.tensor(scores[:n_pos]), torch.tensor(scores[n_pos:]))["p"]
    ref = scipy_stats.mannwhitneyu(scores[:n_pos], scores[n_pos:], alternative="greater", method="exact").pvalue
    assert ours == pytest.approx(ref, abs=1e-12)


def test_welch_z_and_df_are_scipys_welch_t_test():
    groups = []
    for na, nb in [(5, 9), (30, 12), (100, 101)]:
        a, b = RNG.normal(0.3, 1.0, size=na), RNG.normal(0.0, 2.0, size=nb)
        groups.append((a, b))
    sums_a = torch.tensor([[a.sum()] for a, _ in groups])
    sumsq_a = torch.tensor([[(a * a).sum()] for a, _ in groups])
    sums_b = torch.tensor([[b.sum()] for _, b in groups])
    sumsq_b = torch.tensor([[(b * b).sum()] for _, b in groups])
    counts_a = torch.tensor([len(a) for a, _ in groups])
    counts_b = torch.tensor([len(b) for _, b in groups])
    diff, z, df = welch(sums_a, sumsq_a, counts_a, sums_b, sumsq_b, counts_b)
    for g, (a, b) in enumerate(groups):
        ref = scipy_stats.ttest_ind(a, b, equal_var=False)
        assert float(z[g, 0]) == pytest.approx(ref.statistic, rel=1e-9)
        assert float(df[g, 0]) == pytest.approx(ref.df, rel=1e-9)
        assert float(diff[g, 0]) == pytest.approx(a.mean() - b.mean(), rel=1e-9)
        p = float(t_pvalues(z[g:g + 1, 0], df[g:g + 1, 0])[0])
        assert p == pytest.approx(ref.pvalue, rel=1e-6)


def test_t_pvalues_are_two_sided_students_t():
    t = torch.tensor([0.0, 0.5, 1.96, -2.5, 4.0, 10.0], dtype=torch.float64)
    df = torch.tensor([1.0, 3.0, 10.0, 2.5, 30.0, 100.0], dtype=torch.float64)
    ref = 2 * scipy_stats.t.sf(np.abs(t.numpy()), df.numpy())
    assert np.allclose(t_pvalues(t, df).numpy(), ref, rtol=1e-7, atol=1e-15)


@pytest.mark.parametrize("trial", range(10))
def test_holm_is_statsmodels_holm(trial):
    p = RNG.uniform(size=RNG.integers(1, 30)) ** 3    # many small p-values
    ref = multitest.multipletests(p, method="holm")[1]
    assert np.allclose(holm_adjust(torch.tensor(p)).numpy(), ref, rtol=0, atol=1e-12)


def test_psychometric_fit_is_a_binomial_logistic_regression():
    w = np.linspace(0, 1, 11)
    n = 200
    hits = RNG.binomial(n, 1 / (1 + np.exp(-9 * (w - 0.55))))
    fit = fit_psychometric(w, hits / n, n_trials=n, n_boot=0)
    glm = sm.GLM(np.column_stack([hits, n - hits]), sm.add_constant(w), family=sm.families.Binomial()).fit()
    a, b = glm.params
    assert fit.slope == pytest.approx(b, rel=1e-4) and fit.intercept == pytest.approx(a, rel=1e-4)
    assert fit.threshold == pytest.approx(-a / b, abs=1e-5)


@pytest.mark.parametrize("trial", range(10))
def test_cluster_components_are_scipys_4_connected_labels(trial):
    mask = RNG.uniform(size=(3, 12, 15)) < 0.45
    ours = _components(torch.tensor(mask)).numpy()
    for m in range(3):
        ref, n = ndimage.label(mask[m], structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
        # the same partition of the pixels into components (the labels themselves differ)
        pairs = {(int(a), int(b)) for a, b in zip(ours[m][mask[m]], ref[mask[m]])}
        assert len(pairs) == n == len({a for a, _ in pairs}) == len({b for _, b in pairs})
        assert ((ours[m] == 0) == ~mask[m]).all()


def test_the_exact_pvalue_of_a_perfect_auc_is_one_over_the_labellings():
    scores = torch.arange(10, dtype=torch.float64)
    positive = scores >= 5
    n_labellings = len(list(itertools.combinations(range(10), 5)))
    assert detection_test(scores[positive], scores[~positive])["p"] == pytest.approx(1 / n_labellings)


@pytest.mark.parametrize("pairs", [3, 5, 7])
def test_paired_sign_flip_pvalue_is_scipys_exact_permutation_test(pairs):
    d = RNG.normal(0.5, 1.0, size=pairs)
    ours = detection_test(torch.tensor(d), torch.zeros(pairs), paired=True)["paired_p"]
    ref = scipy_stats.permutation_test((d,), np.mean, permutation_type="samples", alternative="greater",
                                       n_resamples=np.inf).pvalue
    assert ours == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("trial", range(10))
def test_paired_sign_test_is_scipys_exact_binomial_test(trial):
    from wna_helpers.applications.microstimulation import paired_sign_test
    a = RNG.integers(0, 4, size=12).astype(float)
    b = RNG.integers(0, 4, size=12).astype(float)
    a[0], b[0] = np.inf, np.inf          # both abolished: a tie
    a[1] = np.inf                        # abolished against a finite shift: a win
    out = paired_sign_test(torch.tensor(a), torch.tensor(b))
    wins, losses = int((a > b).sum()), int((a < b).sum())
    assert (out["wins"], out["losses"], out["ties"]) == (wins, losses, 12 - wins - losses)
    if wins + losses:
        assert out["p"] == pytest.approx(scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue, abs=1e-12)
