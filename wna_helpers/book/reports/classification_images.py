"""Chapter 3's tables, sentences and figures of the main-noise CIs: where noise goes, the CIs next to the class
means, which pixels differ from chance, logit images, convergence and split-half reliability.

Every function takes the chapter's study results, keyed by ``(model, dataset)`` (the CIs of
:func:`~wna_helpers.book.studies.study_ci`, the snapshots of :func:`~wna_helpers.book.studies.study_ci_convergence`),
and the :class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order. The other noise
kinds and noise mixed with signal are in :mod:`~wna_helpers.book.reports.ci_noise`.
"""
from __future__ import annotations

from typing import Mapping

import torch
from matplotlib.figure import Figure

from ...methods.ci import ClassificationImages
from ...methods.convergence import CIConvergence
from ..chapter import Chapter
from ..criteria import ABOVE_NULL, CLUSTER_Z, FWER, HALF, MIN_COUNT, R_LEVEL, REACHED, UNIT_YLIM
from ..measures import ci_significance, class_correlation, first_reaching, noise_bias, stable_from
from ..plots import plot_class_histograms, plot_curve_grid, plot_image_rows, run_label
from ..report import dataset_label, markdown_table

__all__ = ["main_noise", "run_table", "histogram_figures", "bias_rows", "bias_summary", "ci_figures",
           "ci_correlations", "correlation_summary", "zmap_figures", "significance_summary", "logit_figures",
           "logit_summary", "convergence_figures", "convergence_rows", "convergence_summary", "reliability_figures",
           "reliability_tables", "number_word"]

#: (model, dataset) -> the main noise's classification images.
Runs = Mapping[tuple[str, str], ClassificationImages]
#: (model, dataset) -> the snapshots of the same run.
Convs = Mapping[tuple[str, str], CIConvergence]
#: dataset -> the mean training image of each class, ``(K, *input_shape)``.
Means = Mapping[str, torch.Tensor]


def _pairs(ch: Chapter) -> list[tuple[str, str]]:
    """Every (model, dataset), datasets outer: the order of the chapter's tables."""
    return [(a, d) for d in ch.datasets for a in ch.models]


def main_noise(ch: Chapter) -> str:
    """The line that names the main noise of this build."""
    return f"Main noise of this build: **{ch.noise_label}**."


def run_table(cis: Runs, accuracy: Mapping[tuple[str, str], float], ch: Chapter) -> str:
    """Per model and dataset: the test accuracy and the noise samples behind the CIs."""
    return markdown_table(
        [{"model": a, "dataset": dataset_label(d), "accuracy": accuracy[a, d], "n": cis[a, d].n_samples}
         for a, d in _pairs(ch)],
        {"model": "model", "dataset": "dataset", "accuracy": "test accuracy", "n": "noise samples n"},
        {"accuracy": ".1%", "n": ","})


def histogram_figures(cis: Runs, accuracy: Mapping[tuple[str, str], float], ch: Chapter) -> list[Figure]:
    """Per dataset: every model's histogram of the classes it gives the noise."""
    return [plot_class_histograms(
        {f"{run_label(a, n=cis[a, d].n_samples)} (test acc. {accuracy[a, d]:.1%})": cis[a, d].counts
         for a in ch.models}, ch.classes[d], f"{dataset_label(d)}: predicted class of pure {ch.noise_label}")
        for d in ch.datasets]


def bias_rows(cis: Runs, ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model: :func:`~wna_helpers.book.measures.noise_bias` (a class counts as reached
    with :data:`~wna_helpers.book.criteria.REACHED` of the noise) and the classes never predicted, joined."""
    rows = []
    for a, d in _pairs(ch):
        b = noise_bias(cis[a, d], ch.classes[d], REACHED)
        rows.append({"model": a, "dataset": dataset_label(d), **b, "empty": ", ".join(b["empty_classes"]) or "none"})
    return rows


def bias_summary(rows: list[dict[str, object]], ch: Chapter) -> list[str]:
    """The table of where noise goes, and per dataset: the models putting at least :data:`HALF` of it into one
    class, the most biased model and the most even one."""
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "top_class": "noise mostly called", "top_share": "share",
        "entropy_bits": "entropy (bits)", "classes_reached": f"classes with >= {REACHED * 100:g} %",
        "empty": "classes never predicted"}, {"top_share": ".1%", "entropy_bits": ".2f"})
    lines = []
    for d in ch.datasets:
        b = {r["model"]: r for r in rows if r["dataset"] == dataset_label(d)}
        half = [a for a in b if b[a]["top_share"] >= HALF]
        most = max(b, key=lambda a: b[a]["top_share"])
        flat = max(b, key=lambda a: b[a]["entropy_bits"])
        which = ", ".join(f"`{a}` → {b[a]['top_class']} {b[a]['top_share']:.0%}" for a in half) or "none"
        lines.append(
            f"- **{dataset_label(d)}**: {len(half)} of {len(b)} models put at least {_share_word(HALF)} of the noise "
            f"into one class ({which}). The most biased is `{most}` ({b[most]['top_share']:.1%} to "
            f"{b[most]['top_class']}, entropy {b[most]['entropy_bits']:.2f} bits); the most even is `{flat}` "
            f"({b[flat]['entropy_bits']:.2f} of {b[flat]['max_entropy_bits']:.2f} bits).")
    return [table, "\n".join(lines)]


def _share_word(share: float) -> str:
    """"half" for 0.5, else the share as a percentage."""
    return "half" if share == 0.5 else f"{share:.0%}"


def ci_figures(cis: Runs, means: Means, ch: Chapter) -> list[Figure]:
    """Per dataset: the class means on top, then every model's CIs minus the mean of all the noise, each row on
    its own scale set by the classes with at least :data:`MIN_COUNT` samples."""
    figs = []
    for d in ch.datasets:
        rows = [(means[d], "class mean\n(training set)", False)]
        rows += [(cis[a, d].images - cis[a, d].mean_stimulus, f"{a} CI\nn={cis[a, d].n_samples:,}", True,
                  cis[a, d].counts) for a in ch.models]
        figs.append(plot_image_rows(
            rows, ch.classes[d], f"{dataset_label(d)}: classification images from {ch.noise_label} minus the mean of "
            f"all the noise (n per model at the left, N_c under each panel) and class means", panel_size=1.0,
            min_count=MIN_COUNT))
    return figs


def ci_correlations(cis: Runs, means: Means) -> dict[tuple[str, str], torch.Tensor]:
    """Per pair, Pearson r of each class's CI with its class mean (NaN below :data:`MIN_COUNT` samples)."""
    return {(a, d): class_correlation(ci.images, means[d], ci.counts) for (a, d), ci in cis.items()}


def _nanmean(r: torch.Tensor) -> float:
    return float(r.nanmean())


def _best(values: Mapping[str, float]) -> str:
    """The key of the largest value, NaN counting as the smallest (the first key if all are NaN)."""
    return max(values, key=lambda a: values[a] if values[a] == values[a] else float("-inf"))


def correlation_summary(cis: Runs, means: Means, ch: Chapter) -> list[str]:
    """Per model the mean r of CI and class mean per dataset and the classes behind it; which CIs look most
    like the class means, and the pairs whose noise reaches a single class."""
    corr = ci_correlations(cis, means)
    rows = [{"model": a, **{f"{d}_r": _nanmean(corr[a, d]) for d in ch.datasets},
             **{f"{d}_k": int((~corr[a, d].isnan()).sum()) for d in ch.datasets}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{f"{d}_r": f"{dataset_label(d)}: mean r" for d in ch.datasets},
                                  **{f"{d}_k": f"{dataset_label(d)}: classes used" for d in ch.datasets}},
                           {f"{d}_r": ".2f" for d in ch.datasets})
    best = {d: _best({a: _nanmean(corr[a, d]) for a in ch.models}) for d in ch.datasets}
    single = [f"`{a}` on {dataset_label(d)}" for a, d in _pairs(ch)
              if int((cis[a, d].proportions >= REACHED).sum()) == 1]
    prose = ("The CIs that look most like the class means come from " + "; ".join(
        f"`{best[d]}` on {dataset_label(d)} (mean r = {_nanmean(corr[best[d], d]):.2f})" for d in ch.datasets)
        + ". For `logreg` under Gaussian noise the CI is, in expectation, proportional to its weight template "
          "$w_c - \\bar w$ (see the method notes), and under uniform noise close to it, so its CIs show the learned "
          "templates; the other models respond to noise through nonlinear features. "
        + (f"{len(single)} model–dataset pairs ({', '.join(single)}) send the noise to a single class; their only "
           f"CI is the mean of all the noise and says nothing about the classes." if single else ""))
    return [table, prose]


def zmap_figures(cis: Runs, ch: Chapter) -> list[Figure]:
    """Per dataset: every model's z-maps against its permutation null, significant pixels (FWER) outlined."""
    figs = []
    for d in ch.datasets:
        runs = [cis[a, d] for a in ch.models]
        figs.append(plot_image_rows(
            [(ci.zmap, f"{a}\nz-map", True, ci.counts) for a, ci in zip(ch.models, runs)], ch.classes[d],
            f"{dataset_label(d)}: z-maps of the CIs against {len(runs[0].null_images)} label-permuted null CIs "
            f"({ch.noise_label}); significant pixels (FWER {FWER:g}) outlined", panel_size=1.0, colorbar_label="z",
            empty_text="no z-map", outlines=[ci.significant(FWER) for ci in runs]))
    return figs


def significance_summary(cis: Runs, ch: Chapter) -> list[str]:
    """The table of :func:`~wna_helpers.book.measures.ci_significance` (FWER, clusters of ``|z| >``
    :data:`CLUSTER_Z`, info, reliability) and per dataset the range of significant pixels over models."""
    sig = {k: ci_significance(cis[k], FWER, CLUSTER_Z) for k in _pairs(ch)}
    table = markdown_table(
        [{"model": a, "dataset": dataset_label(d), "n": cis[a, d].n_samples, **sig[a, d]} for a, d in _pairs(ch)],
        {"model": "model", "dataset": "dataset", "n": "n", "classes": "classes with samples",
         "classes_sig": "classes with a significant pixel", "share": f"pixels significant (FWER {FWER:g})",
         "cluster_share": "pixels in significant clusters", "info_median": "median info",
         "reliability_median": "median reliability"},
        {"n": ",", "share": ".1%", "cluster_share": ".1%", "info_median": ".1f", "reliability_median": ".2f"})
    lines = []
    for d in ch.datasets:
        s = {a: sig[a, d] for a in ch.models}
        most = max(s, key=lambda a: s[a]["share"])
        least = min(s, key=lambda a: s[a]["share"])
        none = [a for a in s if s[a]["classes_sig"] == 0]
        lines.append(
            f"- **{dataset_label(d)}**: from {s[least]['share']:.1%} (`{least}`) to {s[most]['share']:.1%} "
            f"(`{most}`) of the CI pixels differ from chance at FWER {FWER:g}; "
            + (f"no pixel passes for {', '.join(f'`{a}`' for a in none)}. " if none else
               "every model has at least one class with significant pixels. ")
            + f"Clusters add pixels that the pixel test misses: "
              f"{sum(s[a]['cluster_share'] > s[a]['share'] for a in s)} of {len(s)} models have more pixels in "
              f"significant clusters than significant pixels.")
    return [table, "\n".join(lines)]


def logit_figures(cis: Runs, ch: Chapter) -> list[Figure]:
    """Per dataset: every model's logit images (the logit of each class regressed on the noise)."""
    return [plot_image_rows(
        [(cis[a, d].logit_images, f"{a}\nlogit image", True) for a in ch.models], ch.classes[d],
        f"{dataset_label(d)}: logit images from {ch.noise_label} (the logit of each class regressed on the noise, "
        f"every class)", panel_size=1.0, colorbar_label="slope") for d in ch.datasets]


def logit_summary(cis: Runs, means: Means, ch: Chapter) -> list[str]:
    """Per model and dataset the mean r of logit image and class mean (every class) next to the CIs' (the
    classes with :data:`MIN_COUNT` samples); the pairs where the logit images resemble the means more."""
    corr = ci_correlations(cis, means)
    lcorr = {(a, d): class_correlation(cis[a, d].logit_images, means[d]) for a, d in _pairs(ch)}
    rows = [{"model": a, **{f"{d}_l": _nanmean(lcorr[a, d]) for d in ch.datasets},
             **{f"{d}_c": _nanmean(corr[a, d]) for d in ch.datasets}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{
        k: v for d in ch.datasets for k, v in (
            (f"{d}_l", f"{dataset_label(d)}: logit image r (all {ch.num_classes} classes)"),
            (f"{d}_c", f"{dataset_label(d)}: CI r (classes used above)"))}},
        {**{f"{d}_l": ".2f" for d in ch.datasets}, **{f"{d}_c": ".2f" for d in ch.datasets}})
    gain = [f"`{a}` on {dataset_label(d)}" for a, d in _pairs(ch)
            if _nanmean(lcorr[a, d]) > (_nanmean(corr[a, d]) if (~corr[a, d].isnan()).any() else -1.0)]
    prose = (f"The table correlates each image with its class mean, as above. The logit images cover all "
             f"{number_word(ch.num_classes)} classes; they resemble the class means more than the argmax CIs do "
             f"for {len(gain)} of {len(_pairs(ch))} model–dataset pairs. Where argmax starves a class, its logit "
             f"image is the only map there is.")
    return [table, prose]


def number_word(k: int) -> str:
    """``k`` in words for the small counts the prose names ("ten" classes), else its digits."""
    return {2: "two", 3: "three", 10: "ten"}.get(k, str(k))


def convergence_figures(conv: Convs, ch: Chapter) -> list[Figure]:
    """Per dataset, the mean r of the CI after n samples with the final CI (and the no-signal curve of the
    longest run), then per class r against the samples the class had received."""
    longest = {d: max(ch.models, key=lambda a: conv[a, d].sizes[-1]) for d in ch.datasets}
    mean = plot_curve_grid(
        None, {dataset_label(d): {
            **{a: (conv[a, d].sizes, conv[a, d].mean_correlation()) for a in ch.models},
            f"no signal: √(n/N), N = {conv[longest[d], d].sizes[-1]:,}":
                (conv[longest[d], d].sizes, conv[longest[d], d].null_correlation())} for d in ch.datasets},
        f"Mean correlation of the CI after n samples with the final CI ({ch.noise_label})", "n (noise samples)",
        "r with the final CI", logx=True, hline=R_LEVEL, hline_label=f"r = {R_LEVEL}", ylim=UNIT_YLIM,
        styles={"no signal": "k:"})
    per_class = plot_curve_grid(
        None, {dataset_label(d): {a: conv[a, d].class_points() for a in ch.models} for d in ch.datasets},
        "Per class: correlation with the final CI against the samples the class received", "N_c (samples of the class)",
        "r with the final CI", logx=True, hline=R_LEVEL, hline_label=f"r = {R_LEVEL}", ylim=UNIT_YLIM,
        styles={a: "." for a in ch.models})
    return [mean, per_class]


def convergence_rows(conv: Convs, side: Mapping[str, int], ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model: the final n; the mean r with the final CI, and the no-signal r, at the
    side comparison's n (``side``: model -> n, one of the sizes); the n where the mean r reaches
    :data:`R_LEVEL`, and the N_c from which every class stays at or above it (``at``: the side n)."""
    rows = []
    for a, d in _pairs(ch):
        c = conv[a, d]
        nc, r = c.class_points()
        i = c.sizes.index(side[a])
        rows.append({"model": a, "dataset": dataset_label(d), "n": c.sizes[-1], "at": side[a],
                     "side": float(c.mean_correlation()[i]), "null": float(c.null_correlation()[i]),
                     "reach": first_reaching(c.sizes, c.mean_correlation(), R_LEVEL),
                     "nc": stable_from(nc, r, R_LEVEL)})
    return rows


def convergence_summary(rows: list[dict[str, object]]) -> list[str]:
    """The convergence table (its headers give the side comparison's n as a share of the first row's final n)
    and how many pairs are above the no-signal line by more than :data:`ABOVE_NULL` at that n."""
    frac = rows[0]["at"] / rows[0]["n"]
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "n": "final n", "side": f"mean r at {frac:.0%} of n",
        "null": f"no-signal r at {frac:.0%} of n", "reach": f"n where mean r >= {R_LEVEL}",
        "nc": f"N_c from which every class has r >= {R_LEVEL}"},
        {"n": ",", "side": ".2f", "null": ".2f", "reach": ",.0f", "nc": ",.0f"})
    signal = [r for r in rows if r["side"] > r["null"] + ABOVE_NULL]
    stable = [r["nc"] for r in rows if r["nc"] == r["nc"]]
    prose = (f"With {frac:.0%} of the samples the CIs correlate at r = {min(r['side'] for r in rows):.2f} to "
             f"{max(r['side'] for r in rows):.2f} with the final ones, against {rows[0]['null']:.2f} for a CI without "
             f"any signal (the first n samples are shared with the final N, so r = √(n/N) even for pure noise). "
             f"{len(signal)} of {len(rows)} model–dataset pairs are clearly above that line; the others are CIs that "
             f"are mostly noise at this n, such as the single CI of a model that sends all noise to one class. "
             + (f"Per class, every CI with more than {min(stable):,.0f} to {max(stable):,.0f} samples (depending on "
                f"the model) agrees with its final version at r >= {R_LEVEL}. " if stable else "")
             + "The final CI is itself a noisy estimate, so these numbers measure stability, not accuracy.")
    return [table, prose]


def reliability_figures(conv: Convs, cis: Runs, ch: Chapter) -> list[Figure]:
    """Per dataset, the count-weighted split-half reliability against n, then each class's final reliability
    against its samples."""
    final = {k: conv[k].reliability()[-1] for k in _pairs(ch)}
    ok = {k: ~torch.isnan(r) for k, r in final.items()}
    curves = plot_curve_grid(
        None, {dataset_label(d): {a: (conv[a, d].sizes, conv[a, d].mean_reliability()) for a in ch.models}
               for d in ch.datasets},
        f"Split-half reliability of the CIs against n ({ch.noise_label}), weighted by class counts",
        "n (noise samples)", "reliability (Spearman–Brown)", logx=True, hline=R_LEVEL, hline_label=f"{R_LEVEL}",
        ylim=UNIT_YLIM)
    points = plot_curve_grid(
        None, {dataset_label(d): {a: (cis[a, d].counts.double()[ok[a, d]], final[a, d][ok[a, d]])
                                  for a in ch.models} for d in ch.datasets},
        "Final reliability of each class's CI against the samples it received", "N_c (samples of the class)",
        "reliability", logx=True, hline=R_LEVEL, hline_label=f"{R_LEVEL}", ylim=UNIT_YLIM,
        styles={a: "o" for a in ch.models})
    return [curves, points]


def reliability_tables(conv: Convs, cis: Runs, ch: Chapter) -> list[str]:
    """Per dataset, every model's final reliability per class (a dash where a half has fewer than two samples)
    and the n its least reliable class with :data:`MIN_COUNT` samples needs for :data:`R_LEVEL`."""
    out = []
    for d in ch.datasets:
        names = ch.classes[d]
        rows = []
        for a in ch.models:
            ci, r = cis[a, d], conv[a, d].reliability()[-1]
            need = ci.samples_needed(R_LEVEL)
            ok = (ci.counts >= MIN_COUNT) & ~torch.isnan(r)
            rows.append({"model": a, **{names[c]: ("—" if r[c] != r[c] else f"{float(r[c]):.2f}")
                                        for c in range(len(names))},
                         "need": float(need[ok].max()) if ok.any() else float("nan")})
        out.append(f"**{dataset_label(d)}**\n\n" + markdown_table(
            rows, {"model": "model", **{n: n for n in names}, "need": f"n for {R_LEVEL} (worst class ≥ {MIN_COUNT})"},
            {"need": ",.0f"}))
    return out
