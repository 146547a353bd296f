"""Chapter 5's tables, sentences and figures: first- and last-layer STAs, uniform against Gaussian noise,
spike-triggered covariance and the convergence of the STA estimates.

Every function takes the chapter's study results, keyed by ``(model, dataset)`` over ``ch.cnns`` and
``ch.datasets``: :class:`~wna_helpers.methods.sta.SpikeTriggeredAverage` (from
:func:`~wna_helpers.book.studies.study_sta`), :class:`~wna_helpers.methods.stc.SpikeTriggeredCovariance`,
:class:`~wna_helpers.methods.convergence.STAConvergence` and the first-layer filters ``(K, C, h, w)``,
and the :class:`~wna_helpers.book.chapter.Chapter`; it returns what the chapter shows, in order.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from matplotlib.figure import Figure

from ...engine.stimuli import Gaussian, Stimulus, Uniform
from ...methods.convergence import STAConvergence
from ...methods.sta import SpikeTriggeredAverage, filter_correlation
from ...methods.stc import SpikeTriggeredCovariance
from ..chapter import Chapter
from ..criteria import R_LEVEL, UNIT_YLIM
from ..measures import first_reaching
from ..noise_study import KIND_LABELS
from ..plots import plot_curve_grid, plot_filters_vs_sta, plot_image_rows
from ..report import dataset_label, markdown_table

__all__ = ["SHOWN", "EIGEN_CHANNELS", "noise_mean", "filter_figures", "filter_rows", "filter_table",
           "filter_summary", "cubic_gain", "gauss_rows", "gauss_table", "gauss_figures", "gauss_summary", "last_figures",
           "last_table", "stc_figures", "eigenvalue_figure", "stc_rows", "stc_summary", "convergence_figures",
           "convergence_rows", "convergence_summary"]

Key = tuple[str, str]
STAs = Mapping[Key, SpikeTriggeredAverage]
Filters = Mapping[Key, torch.Tensor]
Rows = list[dict[str, object]]

#: Channels shown per figure of STAs.
SHOWN = 16
#: Channels whose STC eigenvalues are drawn by rank.
EIGEN_CHANNELS = 4


def noise_mean(noise: Stimulus) -> float:
    """The mean pixel value of ``noise``: ``(low + high) / 2`` for uniform noise, ``mean`` for Gaussian noise.

    Raises:
        ValueError: another kind of stimulus.
    """
    if isinstance(noise, Uniform):
        return 0.5 * (noise.low + noise.high)
    if isinstance(noise, Gaussian):
        return float(noise.mean)
    raise ValueError(f"no noise mean for stimuli of kind {noise.kind!r}: use uniform or Gaussian noise")


def _minus_own_mean(sta: torch.Tensor) -> torch.Tensor:
    """Each channel of ``sta`` ``(K, C, h, w)`` minus the mean of its own pixels."""
    return sta - sta.mean(dim=tuple(range(1, sta.dim())), keepdim=True)


def _pairs(ch: Chapter) -> list[Key]:
    return [(a, d) for d in ch.datasets for a in ch.cnns]


def _span(rows: Rows, key: str | Callable[[dict[str, object]], float], fmt: str) -> str:
    """"min to max" of a column (or of a function of a row) over ``rows``, formatted with ``fmt``; the one value
    when both print alike."""
    vals = [key(r) if callable(key) else r[key] for r in rows]
    low, high = f"{min(vals):{fmt}}", f"{max(vals):{fmt}}"
    return low if low == high else f"{low} to {high}"


# ---------------------------------------------------------------- first layer

def filter_figures(noise: STAs, real: STAs, filters: Filters, ch: Chapter) -> list[Figure]:
    """Per CNN and dataset: the learned first-layer filters above the pooled and centre-unit noise STAs minus
    the noise mean (:func:`noise_mean`) and the pooled real-image STA minus each channel's own mean; r (column
    titles) is the correlation of the pooled noise STA with the filter, which the subtraction does not change."""
    mu = noise_mean(ch.noise)
    figs = []
    for a, d in _pairs(ch):
        sn, sr, w = noise[a, d], real[a, d], filters[a, d]
        figs.append(plot_filters_vs_sta(
            w, {"noise STA pooled\nminus noise mean": sn.pooled - mu,
                "noise STA centre\nminus noise mean": sn.center - mu,
                "real-image STA\npooled, minus\nits own mean": _minus_own_mean(sr.pooled)},
            filter_correlation(sn.pooled, w),
            f"{a} on {dataset_label(d)}, {sn.layer}: filters and STAs ({ch.noise_label}, n = {sn.n_samples:,}, "
            f"{sn.positions} positions pooled; real: {sr.n_samples:,} test images); noise STAs minus the noise "
            f"mean {mu:g}", max_channels=SHOWN))
    return figs


def filter_rows(noise: STAs, real: STAs, filters: Filters, ch: Chapter) -> Rows:
    """One row per CNN and dataset: noise n, mean r of the filters with the pooled and centre noise STAs and
    the pooled real STA, channels never active under noise, channels."""
    rows = []
    for a, d in _pairs(ch):
        sn, sr, w = noise[a, d], real[a, d], filters[a, d]
        rows.append({"model": a, "dataset": dataset_label(d), "n": sn.n_samples,
                     "pooled": float(filter_correlation(sn.pooled, w).nanmean()),
                     "centre": float(filter_correlation(sn.center, w).nanmean()),
                     "real": float(filter_correlation(sr.pooled, w).nanmean()),
                     "dead": int((sn.mean_activation == 0).sum()), "k": int(w.shape[0])})
    return rows


def filter_table(rows: Rows) -> str:
    """The table of :func:`filter_rows`."""
    return markdown_table(rows, {
        "model": "model", "dataset": "dataset", "n": "noise n", "pooled": "r(filter, noise STA pooled)",
        "centre": "r(filter, noise STA centre)", "real": "r(filter, real STA pooled)", "dead": "channels never active",
        "k": "channels"}, {"n": ",", "pooled": ".3f", "centre": ".3f", "real": ".3f"})


def filter_summary(rows: Rows, filters: Filters, ch: Chapter) -> list[str]:
    """Two paragraphs: how alike the first two datasets' filters are per model (alike when every model's mean r
    exceeds :data:`R_LEVEL`), and the ranges of r with the filters of the pooled, centre and real STAs."""
    d0, d1 = ch.datasets[0], ch.datasets[1]
    same = [float(filter_correlation(filters[a, d0], filters[a, d1]).nanmean()) for a in ch.cnns]
    alike = (f"The first-layer filters learned on {dataset_label(d0)} and on {dataset_label(d1)} correlate at mean "
             f"r = {min(same):.2f} to {max(same):.2f} per model: both start from the same seeded initialisation, and "
             f"in the **{ch.profile.name}** profile training moves them "
             + ("little, so the noise STAs of the two datasets look alike." if min(same) > R_LEVEL else
                "apart, so each dataset has its own first-layer filters."))
    ranges = (f"From noise, the pooled STAs match the learned filters at mean r = {_span(rows, 'pooled', '.3f')}; "
              f"the centre unit alone gives {_span(rows, 'centre', '.2f')} at the same n. Real images give much lower "
              f"agreement ({_span(rows, 'real', '.2f')}): their pixels are strongly correlated, so the weighted mean "
              "shows the strokes that drive a unit, not its filter.")
    return [alike, ranges]


# ---------------------------------------------------------------- uniform against Gaussian noise

def cubic_gain(sta: torch.Tensor, w: torch.Tensor, mu: float = 0.0) -> float:
    """How much a cubic term adds to the linear prediction of an STA: per channel, fit ``STA - mu ≈ c1 w``
    and ``≈ c1 w + c3 w³`` (least squares over the pixels), and take the share of the first fit's residual
    sum of squares that the second removes; the mean over the channels with a residual (NaN if none).

    Under Gaussian noise the STA's expectation has no cubic term, so the gain there is what one more regressor
    fits of estimation noise: the control for the same gain under uniform noise at the same n."""
    y = (sta.double() - mu).flatten(1)
    x1 = w.double().flatten(1)
    ok = torch.isfinite(y).all(1) & (x1.norm(dim=1) > 0)
    y, x1 = y[ok], x1[ok]
    if not len(y):
        return float("nan")
    r1 = y - ((y * x1).sum(1) / (x1 * x1).sum(1))[:, None] * x1
    x = torch.stack([x1, x1 ** 3], 2)                                   # (C, D, 2)
    coef = torch.linalg.lstsq(x, y[:, :, None]).solution                # (C, 2, 1)
    r3 = y - (x @ coef).squeeze(2)
    sse1, sse3 = r1.square().sum(1), r3.square().sum(1)
    live = sse1 > 1e-12 * y.square().sum(1).clamp_min(1e-300)
    return float((1 - sse3[live] / sse1[live]).mean()) if bool(live.any()) else float("nan")


def gauss_rows(noise: STAs, gauss: STAs, filters: Filters, ch: Chapter) -> Rows:
    """One row per CNN and dataset: n, filter size, mean r with the filters of the pooled STAs under the main
    and the Gaussian noise, the mean cosines of the raw main-noise STA, of it minus :func:`noise_mean`,
    and of the Gaussian STA, and the :func:`cubic_gain` of each noise's STA."""
    mu = noise_mean(ch.noise)
    rows = []
    for a, d in _pairs(ch):
        su, sg, w = noise[a, d].pooled, gauss[a, d].pooled, filters[a, d]
        rows.append({"model": a, "dataset": dataset_label(d), "n": noise[a, d].n_samples, "k": int(w.shape[-1]),
                     "ru": float(filter_correlation(su, w).nanmean()),
                     "rg": float(filter_correlation(sg, w).nanmean()),
                     "cu": float(filter_correlation(su, w, centered=False).nanmean()),
                     "cu0": float(filter_correlation(su - mu, w, centered=False).nanmean()),
                     "cg": float(filter_correlation(sg, w, centered=False).nanmean()),
                     "gu": cubic_gain(su, w, mu), "gg": cubic_gain(sg, w)})
    return rows


def gauss_table(rows: Rows, ch: Chapter) -> str:
    """The table of :func:`gauss_rows`, the main noise named by its short label."""
    main = KIND_LABELS.get(ch.noise.kind, ch.noise.kind)
    return markdown_table(rows, {
        "model": "model", "dataset": "dataset", "n": "n", "ru": f"r, {main}", "rg": "r, N(0, 1)",
        "cu": f"cosine, {main} raw", "cu0": f"cosine, {main} minus mean", "cg": "cosine, N(0, 1)",
        "gu": f"cubic term's gain, {main}", "gg": "cubic term's gain, N(0, 1)"},
        {"n": ",", "ru": ".3f", "rg": ".3f", "cu": ".2f", "cu0": ".3f", "cg": ".3f", "gu": ".1%", "gg": ".1%"})


def gauss_figures(noise: STAs, gauss: STAs, filters: Filters, ch: Chapter, arch: str = "paper_cnn") -> list[Figure]:
    """Per dataset, for ``arch``: the filters above its pooled main-noise STA minus the noise mean, the same STA
    raw, and the raw Gaussian STA; r is the cosine of the first STA row with the filter."""
    mu = noise_mean(ch.noise)
    figs = []
    for d in ch.datasets:
        su, sg, w = noise[arch, d], gauss[arch, d], filters[arch, d]
        first = su.pooled - mu
        figs.append(plot_filters_vs_sta(
            w, {f"{ch.noise_label}\nminus its mean": first, f"{ch.noise_label}\nraw": su.pooled,
                "N(0, 1)\nraw": sg.pooled}, filter_correlation(first, w, centered=False),
            f"{arch} on {dataset_label(d)}, {su.layer}: pooled STAs (n = {su.n_samples:,}); each panel scaled to its "
            f"maximum, so the raw uniform STA, mostly its offset of {mu:g}, looks flat (r: cosine of the first STA "
            "row)", max_channels=SHOWN))
    return figs


def gauss_summary(rows: Rows, ch: Chapter) -> str:
    """The paragraph on Stein's lemma: the ranges of r and cosine per noise, the mean gap in r between Gaussian
    and main-noise STAs per filter size, whether a cubic term explains more of the main-noise STAs than of the
    Gaussian ones (the estimation-noise control), and the cosine of the raw STA against the STA minus the noise
    mean."""
    gap = {k: sum(r["rg"] - r["ru"] for r in rows if r["k"] == k) / sum(r["k"] == k for r in rows)
           for k in {r["k"] for r in rows}}
    both = [r for r in rows if r["gu"] == r["gu"] and r["gg"] == r["gg"]]
    beyond = [r for r in both if r["gu"] > r["gg"]]
    cubic = (f"Adding a cubic term, $\\mathrm{{STA}} - \\mu \\approx c_1 w + c_3 w^{{\\circ 3}}$, removes "
             f"{_span(both, 'gu', '.1%')} of what $c_1 w$ leaves under {ch.noise_label}, against "
             f"{_span(both, 'gg', '.1%')} for the Gaussian STAs at the same n, whose expectation has no cubic term (so "
             f"that share is estimation noise fitted by one more regressor): the cubic term explains more than that "
             f"control in {len(beyond)} of {len(both)} model–dataset pairs. " if both else "")
    return (f"Gaussian noise gives what Stein's lemma predicts: r = {_span(rows, 'rg', '.3f')} with the "
            f"filters, and a cosine of {_span(rows, 'cg', '.3f')} for the raw STA (the noise mean is 0). Under "
            f"{ch.noise_label} the pooled STAs correlate at r = {_span(rows, 'ru', '.3f')}, "
            f"{_span(rows, lambda r: r['rg'] - r['ru'], '.3f')} below the Gaussian ones at the same n. By filter "
            "size the mean gap is " + ", ".join(f"{gap[k]:.4f} for {k}x{k} filters" for k in sorted(gap, reverse=True))
            + ". " + cubic
            + f"Without subtracting the noise mean the raw uniform STA has a cosine of only "
              f"{_span(rows, 'cu', '.2f')} with the filter; minus the mean, {_span(rows, 'cu0', '.3f')}. "
              "The paper showed raw STAs: they look like their filters only because a plot's colour scale removes "
              "the offset.")


# ---------------------------------------------------------------- last layer

def last_figures(noise: STAs, real: STAs, ch: Chapter) -> list[Figure]:
    """Per CNN and dataset: the first :data:`SHOWN` channels' last-layer STAs, pooled and centre unit from
    noise and pooled from real images, each panel scaled to its maximum."""
    figs = []
    for a, d in _pairs(ch):
        sn, sr = noise[a, d], real[a, d]
        figs.append(plot_image_rows(
            [(sn.pooled[:SHOWN], "noise\npooled", True), (sn.center[:SHOWN], "noise\ncentre unit", True),
             (sr.pooled[:SHOWN], "real images\npooled", True)], [f"ch {i}" for i in range(min(SHOWN, len(sn.pooled)))],
            f"{a} on {dataset_label(d)}, {sn.layer} (window {sn.rf.size[0]}x{sn.rf.size[1]}, {sn.positions} "
            f"positions pooled): STAs from {ch.noise_label} (n = {sn.n_samples:,}) and {sr.n_samples:,} test images",
            shared_signed_scale=True, normalize=True, panel_size=0.85, empty_text="never active"))
    return figs


def last_table(noise: STAs, real: STAs, ch: Chapter) -> str:
    """Per CNN and dataset: the last layer, its window, positions pooled, and the mean r of the centre with
    the pooled noise STA and of the pooled noise with the pooled real STA."""
    rows = [{"model": a, "dataset": dataset_label(d), "layer": noise[a, d].layer,
             "window": f"{noise[a, d].rf.size[0]}x{noise[a, d].rf.size[1]}", "pos": noise[a, d].positions,
             "pc": float(filter_correlation(noise[a, d].center, noise[a, d].pooled).nanmean()),
             "nr": float(filter_correlation(noise[a, d].pooled, real[a, d].pooled).nanmean())} for a, d in _pairs(ch)]
    return markdown_table(rows, {
        "model": "model", "dataset": "dataset", "layer": "layer", "window": "window", "pos": "positions pooled",
        "pc": "r(centre, pooled), noise", "nr": "r(noise STA, real STA), pooled"}, {"pc": ".2f", "nr": ".2f"})


# ---------------------------------------------------------------- spike-triggered covariance

Covariances = Mapping[Key, SpikeTriggeredCovariance]


def stc_figures(stc: Covariances, filters: Filters, ch: Chapter) -> list[Figure]:
    """Per CNN and dataset: filter, STA and the eigenvectors of the largest and the smallest STC eigenvalue of
    the first :data:`SHOWN` channels, λ under each panel with a star when it lies outside the null band."""
    figs = []
    for a, d in _pairs(ch):
        s, w = stc[a, d], filters[a, d]
        k = min(SHOWN, len(w))
        ev, sig = s.eigenvalues, s.significant_eigen()
        note = [[f"λ={float(ev[i, j]):+.3f}" + ("*" if bool(sig[i, j]) else "") for i in range(k)] for j in (0, -1)]
        figs.append(plot_image_rows(
            [(w[:k], "learned filter", True), (s.sta[:k], "STA", True),
             (s.eigenvectors[:k, 0], "STC eigenvector\nlargest λ", True, note[0]),
             (s.eigenvectors[:k, -1], "STC eigenvector\nsmallest λ", True, note[1])],
            [f"ch {i}" for i in range(k)],
            f"{a} on {dataset_label(d)}, {s.layer}: filter, STA and STC eigenvectors ({ch.noise_label}, "
            f"n = {s.n_samples:,}, {s.positions} positions pooled)", shared_signed_scale=True, normalize=True,
            panel_size=0.85, empty_text="never active"))
    return figs


def eigenvalue_figure(stc: Covariances, ch: Chapter) -> Figure:
    """For the first CNN, one panel per dataset: the STC eigenvalues by rank of the first
    :data:`EIGEN_CHANNELS` channels and channel 0's null band."""
    a0 = ch.cnns[0]

    def panel(s: SpikeTriggeredCovariance) -> dict[str, object]:
        ranks = list(range(1, s.eigenvalues.shape[1] + 1))
        low, high = s.null_band
        return {**{f"ch {i}": (ranks, s.eigenvalues[i]) for i in range(min(EIGEN_CHANNELS, len(s.eigenvalues)))},
                "null band, ch 0 (low)": (ranks, low[0]), "null band, ch 0 (high)": (ranks, high[0])}
    return plot_curve_grid(
        None, {dataset_label(d): panel(stc[a0, d]) for d in ch.datasets},
        f"{a0}, {stc[a0, ch.datasets[0]].layer}: STC eigenvalues by rank, {EIGEN_CHANNELS} channels, and the null "
        "band of channel 0", "rank", "eigenvalue", styles={"null band": "k:"})


def stc_rows(stc: Covariances, filters: Filters, ch: Chapter) -> Rows:
    """One row per CNN and dataset, over the channels that fired: how many, how many have an eigenvalue
    outside the null band and how many would by chance (``expected``: ``2 / (S + 1)`` of them, ``S`` nulls), the
    mean number outside per channel, the share whose extreme eigenvalue is negative, the mean absolute r of its
    eigenvector with the filter, and the mean r of the STA with the filter."""
    rows = []
    for a, d in _pairs(ch):
        s, w = stc[a, d], filters[a, d]
        live = ~torch.isnan(s.eigenvalues).any(1)
        ev, sig = s.eigenvalues[live], s.significant_eigen()[live]
        j = ev.abs().argmax(1)
        vec = s.eigenvectors[live][torch.arange(len(j)), j]
        r = filter_correlation(vec, w[live].double()).abs()
        nulls = len(s.null_eigenvalues)
        rows.append({"model": a, "dataset": dataset_label(d), "k": int(live.sum()), "nulls": nulls,
                     "sig": int(sig.any(1).sum()), "expected": 2 * int(live.sum()) / (nulls + 1),
                     "nsig": float(sig.sum(1).double().mean()),
                     "neg": float((ev.gather(1, j[:, None]).squeeze(1) < 0).double().mean()),
                     "r": float(r.mean()), "sta": float(filter_correlation(s.sta[live], w[live].double()).nanmean())})
    return rows


def stc_summary(rows: Rows) -> list[str]:
    """The table of :func:`stc_rows` and the paragraph on the extreme eigenvalue, the count outside the band and
    how many channels chance alone would put outside it."""
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "k": "active channels",
        "sig": "channels with an eigenvalue outside the band", "expected": "expected by chance",
        "nsig": "eigenvalues outside, per channel", "neg": "extreme eigenvalue negative",
        "r": "abs. r(filter, its eigenvector)", "sta": "r(filter, STA)"},
        {"expected": ".1f", "nsig": ".1f", "neg": ".0%", "r": ".2f", "sta": ".2f"})
    nulls = rows[0]["nulls"]
    beyond = [r for r in rows if r["sig"] > r["expected"]]
    prose = (f"For the first conv layers the extreme eigenvalue is negative in {_span(rows, 'neg', '.0%')} of the "
             f"channels, and its eigenvector matches the filter at mean |r| = {_span(rows, 'r', '.2f')}: the "
             "suppressed direction of a rectified linear unit, as expected. Channels average "
             f"{_span(rows, 'nsig', '.1f')} eigenvalues outside the null band, not one. Uniform noise is not "
             "Gaussian: with bounded pixels, directions orthogonal to the filter are uncorrelated with its output but "
             "not independent of it, so a rectified filter also changes the spread of the noise along them (under "
             f"Gaussian noise only the filter's eigenvalue leaves the band, as the tests check). The band comes from "
             f"{nulls} nulls, so a channel without structure has its largest or smallest eigenvalue outside it with "
             f"probability 2/{nulls + 1} = {2 / (nulls + 1):.1%}: {len(beyond)} of {len(rows)} model–dataset pairs "
             f"have more such channels than that expects.")
    return [table, prose]


# ---------------------------------------------------------------- convergence

Convergences = Mapping[Key, STAConvergence]


def convergence_figures(first: Convergences, last: Convergences, filters: Filters, ch: Chapter) -> list[Figure]:
    """Per dataset: mean r over channels against n, of the first layer's STAs with the filters and of the last
    layer's with its final pooled STA; solid pooled, dashed centre unit, a line at :data:`R_LEVEL`."""
    styles = {f"{a} {k}": ("o-" if k == "pooled" else "s--") for a in ch.cnns for k in ("pooled", "centre")}
    figs = []
    for d in ch.datasets:
        first_panel, last_panel = {}, {}
        for a in ch.cnns:
            c1, cl = first[a, d], last[a, d]
            rf, rl = c1.filter_correlation(filters[a, d]), cl.correlation_with_final()
            for k, key in (("pooled", "pooled"), ("centre", "center")):
                first_panel[f"{a} {k}"] = (c1.sizes, rf[key].nanmean(1))
                last_panel[f"{a} {k}"] = (cl.sizes, rl[key].nanmean(1))
        figs.append(plot_curve_grid(
            None, {"first conv layer: r with the learned filter": first_panel,
                   "last conv layer: r with the final pooled STA": last_panel},
            f"{dataset_label(d)}: convergence of STA estimates with the number of samples of {ch.noise_label}",
            "n (noise samples)", "mean r over channels", logx=True, hline=R_LEVEL, hline_label=f"r = {R_LEVEL}",
            ylim=UNIT_YLIM, styles=styles))
    return figs


def convergence_rows(first: Convergences, filters: Filters, ch: Chapter) -> Rows:
    """One row per CNN and dataset: the first n at which the pooled and the centre first-layer STA reach mean
    r = :data:`R_LEVEL` with the filters (NaN: never), r at the smallest n, the largest n and centre r there."""
    rows = []
    for a, d in _pairs(ch):
        c1 = first[a, d]
        rf = c1.filter_correlation(filters[a, d])
        rows.append({"model": a, "dataset": dataset_label(d),
                     "p": first_reaching(c1.sizes, rf["pooled"].nanmean(1), R_LEVEL),
                     "c": first_reaching(c1.sizes, rf["center"].nanmean(1), R_LEVEL),
                     "p0": float(rf["pooled"][0].nanmean()), "c0": float(rf["center"][0].nanmean()), "n0": c1.sizes[0],
                     "cn": float(rf["center"][-1].nanmean()), "n": c1.sizes[-1]})
    return rows


def convergence_summary(rows: Rows) -> list[str]:
    """The table of :func:`convergence_rows` and the paragraph comparing the pooled STA at the smallest n with
    how long the centre unit needs (or for how many pairs it never gets there)."""
    n0, n = rows[0]["n0"], rows[0]["n"]
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "p0": f"pooled r at n = {n0:,}", "c0": f"centre r at n = {n0:,}",
        "p": f"n: pooled r >= {R_LEVEL}", "c": f"n: centre r >= {R_LEVEL}", "n": "largest n",
        "cn": "centre r at largest n"}, {"p0": ".3f", "c0": ".2f", "p": ",.0f", "c": ",.0f", "n": ",", "cn": ".2f"})
    never = sum(1 for r in rows if r["c"] != r["c"])
    prose = (f"Pooling over positions multiplies the number of triggers by the number of positions, so the pooled "
             f"first-layer STA is already at r >= {min(r['p0'] for r in rows):.3f} with the filter after {n0:,} "
             "samples, while the centre unit "
             + (f"does not reach r = {R_LEVEL} within {n:,} samples for {never} of {len(rows)} model–dataset pairs."
                if never else f"needs up to {max(r['c'] for r in rows):,.0f} samples to reach r = {R_LEVEL}."))
    return [table, prose]
