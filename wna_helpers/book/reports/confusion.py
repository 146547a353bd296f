"""Chapter 4's tables, sentences and figures: CIs fed back, CIs as templates, and biasing along a CI.

Every function takes the chapter's study results (:func:`~wna_helpers.book.overview.template_report` and
:func:`~wna_helpers.book.biasing.study_bias`, keyed by ``(model, dataset)``) and the
:class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order.
"""
from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure

from ..chapter import Chapter
from ..criteria import ABOVE_CHANCE, HALF, UNIT_YLIM
from ..measures import feedback_matrix, first_reaching
from ..plots import plot_confusion_grid, plot_curve_grid, plot_grouped_bars
from ..report import dataset_label, markdown_table

__all__ = ["feedback_figures", "feedback_summary", "template_rows", "template_table", "template_figures",
           "template_verdict", "bias_figures", "bias_rows", "bias_summary"]

Reports = Mapping[tuple[str, str], Mapping[str, object]]


def feedback_figures(reports: Reports, ch: Chapter) -> list[Figure]:
    """Per dataset: each model's answer on its own min-max-scaled CIs, as confusion matrices."""
    return [plot_confusion_grid(
        {f"{a}: {reports[a, d]['feedback_diagonal']} of {reports[a, d]['templates_used']} on the diagonal"
         f"\n(n = {reports[a, d]['n_samples']:,})": feedback_matrix(reports[a, d]["feedback"]) for a in ch.models},
        ch.classes[d], f"{dataset_label(d)}: each model's answer on its own classification images ({ch.noise_label})",
        xlabel="model's answer on the CI", ylabel="class the CI came from", annotate="nonzero",
        colorbar_label="1 = this answer", ncols=2) for d in ch.datasets]


def feedback_summary(reports: Reports, ch: Chapter) -> list[str]:
    """The fed-back diagonal per model and dataset, and how many CIs came back as their class in all."""
    rows = [{"model": a, **{d: f"{reports[a, d]['feedback_diagonal']} / {reports[a, d]['templates_used']}"
                            for d in ch.datasets}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{d: f"{dataset_label(d)}: diagonal / CIs" for d in ch.datasets}})
    tot = {d: sum(int(reports[a, d]["feedback_diagonal"]) for a in ch.models) for d in ch.datasets}
    used = {d: sum(int(reports[a, d]["templates_used"]) for a in ch.models) for d in ch.datasets}
    prose = ("Fed back, " + "; ".join(f"{tot[d]} of {used[d]} CIs on {dataset_label(d)}" for d in ch.datasets)
             + " are recognised as the class they came from. Each CI was min-max scaled to [0, 1] before it was fed "
               "back, as the paper did; a class without noise samples has no CI to feed back.")
    return [table, prose]


def template_rows(reports: Reports, ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model: CI and class-mean template accuracies, chance, CIs used."""
    return [{"model": a, "dataset": dataset_label(d), "n": reports[a, d]["n_samples"],
             "ci": reports[a, d]["ci_accuracy"], "mean": reports[a, d]["mean_accuracy"],
             "chance": reports[a, d]["chance"], "used": reports[a, d]["templates_used"]}
            for d in ch.datasets for a in ch.models]


def template_table(rows: list[dict[str, object]], ch: Chapter) -> list[str | Figure]:
    """The template accuracies as a table and as grouped bars against chance."""
    table = markdown_table(rows, {"model": "model", "dataset": "dataset", "n": "noise samples", "ci": "CI templates",
                                  "mean": "class-mean templates", "chance": "chance", "used": "CIs used"},
                           {"n": ",", **{k: ".1%" for k in ("ci", "mean", "chance")}})
    fig = plot_grouped_bars(
        [r["model"] for r in rows],
        {"CI templates": [r["ci"] for r in rows], "class-mean templates": [r["mean"] for r in rows]},
        f"Template classifier on the real test sets (normalised dot product; CIs from {ch.noise_label})",
        "test accuracy", hline=ch.chance, hline_label=f"chance ({ch.chance:.0%})", ylim=(0, 1),
        panels=[r["dataset"] for r in rows])
    return [table, fig]


def template_figures(reports: Reports, ch: Chapter) -> list[Figure]:
    """Per dataset: the test set classified by each model's CIs and by the class means, as confusion matrices."""
    figs = []
    for d in ch.datasets:
        first = reports[ch.models[0], d]
        mats = {f"{a} CIs (n = {reports[a, d]['n_samples']:,}): {reports[a, d]['ci_accuracy']:.1%}":
                reports[a, d]["ci_confusion"] for a in ch.models}
        mats[f"class means: {first['mean_accuracy']:.1%}"] = first["mean_confusion"]
        figs.append(plot_confusion_grid(
            mats, ch.classes[d], f"{dataset_label(d)} test set ({first['n_test']:,} images) classified by templates: "
            f"each model's CIs ({ch.noise_label}) and the class means", ncols=2))
    return figs


def template_verdict(rows: list[dict[str, object]], ch: Chapter) -> str:
    """Per dataset the best CI templates and how many models' CIs beat :data:`ABOVE_CHANCE` times chance;
    the pairs whose single CI makes the classifier answer one class for every image."""
    lines = []
    for d in ch.datasets:
        rs = [r for r in rows if r["dataset"] == dataset_label(d)]
        best = max(rs, key=lambda r: r["ci"])
        above = [r["model"] for r in rs if r["ci"] > ABOVE_CHANCE * r["chance"]]
        lines.append(f"- **{dataset_label(d)}**: the best CI templates are `{best['model']}`'s with "
                     f"{best['ci']:.1%} (class means: {best['mean']:.1%}, chance {best['chance']:.0%}); "
                     f"{len(above)} of {len(rs)} models' CIs reach more than {ABOVE_CHANCE:g} times chance"
                     + (f" ({', '.join(above)})." if above else "."))
    single = [f"`{r['model']}` on {r['dataset']}" for r in rows if r["used"] == 1]
    if single:
        lines.append(f"\n{len(single)} model–dataset pairs ({', '.join(single)}) have a single CI, so their template "
                     "classifier answers that class for every image: chance level by construction. CIs can only "
                     "serve as templates when the noise reaches the classes.")
    return "\n".join(lines)


def bias_figures(bias: Reports, ch: Chapter) -> list[Figure]:
    """Per dataset: the share of test images and of noise moved to class c by adding γ·direction_c."""
    figs = []
    for d in ch.datasets:
        g = bias[ch.models[0], d]["gammas"]
        label = {a: f"{a} (n = {bias[a, d]['n_inputs']})" for a in ch.models}
        figs.append(plot_curve_grid(
            g, {f"{dataset_label(d)} test images": {label[a]: bias[a, d]["test_mean"] for a in ch.models},
                f"{dataset_label(d)}, {ch.noise_label} inputs": {label[a]: bias[a, d]["noise_mean"] for a in ch.models}},
            f"{dataset_label(d)}: share of inputs moved to class c by adding γ·(CI_c − mean CI), scaled to RMS 1 "
            f"(CIs from {ch.noise_label}, n as in part (a))",
            "γ (RMS of the added direction, pixel units)", "share predicted as c (mean over c)",
            hline=ch.chance, hline_label=f"chance ({ch.chance:.0%})", ylim=(0, UNIT_YLIM[1])))
    return figs


def bias_rows(bias: Reports, ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model: classes with a CI, the γ that moves :data:`HALF` of the test images
    and of the noise, and the share at the largest γ."""
    rows = []
    for d in ch.datasets:
        for a in ch.models:
            b = bias[a, d]
            rows.append({"model": a, "dataset": dataset_label(d), "classes": int((~b["test"][-1].isnan()).sum()),
                         "t": first_reaching(b["gammas"], b["test_mean"], HALF),
                         "n": first_reaching(b["gammas"], b["noise_mean"], HALF),
                         "tmax": float(b["test_mean"][-1]), "gmax": b["gammas"][-1]})
    return rows


def bias_summary(rows: list[dict[str, object]]) -> list[str]:
    """The biasing table and how many pairs move half the test images within the γ range tried."""
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "classes": "classes with a CI", "t": "γ moving half the test images",
        "n": "γ moving half the noise (0: it is there already)", "tmax": "share at the largest γ"},
        {"t": ".2f", "n": ".2f", "tmax": ".0%"})
    moved = [r for r in rows if r["t"] == r["t"]]
    prose = (f"In {len(moved)} of {len(rows)} model–dataset pairs, adding a CI direction moves at least half of the "
             f"test images to its class within the γ range tried (up to {rows[0]['gmax']:g}); the smallest γ that "
             f"does so is {min((r['t'] for r in moved), default=float('nan')):.2f}.")
    return [table, prose]
