"""Chapter 9's tables, sentences and figures: black-box attacks from CIs, microstimulation as psychometrics,
the recurrent model and the two-class design. The trojan section is :mod:`~wna_helpers.book.reports.trojan`.

Every function takes the chapter's study results (:func:`~wna_helpers.book.application_study.study_attacks`
keyed by ``(model, dataset)``; :func:`~wna_helpers.book.application_study.study_microstimulation`,
:func:`~wna_helpers.book.application_study.study_two_class` and the GRU's CIs keyed by dataset), where the
paper gave a number :func:`wna_helpers.paper.paper_numbers` (``paper``), and the
:class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from ...methods.ci import ClassificationImages
from ...methods.sta import pearson
from ...methods.two_class import TwoClassCI
from ...methods.ci_compare import holm_adjust
from ..application_study import ATTACK_CONTROLS, ATTACK_KINDS, MICRO_LAYERS, TWO_CLASS_PAIRS, paired_shifts, threshold_shifts
from ..chapter import Chapter
from ..criteria import FINAL_SHARE, FWER, HALF, SHARE_YLIM
from ..plots import plot_class_histograms, plot_curve_grid, plot_image_rows
from ..report import dataset_label, markdown_table

__all__ = ["ATTACKED", "KIND_LABELS", "KIND_STYLES", "MICRO_CLASS", "paper_case", "blend_table", "attack_curves",
           "success_at", "interval_at", "mid_budget", "attack_table", "query_figure", "queries_to_reach", "query_summary",
           "attack_wins", "attack_verdict", "micro_figure", "format_shift", "shift_rows", "shift_table",
           "micro_verdict", "rnn_figure", "rnn_comparison", "two_class_figures", "two_class_rows",
           "two_class_table"]

Attacks = Mapping[tuple[str, str], Mapping[str, object]]
Paper = Mapping[str, Mapping[str, object]]

#: The attacked models: the paper's CNN and one other.
ATTACKED: tuple[str, ...] = ("paper_cnn", "lenet")
#: Legend label and line style of each attack direction of :data:`~wna_helpers.book.application_study.ATTACK_KINDS`.
KIND_LABELS: dict[str, str] = {"ci": "CI", "logit": "logit CI", "mean": "class mean image",
                               "random": "random (control)", "shuffled": "CI, pixels shuffled (control)",
                               "other": "another class's CI (control)"}
KIND_STYLES: dict[str, str] = {"CI": "o-C0", "logit CI": "s-C1", "class mean image": "^-C2",
                               "random (control)": "x--C7", "CI, pixels shuffled (control)": "+:C8",
                               "another class's CI (control)": "d-.C9"}
#: The class whose psychometric curves the microstimulation figure shows.
MICRO_CLASS = 2


def _pct(x: float) -> str:
    """A share as the book's prose writes a criterion: 0.9 -> "90 %"."""
    return f"{x * 100:g} %"


# ---------------------------------------------------------------------------------------------- attacks


def paper_case(attacks: Attacks, paper: Paper) -> list[str]:
    """The paper's blend case (0.3 · image of 9 + CI of the target, ``paper_cnn`` on MNIST): a sentence and the
    share called the target per target class, the paper's next to this book's ("–": the class has no CI)."""
    ours, pa = attacks["paper_cnn", "mnist"]["blend_paper"], paper["targeted_attack"]
    have = ours.targets.tolist()
    rows = [{"target": str(t), "paper": pa["shares"][i],
             "ours": float(ours.success[0, have.index(t)]) if t in have else math.nan}
            for i, t in enumerate(pa["targets"])]
    rows.append({"target": "mean", "paper": sum(pa["shares"]) / len(pa["shares"]), "ours": float(ours.mean[0])})
    prose = (f"**The paper's case**: 0.3 · (test image of 9) + min-max scaled CI of the target, `paper_cnn` on "
             f"MNIST, {int(ours.n_images[0])} images; share called the target (paper: 100 training images of 9; "
             f"–: the class got no noise sample, so it has no CI).")
    return [prose, markdown_table(rows, {"target": "target", "paper": "paper", "ours": "this book"},
                                  {"paper": ".0%", "ours": ".0%"})]


def blend_table(attacks: Attacks, ch: Chapter) -> list[str]:
    """The blend attack over every target: a sentence and the mean success per model, dataset and α."""
    alphas = next(iter(attacks.values()))["blend"].alphas.tolist()
    rows = [{"model": a, "dataset": dataset_label(d),
             **{f"a{i}": float(out["blend"].mean[i]) for i in range(len(alphas))}} for (a, d), out in attacks.items()]
    prose = (f"**Blend attack, every target**: mean share of $\\alpha x + P_t$ called $t$ over the targets, on "
             f"{ch.profile.attack_images} test images (those of class $t$ left out). The column $\\alpha = 0$ is the "
             f"CI alone.")
    return [prose, markdown_table(rows, {"model": "model", "dataset": "dataset",
                                         **{f"a{i}": f"α = {al:g}" for i, al in enumerate(alphas)}},
                                  {f"a{i}": ".0%" for i in range(len(alphas))})]


def attack_curves(attacks: Attacks, ch: Chapter) -> list[Figure]:
    """Per norm (L2, L∞): the success of every attack direction against the budget, one panel per model and
    dataset."""
    figs = []
    for norm, name in (("l2", "L2"), ("linf", "L∞")):
        panels = {f"{a}, {dataset_label(d)}": {KIND_LABELS[k]: (out[norm][k].budgets, out[norm][k].mean)
                                               for k in ATTACK_KINDS if k in out[norm]}
                  for (a, d), out in attacks.items()}
        figs.append(plot_curve_grid(None, panels, f"Targeted attack success against the {name} budget "
                                    f"({ch.profile.attack_images} test images, mean over targets)", f"{name} budget ε",
                                    "share called the target", ncols=2, ylim=SHARE_YLIM, styles=KIND_STYLES))
    return figs


def success_at(out: Mapping[str, object], norm: str, kind: str, eps: float) -> float:
    """The mean success over the targets of direction ``kind`` at budget ``eps`` (one of the budgets tried) in
    ``norm``; NaN when the study has no such direction (another class's CI, with a single CI)."""
    if kind not in out[norm]:
        return math.nan
    r = out[norm][kind]
    return float(r.mean[r.budgets.tolist().index(eps)])


def interval_at(out: Mapping[str, object], norm: str, kind: str, eps: float) -> tuple[float, float]:
    """The 95 % Wilson interval of direction ``kind``'s success over every image-target trial at ``eps``
    (:meth:`~wna_helpers.applications.attacks.PerturbationAttack.interval`); NaN when there is no such direction."""
    if kind not in out[norm]:
        return math.nan, math.nan
    r = out[norm][kind]
    lo, hi = r.interval()[r.budgets.tolist().index(eps)].tolist()
    return lo, hi


def mid_budget(budgets: Sequence[float]) -> float:
    """The budget the attack table and verdict read: the middle one of ``budgets`` (the upper middle of an even
    count)."""
    return budgets[len(budgets) // 2]


def attack_table(attacks: Attacks, ch: Chapter) -> list[str]:
    """A sentence and the success of every direction at the middle L2 budget (with the CI's 95 % interval) and of
    the CI and random at the middle L∞ budget, per model and dataset."""
    l2, linf = mid_budget(ch.profile.attack_l2), mid_budget(ch.profile.attack_linf)
    rows = []
    for (a, d), out in attacks.items():
        lo, hi = interval_at(out, "l2", "ci", l2)
        rows.append({"model": a, "dataset": dataset_label(d), "targets": len(out["l2"]["ci"].targets),
                     **{f"l2_{k}": success_at(out, "l2", k, l2) for k in ATTACK_KINDS},
                     "ci_int": f"{lo:.0%} to {hi:.0%}",
                     **{f"linf_{k}": success_at(out, "linf", k, linf) for k in ("ci", "random")}})
    prose = (f"**Attack table**: success at L2 = {l2:g} (the CI with its 95 % interval, the logit CI, the class "
             f"mean, and the three controls of the CI's norm: a random direction, the CI's pixels shuffled, another "
             f"class's CI) and at L∞ = {linf:g} (CI, random); every direction over the same targets, the classes "
             f"with a CI.")
    cols = {"model": "model", "dataset": "dataset", "targets": "targets",
            **{f"l2_{k}": f"L2, {KIND_LABELS[k]}" for k in ATTACK_KINDS}, "ci_int": "L2, CI: 95 % interval",
            "linf_ci": "L∞, CI", "linf_random": "L∞, random"}
    return [prose, markdown_table(rows, cols, {k: ".0%" for k in cols
                                               if k not in ("model", "dataset", "targets", "ci_int")})]


def query_figure(attacks: Attacks, ch: Chapter) -> Figure:
    """The CI attack's success at a fixed L2 budget against the noise queries behind the CIs, one panel per
    dataset (the page's width, a short title; :func:`query_summary` says what is plotted)."""
    panels = {dataset_label(d): {f"{a} (L2 = {attacks[a, d]['query_budget']:g})":
                                 (attacks[a, d]["queries"], attacks[a, d]["query_success"])
                                 for a in dict.fromkeys(m for m, _ in attacks)} for d in ch.datasets}
    return plot_curve_grid(None, panels, "What the queries buy: CI attack success", "model queries (noise images)",
                           "share called the target", ncols=2, logx=True, ylim=SHARE_YLIM)


def queries_to_reach(queries: torch.Tensor, success: torch.Tensor, share: float = FINAL_SHARE) -> int | None:
    """The fewest queries whose CIs reach ``share`` of the final CIs' success; None when the final success is 0."""
    if float(success[-1]) <= 0:
        return None
    return int(queries[torch.nonzero(success >= share * success[-1]).flatten()[0]])


def query_summary(attacks: Attacks) -> str:
    """What the query figure shows, then per model and dataset: the success with the fewest and the most queries
    and the queries from which it reaches :data:`FINAL_SHARE` of the final success (or that it has none)."""
    lines = [f"CI attack success at a fixed L2 budget (the first at which the final CIs reach {_pct(HALF)}, else the "
             "largest) against the noise queries behind the CIs:\n"]
    for (a, d), out in attacks.items():
        q, s = out["queries"], out["query_success"]
        head = f"- `{a}`, {dataset_label(d)}: at L2 = {out['query_budget']:g}, "
        reach = queries_to_reach(q, s)
        if reach is not None:
            lines.append(head + f"{float(s[0]):.0%} with the CIs of {int(q[0]):,} queries, {float(s[-1]):.0%} with "
                                f"{int(q[-1]):,}; {_pct(FINAL_SHARE)} of the final success from {reach:,} queries.")
        elif float(s.max()) <= 0:
            lines.append(head + f"no success at any query count ({int(q[0]):,} to {int(q[-1]):,} queries).")
        else:
            best = int(s.argmax())
            lines.append(head + f"no success with the CIs of {int(q[-1]):,} queries; the best is "
                                f"{float(s[best]):.0%}, with {int(q[best]):,}.")
    return "\n".join(lines)


def attack_wins(attacks: Attacks, ch: Chapter) -> list[bool]:
    """Per model and dataset: at the middle L2 budget, does the CI direction's 95 % interval lie above the interval
    of every control present (:data:`~wna_helpers.book.application_study.ATTACK_CONTROLS`)?"""
    l2 = mid_budget(ch.profile.attack_l2)
    wins = []
    for o in attacks.values():
        lo = interval_at(o, "l2", "ci", l2)[0]
        highs = [interval_at(o, "l2", k, l2)[1] for k in ATTACK_CONTROLS if k in o["l2"]]
        wins.append(bool(highs) and all(lo > h for h in highs))
    return wins


def attack_verdict(attacks: Attacks, ch: Chapter) -> str:
    """The attack verdict: in how many pairs the CI beats every control, whether the claim holds, and how often
    ``paper_cnn`` calls the CI alone (α = 0) its class on MNIST."""
    wins = attack_wins(attacks, ch)
    return (f"**Verdict.** At the same L2 budget the CI direction beats all its controls of the same norm (a random "
            f"direction, its own pixels shuffled, another class's CI; the 95 % intervals do not overlap) in "
            f"{sum(wins)} of {len(wins)} model and dataset pairs. "
            + ("CIs are a query-only targeted attack here, as the paper claims. " if all(wins) else
               "The claim holds only in part. ")
            + f"The paper's blend is a weak test of it: the CI alone (α = 0) is already called its class "
            f"{float(attacks['paper_cnn', 'mnist']['blend'].mean[0]):.0%} of the time by `paper_cnn` on MNIST.")


# ---------------------------------------------------------------------------------------------- microstimulation

Micro = Mapping[str, Mapping[str, object]]


def micro_figure(micro: Micro, ch: Chapter) -> Figure:
    """Psychometric curves of :data:`MICRO_CLASS` per dataset: uninhibited, and each layer's class and random
    units inhibited at the largest k."""
    c0, panels = MICRO_CLASS, {}
    for d, mi in micro.items():
        kmax, w = mi["ks"][-1], mi["weights"]
        panel = {"no inhibition": (w, mi["base_shares"][c0])}
        for layer in mi["layers"]:
            panel[f"{layer}, class units, k = {kmax:g}"] = (w, mi["shares"][layer, kmax, "class"][c0])
            panel[f"{layer}, random units, k = {kmax:g}"] = (w, mi["shares"][layer, kmax, "random"][c0])
        panels[f"{dataset_label(d)}, class {ch.classes[d][c0]}"] = panel
    styles = {"no inhibition": "o-k", **{f"{l}, class": f"o-C{i}" for i, l in enumerate(MICRO_LAYERS)},
              **{f"{l}, random": f"x:C{i}" for i, l in enumerate(MICRO_LAYERS)}}
    return plot_curve_grid(None, panels, f"Psychometric curves of paper_cnn ({ch.profile.micro_trials} stimuli per "
                           "point)", "w (weight of the image)", "share called c", ncols=1, ylim=SHARE_YLIM,
                           styles=styles)


def format_shift(x: float) -> str:
    """A threshold shift as the table writes it: signed, 3 decimals, ``∞`` / ``−∞`` for an infinite one."""
    return "∞" if x == math.inf else "−∞" if x == -math.inf else f"{x:+.3f}"


def shift_rows(micro: Micro) -> list[dict[str, object]]:
    """One row per dataset, layer and k: the median threshold shift [interval] of the class units and of the
    random control, the abolished classes of each, and the classes with a shift."""
    def cell(s: Mapping[str, float]) -> str:
        return f"{format_shift(s['median'])} [{format_shift(s['lo'])}, {format_shift(s['hi'])}]"

    rows = []
    for d, mi in micro.items():
        for layer in mi["layers"]:
            for k in mi["ks"]:
                c, r = threshold_shifts(mi, layer, k, "class"), threshold_shifts(mi, layer, k, "random")
                pair = paired_shifts(mi, layer, k)
                rows.append({"dataset": dataset_label(d), "layer": layer, "k": f"{k:g}", "cls": cell(c),
                             "ab": c["abolished"], "rnd": cell(r), "ab_r": r["abolished"], "n": c["classes"],
                             "pair": f"{format_shift(pair['median'])}: {pair['wins']} of {pair['n']} higher "
                                     f"(p = {pair['p']:.3f})"})
    return rows


def shift_table(micro: Micro) -> list[str]:
    """What the threshold-shift table holds, and the table of :func:`shift_rows`."""
    prose = ("**Threshold shift** (inhibited minus uninhibited threshold): median over the classes with a 95 % "
             "bootstrap interval over classes, and the classes whose response the inhibition abolished (the curve "
             "stays below 0.5 at every weight, or the fit puts its threshold more than one weight range beyond "
             "w = 1: shift ∞, which is why the median is reported). A class whose uninhibited threshold already "
             "lies that far out (the noise alone goes to it) is left out of its row (column 'classes'). The last "
             "column pairs each class's shift with the random units' shift for the same class: the median difference, "
             "how many classes shift more under their own units, and the exact two-sided sign test (uncorrected; the "
             "verdict below corrects it). The paper shows figures only: conv2 shifts the curves far to the right, fc1 "
             "moderately, conv1 barely.")
    return [prose, markdown_table(shift_rows(micro), {
        "dataset": "dataset", "layer": "layer", "k": "k", "cls": "class units", "ab": "abolished",
        "rnd": "random units (control)", "ab_r": "abolished (control)", "n": "classes",
        "pair": "class − random units, paired"})]


def micro_verdict(micro: Micro) -> str:
    """Per dataset at the largest k: the layers by median shift, largest first, and those whose class units shift
    the threshold beyond the random units of the same classes: the paired sign test (:func:`paired_shifts`),
    Holm-corrected over the layers, at :data:`~wna_helpers.book.criteria.FWER`; the paper's order."""
    parts = []
    for d, mi in micro.items():
        kmax = mi["ks"][-1]
        shift = {l: threshold_shifts(mi, l, kmax, "class") for l in MICRO_LAYERS}
        order = sorted(MICRO_LAYERS, key=lambda l: -shift[l]["median"])
        tests = {l: paired_shifts(mi, l, kmax) for l in MICRO_LAYERS}
        adjusted = holm_adjust(torch.tensor([tests[l]["p"] for l in MICRO_LAYERS], dtype=torch.float64)).tolist()
        beats = [f"{l} ({tests[l]['wins']} of {tests[l]['n']} classes, Holm p = {p:.3f})"
                 for l, p in zip(MICRO_LAYERS, adjusted) if p <= FWER and tests[l]["wins"] > tests[l]["losses"]]
        parts.append(f"{dataset_label(d)} at k = {kmax:g}: layers by median shift, largest first: {', '.join(order)}; "
                     f"the class units shift the threshold more than random units of the same classes (paired sign "
                     f"test, Holm over the {len(MICRO_LAYERS)} layers, FWER {FWER:g}) in {'; '.join(beats) or 'no layer'}.")
    return "**Verdict.** " + " ".join(parts) + " The paper's order was conv2, fc1, conv1."


# ---------------------------------------------------------------------------------------------- RNN, two classes


def rnn_figure(gru: Mapping[str, ClassificationImages], accuracy: Mapping[str, float], paper: Paper,
               ch: Chapter) -> Figure:
    """Histograms of the predicted class of uniform noise: the paper's RNN on MNIST, then the GRU per dataset."""
    pr = paper["rnn"]
    panels = {f"paper's RNN, MNIST ({pr['test_accuracy']:.2%})": torch.tensor(pr["counts"], dtype=torch.float64)}
    panels.update({f"gru, {dataset_label(d)} ({accuracy[d]:.2%})": gru[d].counts for d in ch.datasets})
    return plot_class_histograms(panels, [str(i) for i in range(ch.num_classes)],
                                 f"Predicted class of uniform noise (paper: {pr['n']:,} images; ours: "
                                 f"{gru[ch.datasets[0]].n_samples:,})", ncols=3)


def rnn_comparison(gru: Mapping[str, ClassificationImages], paper: Paper, ch: Chapter) -> str:
    """The two classes the paper's RNN and the GRU on MNIST send most noise to, with their shares, and whether
    the top class is the same."""
    pr, ours = paper["rnn"], gru["mnist"].proportions
    top = ours.argsort(descending=True)[:2].tolist()
    paper_top = sorted(range(len(pr["counts"])), key=lambda i: -pr["counts"][i])[:2]
    names = ch.classes["mnist"]
    return (f"The paper's RNN sent {pr['counts'][paper_top[0]] / pr['n']:.0%} of the noise to {paper_top[0]} and "
            f"{pr['counts'][paper_top[1]] / pr['n']:.0%} to {paper_top[1]}; our GRU on MNIST sends "
            f"{float(ours[top[0]]):.0%} to {names[top[0]]} and {float(ours[top[1]]):.0%} to {names[top[1]]}. "
            + ("The same top class." if top[0] == paper_top[0] else "Another top class: which class collects the "
               "noise depends on the model, as for the CNNs of chapter 3."))


TwoClass = Mapping[str, Mapping[float, TwoClassCI]]


def two_class_figures(two: TwoClass, ch: Chapter) -> list[Figure]:
    """Per dataset: the z-map of the noise-field CI per true class and weight, outlined where significant
    (Holm, :data:`FWER`)."""
    figs = []
    for d, res in two.items():
        a, b = TWO_CLASS_PAIRS[d]
        names = ch.classes[d]
        rows = [(torch.stack([r.zmap("noise")[t] for r in res.values()]), f"true {names[(a, b)[t]]}", True)
                for t in range(2)]
        outlines = [torch.stack([r.significant(FWER, kind="noise")[t] for r in res.values()]) for t in range(2)]
        figs.append(plot_image_rows(rows, [f"w = {w:g}" for w in res], f"{dataset_label(d)}, paper_cnn as a "
                                    f"{names[a]}-vs-{names[b]} observer: z of (noise called {names[a]}) − (noise "
                                    f"called {names[b]}), outlined where significant (Holm, FWER {_pct(FWER)})",
                                    outlines=outlines, panel_size=1.6, colorbar_label="z"))
    return figs


def two_class_rows(two: TwoClass) -> list[dict[str, object]]:
    """One row per dataset and weight: accuracy, share of all stimuli called A, significant noise-CI pixels
    (Holm, :data:`FWER`, both true classes) and the correlation of the two true-class noise CIs."""
    return [{"dataset": dataset_label(d), "w": f"{w:g}", "acc": r.accuracy,
             "called_a": float(r.counts[:, 0].sum()) / r.n_samples,
             "sig": int(r.significant(FWER, kind="noise").sum()),
             "r": float(pearson(r.ci("noise")[0], r.ci("noise")[1]))}
            for d, res in two.items() for w, r in res.items()]


def two_class_table(two: TwoClass, paper: Paper) -> list[str]:
    """What the two-class table holds, with the paper's share of pure noise called 5, and the table."""
    ps = paper["signal_in_noise"]
    prose = (f"Accuracy, share of all stimuli called A, significant pixels (both true classes) and the correlation "
             f"of the two true-class CIs. The paper: pure noise (w = 0) called 5 {ps['pure_noise_called_5']:.1%} of "
             f"the time by its binary 5-vs-6 network.")
    return [prose, markdown_table(two_class_rows(two), {
        "dataset": "dataset", "w": "w", "acc": "accuracy", "called_a": "called A", "sig": "significant pixels",
        "r": "r(true A, true B)"}, {"acc": ".1%", "called_a": ".1%", "r": ".2f"})]
