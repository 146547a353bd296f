"""Chapter 7: the results overview, one row per model and dataset, its figures and what it says."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure

from ..chapter import Chapter
from ..criteria import FILTER_MATCH
from ..plots import plot_grouped_bars, plot_images
from ..report import dataset_label, describe_biases, overview_markdown

__all__ = ["overview_tables", "overview_figures", "top_class_figure", "biases", "sta_summary"]

Rows = Sequence[Mapping[str, object]]


def overview_tables(rows: Rows, ch: Chapter) -> list[str]:
    """The two tables: where the noise goes, and what the CIs and STAs are worth."""
    return [f"**The models and where the noise goes**: pure {ch.noise_label}, n noise samples per model; the entropy "
            f"of the predicted classes is at most {ch.max_entropy:.2f} bits.\n\n" + overview_markdown(rows, "noise"),
            f"**What the classification images and STAs are worth**: the CIs as templates on the real test set "
            f"(chance {ch.chance:.0%}), the CIs fed back to their model (given back their own class / CIs), and the "
            f"correlation of the conv1 STAs with the learned filters (CNNs only).\n\n" + overview_markdown(rows, "cis")]


def overview_figures(rows: Rows, ch: Chapter) -> list[Figure]:
    """Accuracy of the models and of their templates; the entropy of their answers on pure noise."""
    acc = plot_grouped_bars(
        [r["model"] for r in rows], {"test accuracy": [r["test_accuracy"] for r in rows],
                                     "CI-template accuracy": [r["ci_template_accuracy"] for r in rows],
                                     "class-mean-template accuracy": [r["mean_template_accuracy"] for r in rows]},
        f"Accuracy on the real test sets: the model, its CIs ({ch.noise_label}, n in the table) as templates, "
        "class means as templates", "accuracy", hline=ch.chance, hline_label=f"chance ({ch.chance:.0%})", ylim=(0, 1),
        panels=[dataset_label(str(r["dataset"])) for r in rows])
    entropy = plot_grouped_bars(
        list(ch.models), {dataset_label(d): [r["noise_entropy_bits"] for r in rows if r["dataset"] == d]
                          for d in ch.datasets},
        f"Entropy of the predicted class of pure {ch.noise_label}, n in the table (0: every noise image gets the "
        "same answer)", "entropy (bits)", hline=ch.max_entropy, hline_label=f"uniform over {ch.num_classes} classes")
    return [acc, entropy]


def top_class_figure(rows: Rows, cis: Mapping[tuple[str, str], object], ch: Chapter) -> Figure:
    """The CI of the class each model calls most noise, minus the mean noise image, one panel per row."""
    tops: list[torch.Tensor] = []
    titles = []
    for r in rows:
        ci = cis[r["model"], r["dataset"]]
        c = int(r["top_noise_class"])
        tops.append(ci.images[c] - ci.mean_stimulus)  # type: ignore[attr-defined]
        titles.append(f"{r['model']}\n{dataset_label(str(r['dataset']))}\nn={r['n_noise']:,}\n"
                      f"{ch.classes[str(r['dataset'])][c]} ({r['top_noise_share']:.0%})")
    blank = any(r["top_noise_share"] == 1.0 for r in rows)
    return plot_images(tops, titles, "The classification image of the class each model calls most noise, minus "
                       f"the mean noise image ({ch.noise_label}; each panel scaled to its maximum"
                       + ("; a blank panel: all the noise went to that class, so its CI is the mean noise image)"
                          if blank else ")"), ncols=len(ch.models), normalize=True, panel_size=1.05)


def biases(rows: Rows) -> str:
    """What the rows say about each model's biases (:func:`~wna_helpers.book.report.describe_biases`)."""
    return describe_biases(rows)


def sta_summary(rows: Rows, ch: Chapter) -> str:
    """How many CNN–dataset pairs have first-layer STAs matching their filters at r >= FILTER_MATCH, and the range
    of the noise entropy over all pairs."""
    cnn = [r for r in rows if r["sta_filter_r"] == r["sta_filter_r"]]
    good = [r for r in cnn if r["sta_filter_r"] >= FILTER_MATCH]
    bussgang = ("as the Bussgang argument predicts for units fed directly by the noise" if ch.noise.kind == "gaussian"
                else "as the Bussgang argument predicts for units fed directly by Gaussian noise, and approximately "
                     "for other white noise")
    return (f"In {len(good)} of {len(cnn)} CNN–dataset pairs the first-layer STAs from {ch.noise_label} match the "
            f"learned filters at r >= {FILTER_MATCH} (mean over channels from "
            f"{min(r['sta_filter_r'] for r in cnn):.3f} to {max(r['sta_filter_r'] for r in cnn):.3f}), {bussgang}. "
            f"The network-level CIs depend on how each model responds to noise: the entropy of the noise "
            f"predictions ranges from {min(r['noise_entropy_bits'] for r in rows):.2f} to "
            f"{max(r['noise_entropy_bits'] for r in rows):.2f} bits across the {len(rows)} model–dataset pairs.")
