"""Chapter 8's tables, sentences and figures: the paper's numbers next to ours, the gamma curves, and CI
templates through training.

The functions take the chapter's study results: the rows of :func:`~wna_helpers.book.side_by_side.side_by_side`;
the gamma curves of :func:`~wna_helpers.book.paper_study.study_gamma_curve` keyed by ``(dataset, curve, ci_kind)``
and their colour-map round trips keyed by ``(dataset, curve)``; the snapshots of
:func:`~wna_helpers.book.paper_study.study_snapshots` keyed by dataset; where the paper gave numbers, the
``gamma_curves`` entry of :func:`wna_helpers.paper.paper_numbers` (``paper``); and the
:class:`~wna_helpers.book.chapter.Chapter`. Each returns what the chapter shows, in order.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from ...paper import paper_weights
from ...config import Profile
from ...paper.verdicts import CONTEXT, MIN_DEFINED, NOT_REPRODUCED, NOT_TESTABLE, PARTLY, REPRODUCED, VERDICTS
from ...zoo.paper_recipe import PAPER_RECIPE
from ..chapter import Chapter
from ..criteria import ACCURACY_YLIM, HALF, PATTERN_GAP, PEAK_DROP, SHARE_YLIM
from ..measures import first_reaching
from ..plots import plot_curve_grid
from ..report import dataset_label, markdown_table
from ..side_by_side import SHIFT_W

__all__ = ["ARCH", "CI_KINDS", "ROUNDTRIP", "ROUNDTRIP_CURVES", "LABELS", "COLOR", "GABOR_COLOR", "STYLES", "EARLY_W",
           "rule_text", "sections", "section_tables", "verdict_summary", "gamma_panels", "gamma_figure", "gap",
           "first_w", "share_up_to", "paper_reading", "our_reading", "gamma_reading", "snapshot_figure",
           "snapshot_tables", "snapshot_reading"]

Rows = Sequence[Mapping[str, str]]
Curves = Mapping[tuple, Mapping[str, torch.Tensor]]
Snapshots = Mapping[str, Sequence[Mapping[str, object]]]

#: The model the chapter compares with the paper's network: the paper's layers, this book's training.
ARCH = "paper_cnn"
#: The noise kinds whose CIs make each kind of gamma-curve pattern (the mean image has no noise kind).
CI_KINDS: dict[str, tuple[str, ...]] = {"ci": ("uniform", "gabor"), "mean": ("uniform",)}
#: The paper's colour-map round trip of its CIs, and the curves it is shown for.
ROUNDTRIP = "viridis"
ROUNDTRIP_CURVES: tuple[str, ...] = ("noise_ci", "images_ci")
#: Legend label of each gamma curve of :data:`~wna_helpers.book.paper_study.GAMMA_CURVES`.
LABELS: dict[str, str] = {"noise_ci": "noise + CI", "images_ci": "images + CI", "noise_mean": "noise + mean image",
                          "images_mean": "images + mean image"}
#: One colour per curve: ours solid, the paper's dashed, the other classes only dotted, the round trip dash-dotted.
COLOR: dict[str, str] = {name: f"C{i}" for i, name in enumerate(LABELS)}
#: The colours of the Gabor-noise CIs' curves (triangles).
GABOR_COLOR: dict[str, str] = {"noise_ci": "C4", "images_ci": "C5"}
#: Line style of every legend label of the gamma-curve figure.
STYLES: dict[str, str] = {
    **{LABELS[n]: f"o-{COLOR[n]}" for n in LABELS}, **{f"paper: {LABELS[n]}": f"--{COLOR[n]}" for n in LABELS},
    **{f"{LABELS[n]}, other classes only": f":{COLOR[n]}" for n in LABELS},
    **{f"{LABELS[n]} (Gabor CIs)": f"^-{c}" for n, c in GABOR_COLOR.items()},
    **{f"{LABELS[n]} ({ROUNDTRIP} round trip)": f"s-.{COLOR[n]}" for n in ROUNDTRIP_CURVES}}
#: The largest weight up to which the prose reads the images + CI curve as "barely moving".
EARLY_W = 0.7


# ---------------------------------------------------------------- every number, next to ours

def rule_text(prof: Profile) -> str:
    """The verdict rule of :mod:`wna_helpers.paper.verdicts` as the chapter states it before the tables, with the
    profile's number of paper-recipe networks and the constants the code uses."""
    r = PAPER_RECIPE
    return (f"**The rule, fixed before the numbers.** Each paper number is measured on {prof.paper_seeds} "
            f"`paper_cnn` networks per dataset trained the paper's way (Adam at a constant learning rate of "
            f"{r['lr']:g}, batch {r['batch_size']}, {prof.paper_epochs} epochs; they differ only in their seed). "
            f"A number is *{REPRODUCED}* when the paper's value lies within the range of these networks' values "
            f"(for a gamma curve, at every weight); *{PARTLY}* when it does not but the paper's qualitative claim "
            f"holds for more than half of them (the same top class; templates above twice chance; more than half "
            f"of the CIs fed back as their own class; a gamma curve reaching {HALF:g} within {SHIFT_W:g} of the "
            f"weight at which the paper's does); *{NOT_REPRODUCED}* otherwise. With fewer than {MIN_DEFINED} "
            f"networks giving a value (a class that gets no noise has no CI) a number is *{NOT_TESTABLE}*, never "
            f"low. The Gabor dictionary's PCA involves no network: reproduced when ours rounds to the paper's "
            f"printed digits. The paper's wider Colab network is *{CONTEXT}*, not matched. The book's own "
            f"`paper_cnn`, trained with the book's recipe, is shown beside them and takes no part in a verdict.")


def sections(rows: Rows) -> dict[str, list[Mapping[str, str]]]:
    """The side-by-side rows grouped by section, sections in order of first appearance."""
    out: dict[str, list[Mapping[str, str]]] = {}
    for r in rows:
        out.setdefault(r["section"], []).append(r)
    return out


def section_tables(rows: Rows) -> list[str]:
    """Per section: its bold title, the table of the paper against our paper-recipe networks (median, range, how
    many gave a value) and the book's ``paper_cnn``, and a paragraph with what the verdicts of the rows not (fully)
    reproduced rest on (if any) and the paper's sources."""
    out = []
    for section, part in sections(rows).items():
        notes = [f"- *{r['quantity']}* ({r['verdict']}): {r['why']}." for r in part if r["why"]]
        out += [f"**{section.capitalize()}**",
                markdown_table(part, {"quantity": "quantity", "paper": "paper",
                                      "ours": "paper-recipe networks: median (range; defined of)",
                                      "book": "the book's paper_cnn", "verdict": "verdict"}),
                ("Why not (fully) reproduced:\n\n" + "\n".join(notes) + "\n\n" if notes else "")
                + "Sources: " + "; ".join(dict.fromkeys(f"`{r['source']}`" for r in part)) + "."]
    return out


def verdict_summary(rows: Rows) -> str:
    """How many comparisons are reproduced, partly, not, and not testable (context rows apart), and per section
    which are not (fully)."""
    count = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    judged = len(rows) - count[CONTEXT]
    lines = [f"Of {judged} comparisons, {count[REPRODUCED]} are reproduced, {count[PARTLY]} partly and "
             f"{count[NOT_REPRODUCED]} not" + (f"; {count[NOT_TESTABLE]} are not testable" if count[NOT_TESTABLE]
                                               else "")
             + (f" ({count[CONTEXT]} more row{'s' if count[CONTEXT] > 1 else ''} only context)" if count[CONTEXT]
                else "") + "."]
    for section, part in sections(rows).items():
        part = [r for r in part if r["verdict"] != CONTEXT]
        off = [r["quantity"] for r in part if r["verdict"] != REPRODUCED]
        lines.append(f"- **{section.capitalize()}**: {len(part) - len(off)} of {len(part)} reproduced"
                     + (f"; not (or only partly): {'; '.join(off)}." if off else "."))
    return "\n".join(lines)


# ---------------------------------------------------------------- the gamma curves

def gamma_panels(curves: Curves, roundtrip: Curves, paper: Mapping[str, object],
                 ch: Chapter) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per dataset label: legend label -> ``(w, share)`` of every curve of the gamma figure (ours, the Gabor CIs',
    the round trip's, the other classes only, and on the paper's dataset the paper's)."""
    w = paper_weights()
    panels = {}
    for d in ch.datasets:
        panel = {LABELS[name]: (w, curves[d, name, "uniform"]["mean"]) for name in LABELS}
        for name in ROUNDTRIP_CURVES:
            panel[f"{LABELS[name]} (Gabor CIs)"] = (w, curves[d, name, "gabor"]["mean"])
            panel[f"{LABELS[name]} ({ROUNDTRIP} round trip)"] = (w, roundtrip[d, name]["mean"])
        for name in ("images_ci", "images_mean"):
            panel[f"{LABELS[name]}, other classes only"] = (w, curves[d, name, "uniform"]["mean_other"])
        if d == paper["dataset"]:
            for name, c in paper["curves"].items():
                panel[f"paper: {LABELS[name]}"] = (w, torch.tensor(c["values"]))
        panels[dataset_label(d)] = panel
    return panels


def gamma_figure(curves: Curves, roundtrip: Curves, paper: Mapping[str, object], ch: Chapter) -> Figure:
    """The gamma curves, one panel per dataset (:func:`gamma_panels`, styles :data:`STYLES`)."""
    return plot_curve_grid(None, gamma_panels(curves, roundtrip, paper, ch),
                           f"{ARCH}: share of (1 − w)·A + w·P_c called c, averaged over the classes "
                           f"({ch.profile.gamma_inputs:,} inputs A per point)", "w (weight of the pattern)",
                           "share called c", ncols=1, ylim=SHARE_YLIM, styles=STYLES)


def gap(curve_a: torch.Tensor, curve_b: torch.Tensor) -> float:
    """How far ``curve_a`` lies above ``curve_b`` on average over the weights strictly between 0 and 1."""
    return float((curve_a - curve_b)[1:-1].mean())


def first_w(curve: torch.Tensor, level: float = HALF) -> float:
    """The first of the paper's weights at which ``curve`` reaches ``level``; NaN if none."""
    return first_reaching(paper_weights(), curve, level)


def reach(curve: torch.Tensor, level: float = HALF) -> str:
    """Where ``curve`` first reaches ``level``, as a phrase: "at w = 0.4", or "at no weight up to w = 1"."""
    w = first_w(curve, level)
    return f"at w = {w:.1f}" if w == w else "at no weight up to w = 1"


def share_up_to(curve: torch.Tensor, w: float = EARLY_W) -> float:
    """The largest share of ``curve`` at the paper's weights up to ``w``."""
    return float(torch.as_tensor(curve)[paper_weights() <= w].max())


def paper_reading(paper: Mapping[str, object]) -> str:
    """What the paper's own gamma curves show: how far the mean image beats the CI on noise, where each reaches
    :data:`HALF`, how little the CI moves test images, and the CIs alone."""
    p = {n: torch.tensor(c["values"], dtype=torch.float64) for n, c in paper["curves"].items()}
    return (f"**What the paper's own numbers show.** On its MNIST model a CI pulls noise towards its class far less "
            f"than the class's mean image does: between w = 0.1 and 0.9 the noise + mean-image curve lies on average "
            f"{gap(p['noise_mean'], p['noise_ci']):.2f} above the noise + CI curve, and it reaches a share of {HALF:g} "
            f"{reach(p['noise_mean'])}, the CI curve {reach(p['noise_ci'])}. On test "
            f"images the CI barely moves anything below w = 0.8 (the share stays at "
            f"{share_up_to(p['images_ci']):.3f} or less up to w = {EARLY_W:g}, i.e. the class frequencies), and the "
            f"CIs alone (w = 1) give {float(p['noise_ci'][-1]):.1f}, the 9-of-10 feed-back.")


def our_reading(curves: Curves, paper: Mapping[str, object]) -> str:
    """The same reading of our curves on the paper's dataset, whether the paper's reading (the CI the weaker
    pattern by more than :data:`PATTERN_GAP`) holds, and whether the Gabor-noise CIs move noise less or more."""
    d0 = paper["dataset"]
    ours = {n: curves[d0, n, "uniform"]["mean"] for n in paper["curves"]}
    g = gap(ours["noise_mean"], ours["noise_ci"])
    return (f"**Ours** ({dataset_label(d0)}): the mean-image curve lies {abs(g):.2f} {'above' if g >= 0 else 'below'} "
            f"the CI curve on noise, and reaches {HALF:g} {reach(ours['noise_mean'])}, the CI curve "
            f"{reach(ours['noise_ci'])}; on test images the CI curve stays at "
            f"{share_up_to(ours['images_ci']):.3f} or less up to w = {EARLY_W:g} and reaches {HALF:g} "
            f"{reach(ours['images_ci'])}; at w = 1 the CIs alone give {float(ours['noise_ci'][-1]):.2f}. "
            + ("The paper's reading holds here: a CI is a weak pattern next to a class mean." if g > PATTERN_GAP else
               "Here the CI moves noise at least as well as the mean image does, unlike in the paper.")
            + " The Gabor-noise CIs (triangles) move "
            + ("noise less" if gap(curves[d0, "noise_ci", "gabor"]["mean"], ours["noise_ci"]) < 0 else "noise more")
            + " than the uniform-noise ones.")


def gamma_reading(curves: Curves, paper: Mapping[str, object]) -> str:
    """:func:`paper_reading` and :func:`our_reading` as two paragraphs."""
    return paper_reading(paper) + "\n\n" + our_reading(curves, paper)


# ---------------------------------------------------------------- templates through training

def snapshot_figure(snaps: Snapshots, ch: Chapter) -> Figure:
    """Per dataset: the template accuracy of uniform (paper's recipe, centred) and Gabor CIs against the
    network's test accuracy, one point per snapshot."""
    series = {"uniform CIs (paper's recipe)": "uniform_paper", "uniform CIs (centred)": "uniform_centred",
              "Gabor CIs (RMS, paper's recipe)": "gabor_rms"}
    return plot_curve_grid(
        None, {dataset_label(d): {label: ([s["test_accuracy"] for s in snaps[d]], [s[key] for s in snaps[d]])
                                  for label, key in series.items()} for d in ch.datasets},
        f"{ARCH}: CI-template accuracy through training ({ch.profile.snapshot_samples:,} noise images per point; "
        "points in training order)", "test accuracy of the network", "template accuracy on the test set",
        hline=ch.chance, hline_label="chance", ylim=ACCURACY_YLIM)


def snapshot_tables(snaps: Snapshots, ch: Chapter) -> list[str]:
    """Per dataset: its bold name and a table of every snapshot's accuracies and where each noise mostly goes."""
    out = []
    for d in ch.datasets:
        names = ch.classes[d]
        rows = [{**s, "ut": f"{names[s['uniform_top']]} {s['uniform_share']:.0%}",
                 "gt": f"{names[s['gabor_top']]} {s['gabor_share']:.0%}"} for s in snaps[d]]
        out += [f"**{dataset_label(d)}**", markdown_table(
            rows, {"step": "step", "epoch": "epoch", "test_accuracy": "test accuracy", "uniform_paper": "uniform CIs",
                   "uniform_centred": "uniform, centred", "gabor_rms": "Gabor CIs (RMS)",
                   "ut": "uniform noise mostly to", "gt": "Gabor noise mostly to"},
            {"epoch": ".2f", **{k: ".1%" for k in ("test_accuracy", "uniform_paper", "uniform_centred", "gabor_rms")}})]
    return out


def snapshot_reading(snaps: Snapshots, ch: Chapter) -> str:
    """Per dataset where the uniform and Gabor templates peak and end; on which datasets the end is more than
    :data:`PEAK_DROP` below the peak; at how many snapshots after step 0 the Gabor CIs beat the uniform ones."""
    lines = []
    for d in ch.datasets:
        s = snaps[d]
        trained = [x for x in s if x["step"] > 0]
        peak = max(trained, key=lambda x: x["uniform_paper"])
        gpeak = max(trained, key=lambda x: x["gabor_rms"])
        lo, hi = min(x["uniform_paper"] for x in trained), max(x["uniform_paper"] for x in trained)
        lines.append(
            f"- **{dataset_label(d)}**: the uniform-noise CI templates peak at {peak['uniform_paper']:.1%} after "
            f"{peak['step']:,} steps (network test accuracy {peak['test_accuracy']:.1%}) and end at "
            f"{s[-1]['uniform_paper']:.1%} (network {s[-1]['test_accuracy']:.1%}), moving between {lo:.1%} and "
            f"{hi:.1%} on the way; the Gabor ones peak at {gpeak['gabor_rms']:.1%} after {gpeak['step']:,} steps "
            f"and end at {s[-1]['gabor_rms']:.1%}.")
    trained_all = [x for d in ch.datasets for x in snaps[d] if x["step"] > 0]
    better = sum(x["gabor_rms"] > x["uniform_paper"] for x in trained_all)
    worse = [d for d in ch.datasets
             if max(x["uniform_paper"] for x in snaps[d] if x["step"] > 0) - snaps[d][-1]["uniform_paper"] > PEAK_DROP]
    return "\n".join(lines) + "\n\n" + (
        f"On {' and '.join(dataset_label(d) for d in worse)} the best white-noise templates come from a partly "
        "trained network, and the fully trained one's are worse. The path is not smooth: which classes collect the "
        "noise changes from one snapshot to the next (the last columns), and a class that gets almost no noise has a "
        "CI that is mostly noise, so the template accuracy jumps with it. " if worse else
        f"Training does not make the white-noise templates clearly worse here: the peak is within "
        f"{100 * PEAK_DROP:.0f} points of the end. ") + (
        f"Gabor-noise CIs, which reach more classes, make the better templates at {better} of {len(trained_all)} "
        "snapshots after the first step.")
