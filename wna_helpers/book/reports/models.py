"""Chapters 1 and 2: the models (layer tables, receptive fields, sizes) and their training (accuracy,
learning curves, predictions)."""
from __future__ import annotations

from typing import Mapping

import torch
from matplotlib.figure import Figure
from torch import nn

from ...engine.layers import conv_layer_names, layer_table
from ...methods.sta import receptive_field
from ...zoo.data import Dataset, load_dataset
from ...zoo.training import evaluate
from ..chapter import Chapter
from ..report import dataset_label, markdown_table

__all__ = ["layer_section", "receptive_field_table", "parameter_figure", "accuracy_table", "learning_curves",
           "prediction_figure", "prediction_figures"]

Trained = Mapping[tuple[str, str], tuple[nn.Module, Mapping[str, object]]]


def layer_section(name: str, model: nn.Module) -> str:
    """A heading with the model's parameter count and the table of its layers (output shape, parameters)."""
    rows = layer_table(model)
    table = markdown_table([{**r, "name": f"`{r['name']}`", "shape": " × ".join(map(str, r["output_shape"]))}
                            for r in rows],
                           {"name": "layer", "type": "type", "shape": "output shape", "params": "parameters"},
                           {"params": ","}, right=["params"])
    total = sum(int(r["params"]) for r in rows)
    return f"### `{name}`: {total:,} parameters\n\n{table}"


def receptive_field_table(models: Mapping[str, nn.Module]) -> str:
    """Every conv layer of every model: its window on the input, the step between units, unit 0's offset, map size."""
    rows = []
    for name, model in models.items():
        for layer in conv_layer_names(model):
            rf = receptive_field(model, layer)
            rows.append({"model": f"`{name}`", "layer": f"`{layer}`", "window": f"{rf.size[0]}×{rf.size[1]}",
                         "step": rf.jump[0], "offset": rf.offset[0], "map": f"{rf.out_shape[0]}×{rf.out_shape[1]}"})
    return markdown_table(rows, {"model": "model", "layer": "layer", "window": "window (pixels)",
                                 "step": "step between units", "offset": "offset of unit 0", "map": "map size"})


def parameter_figure(models: Mapping[str, nn.Module], ch: Chapter) -> Figure:
    """Horizontal bars of the parameter counts, log scale, each bar labelled with its count."""
    import matplotlib.pyplot as plt

    names = list(models)
    params = [sum(p.numel() for p in models[n].parameters()) for n in names]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(names, params, color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("model")
    ax.set_title(f"Parameter count of the {len(names)} models (1×28×28 input, {ch.num_classes} classes)")
    for y, p in enumerate(params):
        ax.text(p, y, f" {p:,}", va="center")
    return fig


def accuracy_table(trained: Trained, ch: Chapter) -> str:
    """Test accuracy of every model on every dataset, with its epochs and training time."""
    rows = [{"model": f"`{a}`", **{d: (f"{100 * float(trained[a, d][1]['test_accuracy']):.2f}% "
                                       f"({trained[a, d][1]['epochs']} ep., {float(trained[a, d][1]['train_seconds']):.0f} s)")
                                    for d in ch.datasets}} for a in ch.models]
    table = markdown_table(rows, {"model": "model", **{d: d for d in ch.datasets}}, right=ch.datasets)
    return (f"Test accuracy on the 10,000 test images, profile **{ch.profile.name}** (epochs and training time in "
            f"brackets):\n\n{table}")


def learning_curves(trained: Trained, ch: Chapter) -> list[Figure]:
    """Per dataset: training loss against step (log scale) and test accuracy after each epoch, every model."""
    import matplotlib.pyplot as plt

    figs = []
    for ds in ch.datasets:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
        for arch in ch.models:
            hist = trained[arch, ds][1]["history"]
            steps = [hist["log_every"] * (i + 1) for i in range(len(hist["step_loss"]))]
            ax1.plot(steps, hist["step_loss"], label=arch, lw=1)
            acc = hist["epoch_test_accuracy"]
            ax2.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker="o", label=arch)
        ax1.set_yscale("log")
        ax1.set(xlabel="training step", ylabel="cross-entropy loss (log scale)",
                title=f"Training loss, {ds}, profile {ch.profile.name}")
        ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"Test accuracy after each epoch, {ds}")
        ax2.legend(fontsize=8)
        figs.append(fig)
    return figs


def prediction_figure(model: nn.Module, test: Dataset, predictions: torch.Tensor, dataset: str,
                      arch: str = "paper_cnn", columns: int = 8) -> Figure:
    """The test images with the model's prediction and the true class as titles; mistakes in red."""
    import matplotlib.pyplot as plt

    rows = -(-len(test) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(12, 5 * rows / 3), squeeze=False)
    for ax, img, y, p in zip(axes.flat, test.images, test.labels, predictions):
        ax.imshow(img[0], cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{test.classes[p]}\n(true {test.classes[y]})", fontsize=8, color="black" if p == y else "red")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"{arch} on the {dataset_label(dataset)} test set: predicted (true) class")
    return fig


def prediction_figures(trained: Trained, ch: Chapter, arch: str = "paper_cnn", n: int = 24) -> list[Figure]:
    """Per dataset: the first ``n`` test images with the predictions of the trained ``arch``."""
    figs = []
    for d in ch.datasets:
        test = load_dataset(d, "test", limit=n)
        model = trained[arch, d][0]
        figs.append(prediction_figure(model, test, evaluate(model, test)[1], d, arch))
    return figs
