"""Chapter 9's trojan section: the families' accuracy and attack success, the maps of model 0, the detection
AUCs and the verdict on whether white noise finds the trigger.

Every function takes the chapter's :func:`~wna_helpers.book.trojan_study.study_trojan_family` results keyed by
dataset, where the paper gave a number :func:`wna_helpers.paper.paper_numbers` (``paper``), and the
:class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from matplotlib.figure import Figure

from ...applications.trojan import window_mask
from ..chapter import Chapter
from ..criteria import DETECTION_AUC, DETECTION_P, FWER
from ..plots import plot_image_rows
from ..report import dataset_label, markdown_table, p_text
from ..trojan_study import DECLARED, SCORES, TRIGGER_SIZE

__all__ = ["IMAGE_SIZE", "family_table", "model0_figures", "pair_figures", "pair_table",
           "auc_table", "noise_scores", "finds_trigger", "detection_line", "trojan_verdict"]

Family = Mapping[str, Mapping[str, object]]
Paper = Mapping[str, Mapping[str, object]]

#: Height and width of the images the trigger is stamped on.
IMAGE_SIZE: tuple[int, int] = (28, 28)


def _fwer() -> str:
    return f"FWER {FWER * 100:g} %"


def family_table(family: Family, paper: Paper, ch: Chapter) -> list[str]:
    """The paper's numbers in a sentence, and per dataset and model: source → target, trigger position, clean
    accuracy and attack success."""
    rows = []
    for d, fam in family.items():
        src, tgt = fam["classes"]
        names = ch.classes[d]
        rows += [{"dataset": dataset_label(d), "pair": f"{names[src]} → {names[tgt]}",
                  "model": f"{r.get('family', 'trojaned' if r['trojaned'] else 'clean')} {r['index']}",
                  "position": f"{tuple(r['position'])}", "acc": r["clean_accuracy"], "attack": r["attack_success"]}
                 for r in fam["rows"]]
    pt = paper["trojan"]
    prose = (f"**Clean accuracy and attack success** (share of stamped test images of the source class called the "
             f"target; for a clean or relabelled model, how often the trigger alone does it). The paper (MNIST, 15 epochs): "
             f"clean {pt['clean_test_accuracy']:.2%}, attack {pt['triggered_8s_called_9']['count']} of "
             f"{pt['triggered_8s_called_9']['of']} triggered 8s called 9 (100 %).")
    return [prose, markdown_table(rows, {"dataset": "dataset", "pair": "source → target", "model": "model",
                                         "position": "trigger (row, col)", "acc": "clean accuracy",
                                         "attack": "attack success"}, {"acc": ".2%", "attack": ".1%"})]


def model0_figures(family: Family, ch: Chapter) -> list[Figure]:
    """Per dataset: clean and trojaned model 0's target-class maps (z against the reference under uniform and
    Gabor noise, the logit CI differences, the input gradient), outlined where significant or in the trigger window."""
    figs = []
    for d, fam in family.items():
        m, pos, tgt = fam["maps"], fam["positions"][0], fam["classes"][1]
        window = window_mask(IMAGE_SIZE, pos, TRIGGER_SIZE)
        both = {key: torch.stack([m["clean"][key], m["trojaned"][key]]) for key in
                ("uniform_vs_reference", "gabor_vs_reference", "uniform_logit", "gabor_logit", "gradient",
                 "uniform_significant", "gabor_significant")}
        rows = [(both["uniform_vs_reference"], "uniform:\nz vs reference", True),
                (both["gabor_vs_reference"], "Gabor:\nz vs reference", True),
                (both["uniform_logit"], "uniform:\nlogit CI difference", True),
                (both["gabor_logit"], "Gabor:\nlogit CI difference", True),
                (both["gradient"], "input gradient\n(the paper's baseline)", True)]
        outlines = [both["uniform_significant"], both["gabor_significant"]] + [torch.stack([window, window])] * 3
        figs.append(plot_image_rows(
            rows, ["clean model 0", "trojaned model 0"],
            f"{dataset_label(d)}, target class {ch.classes[d][tgt]}: outlined, the significant pixels ({_fwer()}) in "
            f"the z rows, the trigger window (rows {pos[0]}-{pos[0] + TRIGGER_SIZE - 1}, columns {pos[1]}-"
            f"{pos[1] + TRIGGER_SIZE - 1}) in the others (standardised maps)", outlines=outlines, panel_size=1.6,
            colorbar_label="z or standardised value"))
    return figs


def pair_figures(family: Family, ch: Chapter) -> list[Figure]:
    """Per dataset: z of trojaned model 0's target CI minus clean model 0's, under uniform and Gabor noise."""
    figs = []
    for d, fam in family.items():
        tgt, pair = fam["classes"][1], fam["maps"]["pair"]
        figs.append(plot_image_rows(
            [(torch.stack([pair["uniform_z"], pair["gabor_z"]]), "z", True)], ["uniform noise", "Gabor noise"],
            f"{dataset_label(d)}, target class {ch.classes[d][tgt]}: trojaned model 0 against the clean model 0 "
            f"trained the same way (same seed), z of the CI difference, outlined where significant ({_fwer()})",
            outlines=[torch.stack([pair["uniform_significant"], pair["gabor_significant"]])], panel_size=1.8,
            colorbar_label="z"))
    return figs


def pair_table(family: Family) -> list[str]:
    """What the pair table holds and, per dataset and noise, trojaned against clean model 0: target shares,
    significant pixels in and outside the trigger window, and the window score."""
    inside = TRIGGER_SIZE ** 2
    outside = IMAGE_SIZE[0] * IMAGE_SIZE[1] - inside
    rows = [{"dataset": dataset_label(d), "noise": kind, **fam["pair"][kind]}
            for d, fam in family.items() for kind in ("uniform", "gabor")]
    prose = ("**Trojaned model 0 against clean model 0** (the paper's trigger position): share of the noise called "
             f"the target by each, significant pixels of the target-class difference inside the {inside}-pixel "
             f"trigger window and outside it ({outside} pixels), and the window score (mean z inside minus outside).")
    return [prose, markdown_table(rows, {
        "dataset": "dataset", "noise": "noise", "share_trojaned": "target share, trojaned",
        "share_clean": "target share, clean", "in_window": "significant in window", "outside": "significant outside",
        "window": "window score"}, {"share_trojaned": ".2%", "share_clean": ".2%", "window": ".2f"})]


def auc_table(family: Family, ch: Chapter) -> list[str]:
    """What the detection table holds and, per dataset and score, the AUC of trojaned against clean models over the
    models where the score is defined (how many), its p (Holm across the declared scores; raw for the exploratory
    ones), the paired sign-flip p, and the AUC and p against the relabelled controls."""
    n = ch.profile.trojan_models
    rows = []
    for d, fam in family.items():
        t = fam["tests"]
        for sc in SCORES:
            c, r = t["clean"][sc], t["relabelled"][sc]
            declared = sc in DECLARED
            rows.append({"dataset": dataset_label(d), "score": f"**{sc}**" if declared else sc,
                         "auc": c["auc"], "defined": f"{c['n_positive']} + {c['n_negative']}",
                         "p": p_text(c["holm_p"] if declared else c["p"]),
                         "paired": p_text(c["holm_paired_p"] if declared else c["paired_p"]),
                         "auc_r": r["auc"], "p_r": p_text(r["holm_p"] if declared else r["p"])})
    prose = (f"**Detection: ROC AUC of each score, trojaned against clean and against relabelled models** ({n} "
             f"models per family and dataset; 0.5 is chance, 1 perfect). The verdict reads only the declared scores "
             f"(bold: {len(DECLARED)}, fixed in `trojan_study.DECLARED` before the study runs; their p-values are "
             f"Holm-adjusted across them); the others are exploratory, their p uncorrected. A score that is "
             f"undefined for a model leaves that model out (the 'defined' column). p: exact permutation p of the AUC "
             f"over every way to call as many of the defined models trojaned (with {n} + {n} models at least "
             f"1/{math.comb(2 * n, n)}); paired: exact sign-flip p of the mean difference between trojaned and clean "
             f"model i, which share a seed (with {n} pairs at least 1/{2 ** n}). The paper reports no number: its CIs "
             f"did not visibly show the trigger, its gradient pictures did.")
    return [prose, markdown_table(rows, {"dataset": "dataset", "score": "score", "auc": "AUC vs clean",
                                         "defined": "defined", "p": "p", "paired": "paired p",
                                         "auc_r": "AUC vs relabelled", "p_r": "p vs relabelled"},
                                  {"auc": ".2f", "auc_r": ".2f"})]


def noise_scores() -> list[str]:
    """The white-noise detection scores: :data:`~wna_helpers.book.trojan_study.SCORES` without the gradient's."""
    return [s for s in SCORES if not s.startswith("gradient")]


def _separates(test: Mapping[str, float]) -> bool:
    return test["auc"] == test["auc"] and test["auc"] >= DETECTION_AUC and test["holm_p"] <= DETECTION_P


def finds_trigger(fam: Mapping[str, object]) -> bool:
    """Whether white noise finds the trigger in one family: a declared score
    (:data:`~wna_helpers.book.trojan_study.DECLARED`) separates the trojaned models both from the clean ones and from
    the relabelled ones, each at an AUC of at least :data:`DETECTION_AUC` with a Holm-adjusted p of at most
    :data:`DETECTION_P`."""
    t = fam["tests"]
    return any(_separates(t["clean"][s]) and _separates(t["relabelled"][s]) for s in DECLARED)


def detection_line(dataset: str, fam: Mapping[str, object]) -> str:
    """One dataset's detection results: the best declared score against both controls, the gradient baselines and
    the best exploratory score (with a reminder that it was picked)."""
    t = fam["tests"]
    c, r = t["clean"], t["relabelled"]
    best = max(DECLARED, key=lambda s: c[s]["auc"] if c[s]["auc"] == c[s]["auc"] else -1.0)
    explore = [s for s in noise_scores() if s not in DECLARED]
    top = max(explore, key=lambda s: c[s]["auc"] if c[s]["auc"] == c[s]["auc"] else -1.0)
    grads = ", ".join(f"`{s}` {c[s]['auc']:.2f} (p = {p_text(c[s]['p'])})" for s in SCORES if s.endswith("_window")
                      and s.startswith("gradient"))
    return (f"- {dataset_label(dataset)}: the best declared score, `{best}`, reaches AUC {c[best]['auc']:.2f} against "
            f"the clean models (Holm p = {p_text(c[best]['holm_p'])}, Holm paired p = "
            f"{p_text(c[best]['holm_paired_p'])}) and "
            f"{r[best]['auc']:.2f} against the relabelled ones (Holm p = {p_text(r[best]['holm_p'])}). Input-gradient "
            f"baselines in the trigger window (exploratory): {grads}. The best exploratory white-noise score, "
            f"`{top}`, reaches {c[top]['auc']:.2f} (p = {p_text(c[top]['p'])}, uncorrected, picked among "
            f"{len(explore)}).")


def trojan_verdict(family: Family) -> str:
    """The verdict: on which datasets white noise finds the trigger (:func:`finds_trigger`), then
    :func:`detection_line` per dataset."""
    found = [dataset_label(d) for d, fam in family.items() if finds_trigger(fam)]
    every = "both datasets" if len(family) == 2 else f"all {len(family)} datasets"
    verdict = (f"White noise finds the trigger on {every}." if len(found) == len(family) else
               f"White noise finds the trigger on {', '.join(found)} only." if found else
               "White noise does not reliably find the trigger.")
    return (f"**Verdict** (the rule, fixed before the study: a declared score separates the trojaned models from the "
            f"clean and from the relabelled ones, AUC >= {DETECTION_AUC:g} and Holm p <= {DETECTION_P:g} against "
            f"each). " + verdict + "\n\n" + "\n".join(detection_line(d, fam) for d, fam in family.items()))
