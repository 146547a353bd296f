"""Chapter 6: mean activation maps per class over real images and over noise, and how specific they are."""
from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure

from ...methods.activations import ActivationStatistics
from ..chapter import Chapter
from ..criteria import SPECIFIC_MARGIN
from ..measures import activation_similarity, activation_specificity
from ..plots import plot_activation_maps
from ..report import dataset_label, markdown_table

__all__ = ["activation_figures", "specificity_rows", "specificity"]

#: (model, dataset, "real" | "noise") -> activation statistics.
Acts = Mapping[tuple[str, str, str], ActivationStatistics]

REAL_LABEL = "real test images\n(by label)"
NOISE_LABEL = "noise\n(by prediction)"


def activation_figures(acts: Acts, ch: Chapter) -> list[Figure]:
    """Every model, dataset and layer: the mean activation map per class over real images and over noise."""
    figs = []
    for d in ch.datasets:
        for a in ch.models:
            real, noise = acts[a, d, "real"], acts[a, d, "noise"]
            for layer in real.means:
                figs.append(plot_activation_maps(
                    {REAL_LABEL: real.means[layer], NOISE_LABEL: noise.means[layer]}, ch.classes[d],
                    f"{a} on {dataset_label(d)}, layer {layer}: mean activation per class "
                    f"({real.n_samples:,} test images; {noise.n_samples:,} samples of {ch.noise_label})",
                    counts={REAL_LABEL: real.counts, NOISE_LABEL: noise.counts}))
    return figs


def specificity_rows(acts: Acts, ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model, for the last layer studied: the noise maps' correlation with the same
    class's real map and with the other classes', the share of noise classes nearest their own class, the
    classes that received noise, and the top noise class with its correlation."""
    rows = []
    for d in ch.datasets:
        for a in ch.models:
            real, noise = acts[a, d, "real"], acts[a, d, "noise"]
            layer = list(real.means)[-1]
            r = activation_similarity(real, noise, layer)
            spec = activation_specificity(real, noise, layer)
            top = int(noise.counts.argmax())
            rows.append({"model": a, "dataset": dataset_label(d), "layer": layer, "r": spec["same"],
                         "other": spec["other"], "matched": spec["matched"], "k": int((~r.isnan()).sum()),
                         "top": ch.classes[d][top], "rtop": float(r[top])})
    return rows


def specificity(rows: list[dict[str, object]]) -> list[str]:
    """The table and the sentence: the pairs whose noise reaches two classes or more, and among them those whose
    same-class r beats the other classes' by more than :data:`~wna_helpers.book.criteria.SPECIFIC_MARGIN`."""
    table = markdown_table(rows, {
        "model": "model", "dataset": "dataset", "layer": "layer", "r": "r, same class", "other": "r, other classes",
        "matched": "nearest own class", "k": "classes with noise", "top": "top noise class", "rtop": "r, top class"},
        {"r": ".2f", "other": ".2f", "matched": ".0%", "rtop": ".2f"})
    multi = [r for r in rows if r["k"] >= 2]
    specific = [r for r in multi if r["r"] > r["other"] + SPECIFIC_MARGIN]
    prose = (f"Averaged over the classes that received noise, the noise maps correlate at r = "
             f"{min(r['r'] for r in rows):.2f} to {max(r['r'] for r in rows):.2f} with the real maps of the same "
             f"class. Part of this is what all inputs share (the other real classes give "
             f"{min(r['other'] for r in rows):.2f} to {max(r['other'] for r in rows):.2f}). For {len(specific)} of "
             f"the {len(multi)} model–dataset pairs whose noise reaches at least two classes, the same class matches "
             f"better than the others by more than {SPECIFIC_MARGIN:g} in r (a margin, not a test): there, the noise "
             f"a model calls $c$ drives its last layer somewhat like real images of $c$.")
    return [table, prose]
