"""Chapter 4's tables, sentences and figures: CIs fed back, CIs as templates, and biasing along a CI.

Every function takes the chapter's study results (:func:`~wna_helpers.book.overview.template_report` and
:func:`~wna_helpers.book.biasing.study_bias`, keyed by ``(model, dataset)``) and the
:class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order.
"""
from __future__ import annotations

from typing import Mapping

import torch
from matplotlib.figure import Figure

from ...applications.microstimulation import paired_sign_test
from ...methods.ci_compare import holm_adjust
from ..chapter import Chapter
from ..criteria import ABOVE_CHANCE, FWER, HALF, UNIT_YLIM
from ..measures import feedback_matrix, first_reaching
from ..plots import plot_confusion_grid, plot_curve_grid, plot_grouped_bars
from ..report import P_VALUE, dataset_label, markdown_table

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
    """The fed-back diagonal per model and dataset against what the label-permuted null CIs give back, the
    Holm-adjusted p of each, and how many pairs give back more than their nulls."""
    keys = [(a, d) for d in ch.datasets for a in ch.models]
    adj = dict(zip(keys, holm_adjust(torch.tensor([float(reports[k]["feedback_null"]["p"]) for k in keys],
                                                  dtype=torch.float64)).tolist()))
    rows = [{"model": a, **{f"{d}_{x}": v for d in ch.datasets for x, v in (
        ("fb", f"{reports[a, d]['feedback_diagonal']} / {reports[a, d]['templates_used']}"),
        ("null", reports[a, d]["feedback_null"]["expected"]), ("p", adj[a, d]))}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{k: v for d in ch.datasets for k, v in (
        (f"{d}_fb", f"{dataset_label(d)}: diagonal / CIs"), (f"{d}_null", f"{dataset_label(d)}: null CIs give"),
        (f"{d}_p", f"{dataset_label(d)}: p (Holm)"))}},
        {**{f"{d}_null": ".1f" for d in ch.datasets}, **{f"{d}_p": P_VALUE for d in ch.datasets}})
    tot = {d: sum(int(reports[a, d]["feedback_diagonal"]) for a in ch.models) for d in ch.datasets}
    used = {d: sum(int(reports[a, d]["templates_used"]) for a in ch.models) for d in ch.datasets}
    beat = [k for k in keys if adj[k] == adj[k] and adj[k] <= FWER]
    prose = ("Fed back, " + "; ".join(f"{tot[d]} of {used[d]} CIs on {dataset_label(d)}" for d in ch.datasets)
             + " are recognised as the class they came from. Each CI was min-max scaled to [0, 1] before it was fed "
               "back, as the paper did; a class without noise samples has no CI to feed back. The control is the "
               "same pass's label-permuted null CIs (the same class counts, no relation between noise and answer), "
               "scaled and fed back the same way: a model that calls every scaled average of noise by its favourite "
               f"class gives that class back by chance. {len(beat)} of {len(keys)} model–dataset pairs give back "
               f"more CIs than their null CIs predict (each class a trial at its null rate, Holm over the pairs, "
               f"p <= {FWER:g}).")
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
    """Per dataset: the share of test images and of noise moved to class c by adding γ·direction_c, every model's CI
    direction and, averaged over the models, the two controls of the same size."""
    figs = []
    for d in ch.datasets:
        g = bias[ch.models[0], d]["gammas"]
        label = {a: f"{a} (n = {bias[a, d]['n_inputs']})" for a in ch.models}
        panels = {}
        for kind, title in (("test", f"{dataset_label(d)} test images"),
                            ("noise", f"{dataset_label(d)}, {ch.noise_label} inputs")):
            panel = {label[a]: bias[a, d][f"{kind}_mean"] for a in ch.models}
            for c, name in (("random", "control: random direction"), ("other", "control: another class's CI")):
                curves = torch.stack([bias[a, d][f"{kind}_{c}_mean"] for a in ch.models])
                panel[f"{name} (mean over models)"] = curves.nanmean(0)
            panels[title] = panel
        figs.append(plot_curve_grid(
            g, panels, f"{dataset_label(d)}: share of inputs moved to class c by adding γ·(CI_c − mean CI), scaled to "
            f"RMS 1 and clipped to [0, 1] (CIs from {ch.noise_label}, n as in part (a)), and two controls of the same "
            "size", "γ (RMS of the added direction, pixel units)", "share predicted as c (mean over c)",
            hline=ch.chance, hline_label=f"chance ({ch.chance:.0%})", ylim=(0, UNIT_YLIM[1]),
            styles={"control: random": "k:", "control: another": "k--"}))
    return figs


def bias_rows(bias: Reports, ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model: classes with a CI, whether that is a single (global brightening) direction,
    the γ that moves :data:`HALF` of the test images, the shares at the largest γ of the CI direction and of the two
    controls, and the class-by-class exact sign test of the CI against the better control there (``p``, two-sided,
    Holm-adjusted over the pairs with two classes or more, NaN for the others; ``more``: the CI won more classes
    than it lost)."""
    rows = []
    for d in ch.datasets:
        for a in ch.models:
            b = bias[a, d]
            test = b["test"][-1]
            best = torch.maximum(b["test_random"][-1], b["test_other"][-1].nan_to_num(nan=-1.0))
            sign = paired_sign_test(test, best)
            single = bool(b["single"])
            rows.append({"model": a, "dataset": dataset_label(d), "classes": int((~test.isnan()).sum()),
                         "single": single, "t": first_reaching(b["gammas"], b["test_mean"], HALF),
                         "tmax": float(b["test_mean"][-1]), "rmax": float(b["test_random_mean"][-1]),
                         "omax": float(b["test_other_mean"][-1]), "wins": sign["wins"], "n_sign": sign["n"],
                         "p_raw": float("nan") if single else sign["p"], "more": sign["wins"] > sign["losses"],
                         "gmax": b["gammas"][-1]})
    adj = holm_adjust(torch.tensor([r["p_raw"] for r in rows], dtype=torch.float64)).tolist()
    for r, p in zip(rows, adj):
        r["p"] = p
    return rows


def bias_summary(rows: list[dict[str, object]]) -> list[str]:
    """The biasing table; how many pairs move half the test images within the γ range tried; how many beat their
    controls class by class at the largest γ (Holm); and the single-CI pairs, which are not counted."""
    shown = [{**r, "classes": f"{r['classes']} (one: not a class direction)" if r["single"] else r["classes"],
              "sign": f"{r['wins']} of {r['n_sign']}"} for r in rows]
    table = markdown_table(shown, {
        "model": "model", "dataset": "dataset", "classes": "classes with a CI", "t": "γ moving half the test images",
        "tmax": "share at the largest γ: CI", "rmax": "random", "omax": "another class's CI",
        "sign": "classes where the CI beats both", "p": "p (sign test, Holm)"},
        {"t": ".2f", "tmax": ".0%", "rmax": ".0%", "omax": ".0%", "p": P_VALUE})
    moved = [r for r in rows if r["t"] == r["t"] and not r["single"]]
    tested = [r for r in rows if not r["single"]]
    beat = [r for r in tested if r["more"] and r["p"] == r["p"] and r["p"] <= FWER]
    single = [f"`{r['model']}` on {r['dataset']}" for r in rows if r["single"]]
    prose = (f"Every input is clipped to [0, 1] after the direction is added. In {len(moved)} of {len(tested)} "
             f"model–dataset pairs with two or more CIs, adding a CI direction moves at least half of the test "
             f"images to its class within the γ range tried (up to {rows[0]['gmax']:g}); at the largest γ the CI "
             f"direction moves more test images to its class than both controls of the same size (a random "
             f"direction, another class's CI) class by class in {len(beat)} of them (exact sign test over the "
             f"classes, Holm over the pairs, p <= {FWER:g}). "
             + (f"{', '.join(single)} have a CI for one class only: that direction is the mean of all the noise, a "
                f"global change of brightness rather than a class's pattern, and is not counted." if single else ""))
    return [table, prose]
