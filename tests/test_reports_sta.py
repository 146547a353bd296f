"""Chapter 5's report functions on synthetic STAs, STCs and convergence runs with known answers.

The filters of every synthetic model are two zero-mean, orthogonal patterns of equal norm, ``A`` (columns
-1 .. 1) and ``B`` (its transpose): ``r(A + tB, A) = 1 / sqrt(1 + t²)`` and ``r(A + B, A) = 1 / sqrt(2)``.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.reports import sta as rep  # noqa: E402
from wna_helpers.methods.convergence import STAConvergence  # noqa: E402
from wna_helpers.methods.sta import ReceptiveField, SpikeTriggeredAverage  # noqa: E402
from wna_helpers.methods.stc import SpikeTriggeredCovariance  # noqa: E402

DATASETS = ["mnist", "fashion_mnist"]
CH = Chapter(profile=wna.get_profile("quick"), models=["m3", "m5"], cnns=["m3", "m5"], datasets=DATASETS,
             device=torch.device("cpu"), classes={d: tuple("abc") for d in DATASETS})
SIZE = {"m3": 3, "m5": 5}  # filter size per model
MU = 0.5  # the mean of the quick profile's uniform noise on [0, 1]
KEYS = [(a, d) for d in DATASETS for a in CH.cnns]


def patterns(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B: ``(1, k, k)``, zero mean, orthogonal, equal norm."""
    a = torch.linspace(-1, 1, k, dtype=torch.float64).expand(k, k)
    return a[None].clone(), a.T[None].clone()


def filt(k: int) -> torch.Tensor:
    """Two channels: A and B, ``(2, 1, k, k)``."""
    return torch.stack(patterns(k))


def mix(k: int, t: float) -> torch.Tensor:
    """Channel 0: A + tB, channel 1: B + tA; both correlate with ``filt(k)`` at 1 / sqrt(1 + t²)."""
    a, b = patterns(k)
    return torch.stack([a + t * b, b + t * a])


def sta(pooled: torch.Tensor, center: torch.Tensor | None = None, *, n: int = 1000,
        active: tuple[float, ...] = (1.0, 1.0), layer: str = "conv1") -> SpikeTriggeredAverage:
    k = pooled.shape[-1]
    return SpikeTriggeredAverage(
        layer=layer, center=pooled.clone() if center is None else center, pooled=pooled,
        center_weight=torch.ones(2, dtype=torch.float64), pooled_weight=torch.ones(2, dtype=torch.float64),
        mean_activation=torch.tensor(active, dtype=torch.float64), rf=ReceptiveField((k, k), (1, 1), (0, 0), (3, 3)),
        positions=9, n_samples=n, stimulus={"kind": "uniform"})


FILTERS = {(a, d): filt(SIZE[a]) for a, d in KEYS}


def test_noise_mean_of_uniform_and_gaussian_noise():
    assert rep.noise_mean(wna.Uniform()) == 0.5
    assert rep.noise_mean(wna.Uniform(low=-1.0, high=3.0)) == 1.0
    assert rep.noise_mean(wna.Gaussian(mean=0.2)) == pytest.approx(0.2)
    assert rep.noise_mean(CH.noise) == MU
    with pytest.raises(ValueError):
        rep.noise_mean(wna.Images(torch.zeros(2, 1, 4, 4)))


def test_filter_rows_and_summary():
    # pooled: the filter plus the noise mean (r = 1); centre: A + B against A (r = 1/√2, both channels);
    # real: channel 0 A + B (1/√2), channel 1 B (1): mean 0.854; channel 1 never active under noise for m5
    noise = {(a, d): sta(MU + 2 * filt(SIZE[a]), MU + mix(SIZE[a], 1.0), active=(1.0, 0.0 if a == "m5" else 1.0))
             for a, d in KEYS}
    real = {(a, d): sta(torch.stack([mix(SIZE[a], 1.0)[0], filt(SIZE[a])[1]])) for a, d in KEYS}
    rows = rep.filter_rows(noise, real, FILTERS, CH)
    assert [(r["model"], r["dataset"]) for r in rows] == [("m3", "MNIST"), ("m5", "MNIST"), ("m3", "Fashion-MNIST"),
                                                           ("m5", "Fashion-MNIST")]
    assert rows[0]["pooled"] == pytest.approx(1.0) and rows[0]["centre"] == pytest.approx(1 / math.sqrt(2))
    assert rows[0]["real"] == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    table = rep.filter_table(rows)
    assert "| m3 | MNIST | 1,000 | 1.000 | 0.707 | 0.854 | 0 | 2 |" in table
    assert "| m5 | Fashion-MNIST | 1,000 | 1.000 | 0.707 | 0.854 | 1 | 2 |" in table
    alike, ranges = rep.filter_summary(rows, FILTERS, CH)
    assert "correlate at mean r = 1.00 to 1.00 per model" in alike and alike.endswith("look alike.")
    # a range whose ends print alike is one value, not "0.71 to 0.71"
    assert "pooled STAs match the learned filters at mean r = 1.000; the centre unit alone gives 0.71 at the same n" \
        in ranges and "lower agreement (0.85)" in ranges
    apart = {(a, d): (-f if d == "fashion_mnist" and a == "m5" else f) for (a, d), f in FILTERS.items()}
    alike, _ = rep.filter_summary(rows, apart, CH)
    assert "mean r = -1.00 to 1.00" in alike and alike.endswith("has its own first-layer filters.")


def test_filter_figures_subtract_the_noise_mean():
    noise = {(a, d): sta(MU + 2 * filt(SIZE[a])) for a, d in KEYS}
    real = {(a, d): sta(3.0 + filt(SIZE[a])) for a, d in KEYS}
    figs = rep.filter_figures(noise, real, FILTERS, CH)
    assert len(figs) == len(KEYS) and all(isinstance(f, Figure) for f in figs)
    rows = figs[0].axes  # one Axes per row: filter, noise pooled, noise centre, real pooled
    for c in range(2):
        shown = [np.asarray(rows[r].images[c].get_array()) for r in range(4)]
        for r in (1, 2, 3):  # every STA minus its offset is the filter again (each panel scaled to its maximum)
            np.testing.assert_allclose(shown[r], shown[0], atol=1e-12)
    labels = [" ".join(ax.get_ylabel().split()) for ax in rows[:4]]
    assert labels[1:] == ["noise STA pooled minus noise mean", "noise STA centre minus noise mean",
                          "real-image STA pooled, minus its own mean"]
    assert "noise STAs minus the noise mean 0.5" in figs[0]._suptitle.get_text().replace("\n", " ")


def gauss_inputs(t3: float, t5: float) -> tuple[dict, dict]:
    """Main-noise STAs ``MU + A + tB`` (t by filter size) and exact Gaussian STAs ``3 A``."""
    t = {"m3": t3, "m5": t5}
    noise = {(a, d): sta(MU + mix(SIZE[a], t[a])) for a, d in KEYS}
    gauss = {(a, d): sta(3 * filt(SIZE[a])) for a, d in KEYS}
    return noise, gauss


def test_gauss_rows_table_and_summary():
    noise, gauss = gauss_inputs(0.1, 0.0)
    rows = rep.gauss_rows(noise, gauss, FILTERS, CH)
    r3 = 1 / math.sqrt(1.01)
    cos3 = math.sqrt(6) / math.sqrt(6 * 1.01 + 0.25 * 9)  # |A|² = |B|² = 6; the offset adds 0.25 per pixel
    assert rows[0]["k"] == 3 and rows[1]["k"] == 5
    assert rows[0]["ru"] == pytest.approx(r3) and rows[0]["rg"] == pytest.approx(1.0)
    assert rows[0]["cu"] == pytest.approx(cos3) and rows[0]["cu0"] == pytest.approx(r3)
    assert rows[0]["cg"] == pytest.approx(1.0)
    table = rep.gauss_table(rows, CH)
    assert "| model | dataset | n | r, U[0, 1] | r, N(0, 1) | cosine, U[0, 1] raw |" in table
    assert "| m3 | MNIST | 1,000 | 0.995 | 1.000 | 0.85 | 0.995 | 1.000 |" in table
    assert rows[0]["gg"] != rows[0]["gg"]   # 3 A exactly: c1 w leaves nothing, so a gain is undefined
    text = rep.gauss_summary(rows, CH)
    assert "r = 1.000 with the filters, and a cosine of 1.000 for the raw STA" in text
    assert "correlate at r = 0.995 to 1.000, 0.000 to 0.005 below the Gaussian ones" in text
    assert "the mean gap is 0.0000 for 5x5 filters, 0.0050 for 3x3 filters." in text
    assert "Adding a cubic term" not in text   # no Gaussian gain to compare with: no claim
    assert "cosine of only 0.82 to 0.85 with the filter" in text and "minus the mean, 0.995 to 1.000" in text
    rows = rep.gauss_rows(*gauss_inputs(0.05, 0.1), FILTERS, CH)  # the larger filters further off
    text = rep.gauss_summary(rows, CH)
    assert "0.0050 for 5x5 filters, 0.0012 for 3x3 filters." in text


def test_cubic_gain_is_one_for_an_exact_cubic_and_small_for_noise():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    assert rep.cubic_gain(0.5 + 2 * w + 0.3 * w ** 3, w, 0.5) == pytest.approx(1.0)
    noisy = 2 * w + 0.01 * torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    assert rep.cubic_gain(noisy, w) < 0.2            # one more regressor fits about 1/24 of pure noise
    assert rep.cubic_gain(2 * w, w) != rep.cubic_gain(2 * w, w)   # nothing left to explain: NaN


def test_gauss_summary_names_where_the_cubic_term_beats_the_gaussian_control():
    g = torch.Generator().manual_seed(1)
    noise, gauss, filters = {}, {}, {}
    for a, d in KEYS:   # random filters: the test patterns' values -1, 0, 1 are their own cubes
        w = filters[a, d] = torch.randn(2, 1, SIZE[a], SIZE[a], generator=g, dtype=torch.float64)
        noise[a, d] = sta(MU + 2 * w + 0.5 * w ** 3 + 0.001 * torch.randn(w.shape, generator=g, dtype=torch.float64))
        gauss[a, d] = sta(3 * w + 0.01 * torch.randn(w.shape, generator=g, dtype=torch.float64))
    rows = rep.gauss_rows(noise, gauss, filters, CH)
    assert all(r["gu"] > 0.9 and r["gg"] < 0.5 for r in rows)
    text = rep.gauss_summary(rows, CH)
    assert "the cubic term explains more than that control in 4 of 4 model–dataset pairs." in text


def test_gauss_figures_show_the_paper_model_per_dataset():
    noise, gauss = gauss_inputs(0.0, 0.0)
    figs = rep.gauss_figures(noise, gauss, FILTERS, CH, arch="m3")
    assert len(figs) == len(DATASETS) and all(isinstance(f, Figure) for f in figs)
    assert figs[0]._suptitle.get_text().startswith("m3 on MNIST, conv1")


def test_last_table_and_figures():
    noise = {(a, d): sta(filt(SIZE[a]), layer="conv9") for a, d in KEYS}
    real = {(a, d): sta(torch.stack([mix(SIZE[a], 1.0)[0], filt(SIZE[a])[1]]), layer="conv9") for a, d in KEYS}
    table = rep.last_table(noise, real, CH)
    assert "| m5 | MNIST | conv9 | 5x5 | 9 | 1.00 | 0.85 |" in table
    figs = rep.last_figures(noise, real, CH)
    assert len(figs) == len(KEYS) and all(isinstance(f, Figure) for f in figs)


def stc(vec_sign: float, largest: float) -> SpikeTriggeredCovariance:
    """Three channels of 3x3 windows; the null band is [-0.01, 0.01] at every rank, channel 2 never fired.
    Channel 0: λ from +0.005 down to -0.5, the filter A the eigenvector of -0.5 (1 outside the band).
    Channel 1: λ from ``largest`` down to -0.02, ``vec_sign`` B the eigenvector of ``largest``, B that of -0.02."""
    d = 9
    a, b = patterns(3)
    ev = torch.zeros(3, d, dtype=torch.float64)
    ev[0, 0], ev[0, -1] = 0.005, -0.5
    ev[1, 0], ev[1, -1] = largest, -0.02
    ev[2] = float("nan")
    vecs = torch.zeros(3, d, 1, 3, 3, dtype=torch.float64)
    vecs[0, -1], vecs[1, 0], vecs[1, -1], vecs[2] = a, vec_sign * b, b, float("nan")
    null = torch.stack([torch.full((3, d), -0.01, dtype=torch.float64), torch.full((3, d), 0.01, dtype=torch.float64)])
    filters = torch.cat([filt(3), filt(3)[:1]]).double()
    return SpikeTriggeredCovariance(
        layer="conv1", sta=filters.clone(), covariance=torch.zeros(3, d, d, dtype=torch.float64),
        noise_covariance=torch.eye(d, dtype=torch.float64), eigenvalues=ev, eigenvectors=vecs, null_eigenvalues=null,
        null_offsets=((3, 3), (6, 6)), weight=torch.ones(3, dtype=torch.float64),
        rf=ReceptiveField((3, 3), (1, 1), (0, 0), (3, 3)), positions=9, n_samples=500, stimulus={"kind": "uniform"})


def test_stc_rows_and_summary():
    # m3: channel 1's extreme eigenvalue is +0.3 (positive, its eigenvector -B: |r| = 1); m5: it is -0.02 (B)
    stcs = {(a, d): stc(-1.0, 0.3 if a == "m3" else 0.005) for a, d in KEYS}
    filters = {k: torch.cat([filt(3), filt(3)[:1]]).float() for k in KEYS}
    rows = rep.stc_rows(stcs, filters, CH)
    assert rows[0] == {"model": "m3", "dataset": "MNIST", "k": 2, "nulls": 2, "sig": 2, "expected": pytest.approx(4 / 3),
                       "nsig": 1.5, "neg": 0.5, "r": pytest.approx(1.0), "sta": pytest.approx(1.0)}
    assert rows[1]["neg"] == 1.0 and rows[1]["nsig"] == 1.0  # m5: ch 1's -0.02 is its extreme, +0.005 inside
    table, prose = rep.stc_summary(rows)
    assert "| m3 | MNIST | 2 | 2 | 1.3 | 1.5 | 50% | 1.00 | 1.00 |" in table
    assert "| m5 | MNIST | 2 | 2 | 1.3 | 1.0 | 100% | 1.00 | 1.00 |" in table
    assert "extreme eigenvalue is negative in 50% to 100% of the channels" in prose
    assert "Channels average 1.0 to 1.5 eigenvalues outside the null band" in prose
    assert prose.endswith("The band comes from 2 nulls, so a channel without structure has its largest or smallest "
                          "eigenvalue outside it with probability 2/3 = 66.7%: 4 of 4 model–dataset pairs have more "
                          "such channels than that expects.")
    figs = rep.stc_figures(stcs, filters, CH)
    assert len(figs) == len(KEYS) and all(isinstance(f, Figure) for f in figs)
    assert isinstance(rep.eigenvalue_figure(stcs, CH), Figure)


def convergence(center_t: list[float], k: int) -> STAConvergence:
    """Sizes 16, 64, 256: pooled STAs exactly the filter; centre STAs at r = 1 / sqrt(1 + t²)."""
    sizes = [16, 64, 256]
    return STAConvergence(
        layer="conv1", sizes=sizes, center=torch.stack([mix(k, t) for t in center_t]),
        pooled=torch.stack([filt(k)] * 3), center_weight=torch.ones(3, 2, dtype=torch.float64),
        pooled_weight=torch.ones(3, 2, dtype=torch.float64), act_sum=torch.ones(3, 2, dtype=torch.float64),
        rf=ReceptiveField((k, k), (1, 1), (0, 0), (3, 3)), positions=9, stimulus={"kind": "uniform"})


T_05, T_08, T_095 = math.sqrt(3), 0.75, math.sqrt(1 / 0.95 ** 2 - 1)  # r = 0.5, 0.8, 0.95


def test_convergence_rows_and_summary():
    first = {(a, d): convergence([T_05, T_08, T_095], SIZE[a]) for a, d in KEYS}
    rows = rep.convergence_rows(first, FILTERS, CH)
    assert rows[0]["p"] == 16.0 and rows[0]["c"] == 256.0 and rows[0]["c0"] == pytest.approx(0.5)
    table, prose = rep.convergence_summary(rows)
    assert "| model | dataset | pooled r at n = 16 | centre r at n = 16 | n: pooled r >= 0.9 |" in table
    assert "| m3 | MNIST | 1.000 | 0.50 | 16 | 256 | 256 | 0.95 |" in table
    assert "already at r >= 1.000 with the filter after 16 samples" in prose
    assert prose.endswith("the centre unit needs up to 256 samples to reach r = 0.9.")
    first["m5", "mnist"] = convergence([T_05, T_05, T_08], 5)
    _, prose = rep.convergence_summary(rep.convergence_rows(first, FILTERS, CH))
    assert prose.endswith("does not reach r = 0.9 within 256 samples for 1 of 4 model–dataset pairs.")
    figs = rep.convergence_figures(first, first, FILTERS, CH)
    assert len(figs) == len(DATASETS) and all(isinstance(f, Figure) for f in figs)
