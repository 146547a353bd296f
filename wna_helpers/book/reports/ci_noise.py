"""Chapter 3's tables, sentences and figures of the noise itself: five kinds of noise side by side, and noise
mixed with signal.

The functions take the chapter's study results (samples and pixel histograms of
:mod:`~wna_helpers.book.noise_study`, its :func:`~wna_helpers.book.noise_study.noise_study` rows, the CIs of
:func:`~wna_helpers.book.studies.study_ci_mixing` keyed by ``(model, dataset)``) and the
:class:`~wna_helpers.book.chapter.Chapter`, and return what the chapter shows, in order. The main noise's CIs are
in :mod:`~wna_helpers.book.reports.classification_images`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from ...methods.ci import ClassificationImages
from ...methods.ci_compare import holm_adjust
from ..chapter import Chapter
from ..criteria import COLLAPSED, DENSITY_CLIP, FLAT_BITS, FWER, HALF, MIN_COUNT, UNIT_YLIM
from ..measures import class_match
from ..noise_study import KIND_LABELS
from ..plots import plot_curve_grid, plot_image_rows
from ..report import dataset_label, markdown_table
from .classification_images import number_word

__all__ = ["SHOWN_MODEL", "UNSEEN_KIND", "sample_figure", "pixel_figure", "pixel_table", "kind_tables",
           "kind_figures", "kind_summary", "mixing_figures", "mixed_match", "mixing_summary"]

#: The model whose CIs the image grids show for every noise kind and every γ: the paper's network.
SHOWN_MODEL = "paper_cnn"
#: The kind whose pixels lie mostly outside the training range, N(0, 1): the summary counts who collapses on it.
UNSEEN_KIND = "gaussian"

#: Rows of :func:`~wna_helpers.book.noise_study.noise_study`.
Rows = Sequence[Mapping[str, object]]
#: (model, dataset) -> γ -> classification images of (1 − γ)·noise + γ·image (γ = 0 first).
Mixes = Mapping[tuple[str, str], Mapping[float, ClassificationImages]]


def _label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def _kinds(study: Rows) -> list[str]:
    """The noise kinds of the study, in its order."""
    return list(dict.fromkeys(str(r["kind"]) for r in study))


def sample_figure(samples: Mapping[str, torch.Tensor], train: torch.Tensor, ch: Chapter) -> Figure:
    """One row of samples per noise kind (``samples``: kind -> images, fitted to the chapter's first dataset),
    and a row of training images."""
    return plot_image_rows(
        [(x, _label(k), False) for k, x in samples.items()] + [(train, "training\nimages", False)], None,
        f"{len(train)} samples of each noise kind (fitted to {dataset_label(ch.datasets[0])} where it depends on the "
        f"data) and {len(train)} training images; each row has its own grey scale", panel_size=0.8)


def pixel_figure(hists: Mapping[str, Mapping[str, object]], ch: Chapter) -> Figure:
    """Per dataset, the density of the pixel values of the training images and of each noise kind
    (:func:`~wna_helpers.book.noise_study.pixel_histograms`), clipped at :data:`DENSITY_CLIP`."""
    return plot_curve_grid(
        None, {dataset_label(d): {_label(name): (hists[d]["centers"], dens.clamp_max(DENSITY_CLIP))
                                  for name, dens in hists[d]["density"].items()} for d in ch.datasets},
        f"Distribution of pixel values: training images and each noise kind (density, clipped at {DENSITY_CLIP:g}: "
        f"most training pixels are exactly 0)", "pixel value", "density",
        styles={"training images": "k-", **{_label(k): "-" for k in hists[ch.datasets[0]]["density"]
                                            if k != "training images"}})


def pixel_table(hists: Mapping[str, Mapping[str, object]], ch: Chapter) -> str:
    """Per source of pixels, the share below 0 and above 1 for every dataset."""
    cols = [(d, q) for d in ch.datasets for q in ("below", "above")]
    return markdown_table(
        [{"name": _label(name), **{f"{d}_{q}": hists[d][q][name] for d, q in cols}}
         for name in hists[ch.datasets[0]]["density"]],
        {"name": "pixels of", **{f"{d}_{q}": f"{dataset_label(d)}: {'< 0' if q == 'below' else '> 1'}"
                                 for d, q in cols}},
        {f"{d}_{q}": ".1%" for d, q in cols})


def kind_tables(study: Rows, ch: Chapter) -> list[str]:
    """Per dataset, a line with every model's n and the table of every model and kind: where the noise goes,
    entropy, classes with a CI, template accuracies (paper's recipe, centred) and CIs fed back as themselves."""
    kinds = _kinds(study)
    by = {(r["model"], r["dataset"], r["kind"]): r for r in study}
    out = []
    for d in ch.datasets:
        names = ch.classes[d]
        out.append(f"**{dataset_label(d)}** (n per model: "
                   + ", ".join(f"`{a}` {by[a, d, kinds[0]]['n']:,}" for a in ch.models) + ")")
        out.append(markdown_table(
            [{"model": a, "kind": _label(k), "top": f"{names[r['top_class']]} {r['top_share']:.0%}",
              "H": r["entropy_bits"], "cis": r["cis"], "paper": r["paper_accuracy"], "centred": r["centred_accuracy"],
              "fb": r["feedback_diagonal"]} for a in ch.models for k in kinds for r in [by[a, d, k]]],
            {"model": "model", "kind": "noise", "top": "most noise to", "H": "entropy (bits)",
             "cis": "classes with a CI", "paper": "templates (paper)", "centred": "templates (centred)",
             "fb": "fed back as itself"},
            {"H": ".2f", "paper": ".1%", "centred": ".1%"}))
    return out


def kind_figures(study: Rows, ch: Chapter, model: str = SHOWN_MODEL) -> list[Figure]:
    """Per dataset, ``model``'s CIs minus the mean stimulus for every noise kind, each panel scaled to its
    maximum (classes under :data:`MIN_COUNT` samples do not set the scale)."""
    kinds = _kinds(study)
    by = {(r["model"], r["dataset"], r["kind"]): r for r in study}
    figs = []
    for d in ch.datasets:
        cis = [by[model, d, k]["ci"] for k in kinds]
        figs.append(plot_image_rows(
            [(ci.images - ci.mean_stimulus, _label(k).replace(" ", "\n"), True, ci.counts)
             for k, ci in zip(kinds, cis)],
            ch.classes[d], f"{model} on {dataset_label(d)}: CI minus the mean stimulus for each noise kind, "
            f"n = {by[model, d, kinds[0]]['n']:,} each (each panel scaled to its maximum)", shared_signed_scale=True,
            normalize=True, panel_size=0.9, min_count=MIN_COUNT))
    return figs


def _mean_over(study: Rows, kind: str, key: str, dataset: str | None = None) -> float:
    """The mean of ``key`` over the rows of ``kind`` (of ``dataset``; default every dataset)."""
    vals = [float(r[key]) for r in study if r["kind"] == kind and (dataset is None or r["dataset"] == dataset)]
    return sum(vals) / len(vals)


def kind_summary(study: Rows, ch: Chapter) -> str:
    """Per dataset, the models sending at least :data:`COLLAPSED` of :data:`UNSEEN_KIND` noise to one class and
    every kind's mean entropy and classes with a CI; over both, the template accuracies and the CIs fed back."""
    kinds = _kinds(study)
    lines = []
    for d in ch.datasets:
        names = ch.classes[d]
        rows = [r for a in ch.models for r in study if (r["model"], r["dataset"], r["kind"]) == (a, d, UNSEEN_KIND)]
        collapsed = [r for r in rows if r["top_share"] >= COLLAPSED]
        lines.append(
            f"- **{dataset_label(d)}**: under {_label(UNSEEN_KIND)}, {len(collapsed)} of {len(rows)} models send at "
            f"least {COLLAPSED * 100:g} % of the noise to one class"
            + (" (" + ", ".join(f"`{r['model']}` {names[r['top_class']]} {r['top_share']:.0%}" for r in collapsed)
               + ")" if collapsed else "") + "; "
            + "; ".join(f"{_label(k)}: mean entropy {_mean_over(study, k, 'entropy_bits', d):.2f} bits, "
                        f"{_mean_over(study, k, 'cis', d):.1f} classes with a CI" for k in kinds) + ".")
    best = max(kinds, key=lambda k: _mean_over(study, k, "paper_accuracy"))
    lines.append(
        "- **Templates**: averaged over models and datasets, the paper's recipe reaches "
        + ", ".join(f"{_mean_over(study, k, 'paper_accuracy'):.1%} ({_label(k)})" for k in kinds)
        + "; the centred recipe " + ", ".join(f"{_mean_over(study, k, 'centred_accuracy'):.1%}" for k in kinds)
        + f" in the same order. The best kind for templates is {_label(best)}.")
    lines.append(
        "- **Fed back**: on average "
        + ", ".join(f"{_mean_over(study, k, 'feedback_diagonal'):.1f} ({_label(k)})" for k in kinds)
        + f" of the {number_word(ch.num_classes)} min-max-scaled CIs come back as their own class.")
    return "\n".join(lines)


def _gammas(mix: Mixes, ch: Chapter) -> list[float]:
    return [float(g) for g in mix[ch.models[0], ch.datasets[0]]]


def mixing_figures(mix: Mixes, means: Mapping[str, torch.Tensor], ch: Chapter,
                   model: str = SHOWN_MODEL) -> list[Figure]:
    """Against γ: every model's entropy of the answers and mean r of CI and class mean (classes with
    :data:`MIN_COUNT` samples); then per dataset ``model``'s CIs at every γ."""
    gammas = _gammas(mix, ch)
    label = {k: f"{k[0]} (n = {m[gammas[0]].n_samples:,})" for k, m in mix.items()}
    entropy = plot_curve_grid(
        gammas, {dataset_label(d): {label[a, d]: [mix[a, d][g].entropy for g in gammas] for a in ch.models}
                 for d in ch.datasets},
        f"Entropy of the predicted classes of (1 − γ)·{ch.noise_label} + γ·training image",
        "γ (weight of the image)", "entropy (bits)", hline=ch.max_entropy,
        hline_label=f"uniform over {ch.num_classes} classes")
    corr = plot_curve_grid(
        gammas, {dataset_label(d): {label[a, d]: [mixed_match(mix[a, d][g], means[d])["mean_r"] for g in gammas]
                                    for a in ch.models} for d in ch.datasets},
        f"Mean centred correlation of the CI with the class mean (CI − mean stimulus against class mean − mean of "
        f"the means; classes with >= {MIN_COUNT} samples), {ch.noise_label} mixed with signal",
        "γ (weight of the image)", "mean centred r", ylim=(-0.55, 1.02), hline=0.0, hline_label="no signal")
    figs = [entropy, corr]
    for d in ch.datasets:
        m = mix[model, d]
        figs.append(plot_image_rows(
            [(m[g].images - m[g].mean_stimulus, f"γ = {g:g}", True, m[g].counts) for g in gammas], ch.classes[d],
            f"{model} on {dataset_label(d)}: classification images of noise mixed with signal, minus the mean "
            f"stimulus (n = {m[gammas[-1]].n_samples:,} per γ; each panel scaled to its maximum)", normalize=True,
            shared_signed_scale=True, panel_size=0.95, min_count=MIN_COUNT))
    return figs


def mixed_match(ci: ClassificationImages, means: torch.Tensor) -> dict[str, object]:
    """:func:`~wna_helpers.book.measures.class_match` of mixed-stimulus CIs (minus the mean stimulus, which holds
    the mean image) with the class means (minus their mean): a classifier answering at random gives r near 0."""
    return class_match(ci.images, means, ci.counts, centre=ci.mean_stimulus)


def mixing_summary(mix: Mixes, means: Mapping[str, torch.Tensor], ch: Chapter) -> str:
    """Per dataset every model's entropy at the smallest and the largest γ; the pairs still under
    :data:`FLAT_BITS` at the largest γ; at the largest γ, the centred r of CI and class mean against the other
    classes' means and how many pairs beat every relabelling of the classes (Holm over the pairs)."""
    gammas = _gammas(mix, ch)
    lines, stuck = [], []
    for d in ch.datasets:
        h = {a: [mix[a, d][g].entropy for g in gammas] for a in ch.models}
        lines.append(f"- **{dataset_label(d)}**: from γ = {gammas[0]:g} to γ = {gammas[-1]:g} the entropy goes "
                     + ", ".join(f"`{a}` {h[a][0]:.2f} → {h[a][-1]:.2f}" for a in ch.models) + " bits.")
        stuck += [f"`{a}` on {dataset_label(d)}" for a in ch.models if h[a][-1] < FLAT_BITS]
    half = gammas[-1] == HALF
    weight = "half of each stimulus being" if half else f"a weight of {gammas[-1]:g} on"
    top = {(a, d): mixed_match(mix[a, d][gammas[-1]], means[d]) for d in ch.datasets for a in ch.models}
    keys = list(top)
    p = holm_adjust(torch.tensor([float(top[k]["p"]) for k in keys], dtype=torch.float64))
    passing = [f"`{a}` on {dataset_label(d)}" for (a, d), v in zip(keys, p.tolist()) if v == v and v <= FWER]
    r = [float(top[k]["mean_r"]) for k in keys if top[k]["mean_r"] == top[k]["mean_r"]]
    o = [float(top[k]["mean_other"]) for k in keys if top[k]["mean_other"] == top[k]["mean_other"]]
    return "\n".join(lines) + "\n\n" + (
        f"Even with {weight} a real image, {len(stuck)} model–dataset pairs still give most stimuli one answer "
        f"({', '.join(stuck)}): the noise {'half ' if half else ''}dominates these models' decisions. " if stuck else
        "By the largest γ every model spreads its answers over the classes. ") + (
        (f"At γ = {gammas[-1]:g} the centred CIs correlate with their own class means at r = {min(r):.2f} to "
         f"{max(r):.2f}" + (f", with the other classes' means at {min(o):.2f} to {max(o):.2f}" if o else "") + "; "
         if r else f"At γ = {gammas[-1]:g} no CI has {MIN_COUNT} samples; ")
        + f"{len(passing)} of {len(keys)} model–dataset pairs beat every relabelling of their classes at a "
          f"Holm-corrected p <= {FWER:g}" + (f" ({', '.join(passing)})" if passing else "") + ".")
