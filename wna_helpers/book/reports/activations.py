"""Chapter 6: mean activation maps per class over real images and over noise, and how specific they are."""
from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure

import torch

from ...methods.activations import ActivationStatistics
from ...methods.ci_compare import holm_adjust
from ..chapter import Chapter
from ..criteria import FWER, MIN_COUNT
from ..measures import activation_similarity, activation_specificity
from ..plots import plot_activation_maps
from ..report import P_VALUE, dataset_label, markdown_table

__all__ = ["activation_figures", "is_output_layer", "specificity_rows", "specificity"]

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


def is_output_layer(stats: ActivationStatistics, layer: str, num_classes: int) -> bool:
    """Whether ``layer`` holds one unit per class (the logit layer of ``logreg`` and ``gru``): grouping noise by its
    argmax then makes the noise maps match the class by construction."""
    return stats.means[layer][0].numel() == num_classes


def specificity_rows(acts: Acts, ch: Chapter) -> list[dict[str, object]]:
    """One row per dataset and model, for the last layer studied: the centred noise maps' correlation with the
    same class's real map and with the other classes' (the classes with at least :data:`MIN_COUNT` noise samples),
    the share of those noise classes nearest their own class, the permutation p (Holm over the pairs that are
    tested: at least two classes, not an output layer), how many classes are used, whether the layer is the
    output (``output``), and the top noise class with its (raw) correlation."""
    rows = []
    for d in ch.datasets:
        for a in ch.models:
            real, noise = acts[a, d, "real"], acts[a, d, "noise"]
            layer = list(real.means)[-1]
            r = activation_similarity(real, noise, layer)
            spec = activation_specificity(real, noise, layer)
            top = int(noise.counts.argmax())
            output = is_output_layer(real, layer, ch.num_classes)
            rows.append({"model": a, "dataset": dataset_label(d), "layer": layer, "r": spec["same"],
                         "other": spec["other"], "matched": spec["matched"], "k": spec["classes"],
                         "p_raw": float("nan") if output else spec["p"], "output": output,
                         "top": ch.classes[d][top], "rtop": float(r[top])})
    adj = holm_adjust(torch.tensor([r["p_raw"] for r in rows], dtype=torch.float64)).tolist()
    for row, p in zip(rows, adj):
        row["p"] = p
    return rows


def specificity(rows: list[dict[str, object]]) -> list[str]:
    """The table and the sentence: the pairs tested (noise in two classes or more with :data:`MIN_COUNT` samples,
    not an output layer) and among them those whose centred same-class r beats every relabelling of the classes at
    a Holm-corrected p of at most :data:`~wna_helpers.book.criteria.FWER`."""
    shown = [{**r, "layer": f"{r['layer']} (output)" if r["output"] else r["layer"]} for r in rows]
    table = markdown_table(shown, {
        "model": "model", "dataset": "dataset", "layer": "layer", "r": "r, same class", "other": "r, other classes",
        "matched": "nearest own class", "p": "p (Holm)", "k": f"classes with >= {MIN_COUNT} noise samples",
        "top": "top noise class", "rtop": "r, top class (raw)"},
        {"r": ".2f", "other": ".2f", "matched": ".0%", "p": P_VALUE, "rtop": ".2f"})
    tested = [r for r in rows if r["p"] == r["p"]]
    output = [f"`{r['model']}` on {r['dataset']}" for r in rows if r["output"]]
    specific = [r for r in tested if r["p"] <= FWER]
    defined = [r for r in rows if r["r"] == r["r"] and not r["output"]]  # an output layer matches by construction
    others = [r["other"] for r in defined if r["other"] == r["other"]]
    pairs = f"pair{'s' if len(tested) != 1 else ''}"
    prose = ((f"Both maps are centred on their mean over classes, so what all inputs share does not count. Over the "
              f"classes that received at least {MIN_COUNT} noise samples, the noise maps of the layers tested "
              f"correlate at r = {min(r['r'] for r in defined):.2f} to {max(r['r'] for r in defined):.2f} with the "
              f"real maps of the same class, and at {min(others):.2f} to {max(others):.2f} with the other classes'. "
              if others else f"No tested pair has two classes with {MIN_COUNT} noise samples. ")
             + (f"The last layer of {', '.join(output)} is its output: noise grouped by the argmax of that layer "
                f"matches its class by construction, so these rows are not tested. " if output else "")
             + (f"For {len(specific)} of the {len(tested)} {pairs} tested, the same class matches better than every "
                f"relabelling of the classes at a Holm-corrected p <= {FWER:g}: there, the noise a model calls $c$ "
                f"drives its last layer somewhat like real images of $c$." if specific else
                f"None of the {len(tested)} {pairs} tested matches the same class better than every relabelling of "
                f"the classes at a Holm-corrected p <= {FWER:g}: this measurement does not show that the noise a "
                f"model calls $c$ drives its last layer like real images of $c$."))
    return [table, prose]
