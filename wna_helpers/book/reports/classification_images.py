"""Chapter 3's tables, sentences and figures of the main-noise CIs: where noise goes, the CIs next to the class
means, which pixels differ from chance, logit images, convergence and split-half reliability.

Every function takes the chapter's study results, keyed by ``(model, dataset)`` (the CIs of
:func:`~wna_helpers.book.studies.study_ci`, the snapshots of :func:`~wna_helpers.book.studies.study_ci_convergence`),
and the :class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order. The other noise
kinds and noise mixed with signal are in :mod:`~wna_helpers.book.reports.ci_noise`.
"""
from __future__ import annotations

import math

from typing import Mapping

import torch
from matplotlib.figure import Figure

from ...methods.ci import ClassificationImages
from ...methods.ci_compare import holm_adjust
from ...methods.convergence import CIConvergence
from ..chapter import Chapter
from ..criteria import ABOVE_NULL, CLUSTER_Z, FWER, HALF, MIN_COUNT, R_LEVEL, REACHED, UNIT_YLIM
from ..measures import ci_significance, class_match, first_reaching, noise_bias, stable_from
from ..plots import plot_class_histograms, plot_curve_grid, plot_image_rows, run_label
from ..report import P_VALUE, dataset_label, markdown_table

__all__ = ["main_noise", "run_table", "histogram_figures", "bias_rows", "bias_summary", "ci_figures",
           "ci_matches", "holm_by_pair", "correlation_summary", "zmap_figures", "significance_summary", "logit_figures",
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


def ci_matches(cis: Runs, means: Means) -> dict[tuple[str, str], dict[str, object]]:
    """Per pair, :func:`~wna_helpers.book.measures.class_match` of the CIs (minus the mean stimulus) with the class
    means (minus their mean), over the classes with at least :data:`MIN_COUNT` samples."""
    return {(a, d): class_match(ci.images, means[d], ci.counts, centre=ci.mean_stimulus) for (a, d), ci in cis.items()}


def holm_by_pair(matches: Mapping[tuple[str, str], Mapping[str, object]]) -> dict[tuple[str, str], float]:
    """The permutation p-values of ``matches`` Holm-adjusted over the pairs that have one (NaN stays NaN)."""
    keys = list(matches)
    adj = holm_adjust(torch.tensor([float(matches[k]["p"]) for k in keys], dtype=torch.float64))
    return {k: float(v) for k, v in zip(keys, adj)}


def _best(values: Mapping[str, float]) -> str:
    """The key of the largest value, NaN counting as the smallest (the first key if all are NaN)."""
    return max(values, key=lambda a: values[a] if values[a] == values[a] else float("-inf"))


def _passing(p: Mapping[tuple[str, str], float]) -> list[tuple[str, str]]:
    return [k for k, v in p.items() if v == v and v <= FWER]


def correlation_summary(cis: Runs, means: Means, ch: Chapter) -> list[str]:
    """Per model and dataset the centred r of CI and class mean, the control (the other classes' means), the
    Holm-adjusted permutation p and the classes behind it; which CIs look most like their own class means, how many
    pairs pass, and the pairs whose noise reaches a single class."""
    match = ci_matches(cis, means)
    p = holm_by_pair(match)
    rows = [{"model": a, **{f"{d}_{key}": match[a, d][name] for d in ch.datasets
                            for key, name in (("r", "mean_r"), ("o", "mean_other"), ("k", "classes"))},
             **{f"{d}_p": p[a, d] for d in ch.datasets}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{k: v for d in ch.datasets for k, v in (
        (f"{d}_r", f"{dataset_label(d)}: r, own class"), (f"{d}_o", f"{dataset_label(d)}: r, other classes"),
        (f"{d}_p", f"{dataset_label(d)}: p (Holm)"), (f"{d}_k", f"{dataset_label(d)}: classes used"))}},
        {**{f"{d}_{x}": ".2f" for d in ch.datasets for x in "ro"}, **{f"{d}_p": P_VALUE for d in ch.datasets}})
    gap = {d: {a: float(match[a, d]["gap"]) for a in ch.models} for d in ch.datasets}
    best = {d: _best(gap[d]) for d in ch.datasets}
    passing = _passing(p)
    single = [f"`{a}` on {dataset_label(d)}" for a, d in _pairs(ch)
              if int((cis[a, d].proportions >= REACHED).sum()) == 1]
    prose = ("Both images are centred first (the CI minus the mean of all the noise, the class mean minus the mean "
             "of all class means): what every class shares says nothing about any one class, and it alone would "
             "give a large r. The control is the same CI against the other classes' means. The CIs that resemble "
             "their own class more than the others come most clearly from " + "; ".join(
                 f"`{best[d]}` on {dataset_label(d)} (r = {match[best[d], d]['mean_r']:.2f} against "
                 f"{match[best[d], d]['mean_other']:.2f})" for d in ch.datasets)
             + f". {len(passing)} of {len(p)} model–dataset pairs beat every relabelling of their classes at a "
               f"Holm-corrected p <= {FWER:g} (with k classes the smallest p is 1/k!, so a pair with two or three "
               f"classes cannot pass). "
             + (f"{len(single)} model–dataset pairs ({', '.join(single)}) send {1 - REACHED:.0%} or more of the noise to "
                f"one class (every other class gets under {REACHED:.0%}): that class's CI is almost the mean of all the "
                f"noise, and the other classes' CIs rest on few samples." if single else ""))
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
         "untestable": "not testable", "classes_sig": "classes with a significant pixel",
         "share": f"pixels significant (FWER {FWER:g})", "cluster_share": "pixels in significant clusters",
         "info_median": "median info", "reliability_median": "median reliability"},
        {"n": ",", "share": ".1%", "cluster_share": ".1%", "info_median": ".1f", "reliability_median": ".2f"})
    k = len(next(iter(cis.values())).null_images)
    lines = [f"With {k} label permutations the smallest p-value is 1/{k + 1} = {1 / (k + 1):.3f}, so a pixel can "
             f"pass at FWER {FWER:g}; a class that took every sample has the same CI under every permutation and is "
             f"*not testable* (counted apart, not as a class without significant pixels)."]
    for d in ch.datasets:
        s = {a: sig[a, d] for a in ch.models}
        tested = [a for a in s if not math.isnan(s[a]["share"])]
        untested = [a for a in s if math.isnan(s[a]["share"])]
        if not tested:
            lines.append(f"- **{dataset_label(d)}**: no model has a testable class.")
            continue
        most = max(tested, key=lambda a: s[a]["share"])
        least = min(tested, key=lambda a: s[a]["share"])
        none = [a for a in tested if s[a]["classes_sig"] == 0]
        lines.append(
            f"- **{dataset_label(d)}**: from {s[least]['share']:.1%} (`{least}`) to {s[most]['share']:.1%} "
            f"(`{most}`) of the testable CI pixels differ from chance at FWER {FWER:g}; "
            + (f"no pixel passes for {', '.join(f'`{a}`' for a in none)}. " if none else
               "every model with a testable class has a class with significant pixels. ")
            + (f"Not testable at all: {', '.join(f'`{a}`' for a in untested)} (every sample in one class). "
               if untested else "")
            + f"Clusters add pixels that the pixel test misses: "
              f"{sum(s[a]['cluster_share'] > s[a]['share'] for a in tested)} of {len(tested)} models have more "
              f"pixels in significant clusters than significant pixels.")
    return [table, "\n".join(lines)]


def logit_figures(cis: Runs, ch: Chapter) -> list[Figure]:
    """Per dataset: every model's logit images (the logit of each class regressed on the noise)."""
    return [plot_image_rows(
        [(cis[a, d].logit_images, f"{a}\nlogit image", True) for a in ch.models], ch.classes[d],
        f"{dataset_label(d)}: logit images from {ch.noise_label} (the logit of each class regressed on the noise, "
        f"every class)", panel_size=1.0, colorbar_label="slope") for d in ch.datasets]


def logit_summary(cis: Runs, means: Means, ch: Chapter) -> list[str]:
    """Per model and dataset the centred r of logit image and class mean on the CIs' classes (like for like) and on
    every class, next to the CIs' own r; where the logit images resemble the means more, and how many pairs beat
    every relabelling on all classes (Holm over the pairs)."""
    ci = ci_matches(cis, means)
    same = {(a, d): class_match(cis[a, d].logit_images, means[d], cis[a, d].counts) for a, d in _pairs(ch)}
    every = {(a, d): class_match(cis[a, d].logit_images, means[d]) for a, d in _pairs(ch)}
    p = holm_by_pair(every)
    rows = [{"model": a, **{f"{d}_{key}": m[a, d]["mean_r"] for d in ch.datasets
                            for key, m in (("s", same), ("c", ci), ("e", every))},
             **{f"{d}_p": p[a, d] for d in ch.datasets}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{k: v for d in ch.datasets for k, v in (
        (f"{d}_c", f"{dataset_label(d)}: CI r"), (f"{d}_s", f"{dataset_label(d)}: logit image r, the CI's classes"),
        (f"{d}_e", f"{dataset_label(d)}: logit image r, all {ch.num_classes} classes"),
        (f"{d}_p", f"{dataset_label(d)}: its p (Holm)"))}},
        {**{f"{d}_{x}": ".2f" for d in ch.datasets for x in "sce"}, **{f"{d}_p": P_VALUE for d in ch.datasets}})
    compared = [k for k in _pairs(ch) if ci[k]["classes"] and same[k]["classes"]]
    gain = [k for k in compared if same[k]["mean_r"] > ci[k]["mean_r"]]
    prose = (f"The table centres and correlates each image with its class mean, as above. On the same classes as the "
             f"CIs, the logit images resemble the class means more than the argmax CIs do for {len(gain)} of "
             f"{len(compared)} model–dataset pairs. They also cover all {number_word(ch.num_classes)} classes: there "
             f"{len(_passing(p))} of {len(p)} pairs beat every relabelling of the classes at a Holm-corrected "
             f"p <= {FWER:g}. Where argmax starves a class, its logit image is the only map there is.")
    return [table, prose]


def number_word(k: int) -> str:
    """``k`` in words for the small counts the prose names ("ten" classes), else its digits."""
    return {2: "two", 3: "three", 10: "ten"}.get(k, str(k))


def convergence_figures(conv: Convs, ch: Chapter) -> list[Figure]:
    """Per dataset, the mean r of the odd half's CI after n samples with the even half's final CI (no sample in
    common, so a CI without signal gives 0), then per class r against the samples the class had in the odd half."""
    mean = plot_curve_grid(
        None, {dataset_label(d): {
            **{a: (conv[a, d].sizes, conv[a, d].mean_correlation(across_halves=True)) for a in ch.models},
            "no signal: 0": (conv[ch.models[0], d].sizes, [0.0] * len(conv[ch.models[0], d].sizes))}
            for d in ch.datasets},
        f"Mean correlation of the odd half's CI after n samples with the even half's final CI ({ch.noise_label})",
        "n (noise samples)", "r across halves", logx=True, hline=R_LEVEL, hline_label=f"r = {R_LEVEL}",
        ylim=UNIT_YLIM, styles={"no signal": "k:"})
    per_class = plot_curve_grid(
        None, {dataset_label(d): {a: conv[a, d].class_points(across_halves=True) for a in ch.models}
               for d in ch.datasets},
        "Per class: correlation across halves against the samples the class received in the odd half",
        "N_c (samples of the class in the odd half)", "r across halves", logx=True, hline=R_LEVEL,
        hline_label=f"r = {R_LEVEL}", ylim=UNIT_YLIM, styles={a: "." for a in ch.models})
    return [mean, per_class]


def convergence_rows(conv: Convs, side: Mapping[str, int], ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model: the final n; at the side comparison's n (``side``: model -> n, one of the
    sizes; ``at``) the mean r across halves and, for contrast, the mean r with the final CI (which shares the
    first n samples) and its no-signal value sqrt(n/N); the n where the mean r across halves reaches
    :data:`R_LEVEL`, and the odd half's N_c from which every class stays at or above it."""
    rows = []
    for a, d in _pairs(ch):
        c = conv[a, d]
        nc, r = c.class_points(across_halves=True)
        i = c.sizes.index(side[a])
        across = c.mean_correlation(across_halves=True)
        rows.append({"model": a, "dataset": dataset_label(d), "n": c.sizes[-1], "at": side[a],
                     "side": float(across[i]), "overlap": float(c.mean_correlation()[i]),
                     "null": float(c.null_correlation()[i]), "reach": first_reaching(c.sizes, across, R_LEVEL),
                     "nc": stable_from(nc, r, R_LEVEL)})
    return rows


def convergence_summary(rows: list[dict[str, object]]) -> list[str]:
    """The convergence table (its headers give the side comparison's n as a share of the first row's final n)
    and how many pairs lie more than :data:`ABOVE_NULL` above 0 across halves at that n."""
    frac = rows[0]["at"] / rows[0]["n"]
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "n": "final n", "side": f"r across halves at {frac:.0%} of n",
        "overlap": f"r with the final CI at {frac:.0%} of n", "null": "its no-signal value √(n/N)",
        "reach": f"n where r across halves >= {R_LEVEL}", "nc": f"N_c (odd half) from which every class has r >= {R_LEVEL}"},
        {"n": ",", "side": ".2f", "overlap": ".2f", "null": ".2f", "reach": ",.0f", "nc": ",.0f"})
    signal = [r for r in rows if r["side"] > ABOVE_NULL]
    stable = [r["nc"] for r in rows if r["nc"] == r["nc"]]
    defined = [r["side"] for r in rows if r["side"] == r["side"]]
    prose = ((f"With {frac:.0%} of the samples the odd half's CIs correlate at r = {min(defined):.2f} to "
              f"{max(defined):.2f} with the even half of the final run. The two share no sample, so a CI without "
              f"any signal gives r = 0 here; the r with the final CI is higher ({min(r['overlap'] for r in rows):.2f} "
              f"to {max(r['overlap'] for r in rows):.2f}) because the first n samples are part of the final N, and "
              f"reaches √(n/N) = {rows[0]['null']:.2f} from noise alone. " if defined else
              f"At {frac:.0%} of the samples no CI has two samples in each half yet. ")
             + f"{len(signal)} of {len(rows)} model–dataset pairs lie more than {ABOVE_NULL:g} above 0 across halves; "
               f"the others are CIs that are mostly noise at this n, such as the single CI of a model that sends all "
               f"noise to one class. "
             + (f"Per class, every CI whose odd half has more than {min(stable):,.0f} to {max(stable):,.0f} samples "
                f"(depending on the model) agrees with the other half at r >= {R_LEVEL}. " if stable else "")
             + "Each half holds half the samples, so these numbers understate how repeatable the full CI is; the "
               "split-half reliability below corrects for that.")
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
