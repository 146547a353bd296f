"""Figures (wna_helpers.plots)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book import plots  # noqa: E402

FASHION = wna.class_names("fashion_mnist")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _colorbars(fig) -> list:
    """Axes of ``fig`` that are colorbars."""
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _images(fig):
    return [im for ax in fig.axes for im in ax.images if ax.get_label() != "<colorbar>"]


# ----------------------------------------------------------------------------- pure helpers

def test_run_label_and_dataset_label():
    assert plots.run_label("paper_cnn", "fashion_mnist", "gaussian", 20000) == \
        "paper_cnn on Fashion-MNIST, gaussian noise, n = 20,000"
    assert plots.run_label(dataset="mnist", n=5) == "MNIST, n = 5"
    assert plots.run_label("mlp", noise="real test images") == "mlp, real test images"
    assert plots.dataset_label("other") == "other"


def test_symmetric_limit_ignores_nan_and_handles_zero():
    assert plots.symmetric_limit(torch.tensor([-3.0, 2.0, float("nan")])) == 3.0
    assert plots.symmetric_limit(torch.zeros(4)) == 1.0
    assert plots.symmetric_limit(torch.full((3,), float("nan"))) == 1.0


def test_to_panels_and_normalize():
    x = torch.arange(8.0).view(2, 1, 2, 2)
    assert plots.to_panels(x).shape == (2, 2, 2)
    assert plots.to_panels([torch.ones(3, 3), torch.zeros(1, 3, 3)]).shape == (2, 3, 3)
    assert np.allclose(plots.to_panels(torch.ones(2, 3, 4, 4)), 1.0)  # channels averaged
    with pytest.raises(ValueError):
        plots.to_panels(torch.zeros(5))
    n = plots.normalize_panels(torch.tensor([[[1.0, -4.0]], [[0.0, 0.0]]]))
    assert np.allclose(n[0], [[0.25, -1.0]]) and np.allclose(n[1], 0.0)


def test_channel_maps():
    m = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2)
    assert np.allclose(plots.channel_maps(m, 1), m[:, 1].numpy())
    assert np.allclose(plots.channel_maps(m), m.mean(1).numpy())
    assert plots.channel_maps(torch.zeros(10, 7)).shape == (10, 1, 7)
    with pytest.raises(ValueError, match="out of range"):
        plots.channel_maps(m, 3)


# ----------------------------------------------------------------------------- figures

def test_plot_images_signed_shared_colorbar():
    imgs = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    imgs[3] = float("nan")  # a class without samples
    fig = plots.plot_images(imgs, [f"{c}\nn=1" for c in FASHION], "paper_cnn on Fashion-MNIST, gaussian noise",
                            ncols=5)
    assert fig._suptitle.get_text().startswith("paper_cnn on Fashion-MNIST")
    assert len(_colorbars(fig)) == 1
    ims = _images(fig)
    assert len(ims) == 10
    lo, hi = ims[0].get_clim()
    assert lo == -hi and hi == pytest.approx(float(np.nanmax(np.abs(imgs.numpy()))))
    assert all(im.get_cmap().name == "RdBu_r" and im.get_clim() == (lo, hi) for im in ims)
    assert any(t.get_text() == "no samples" for ax in fig.axes for t in ax.texts)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.index("T-shirt/top\nn=1") < texts.index("Trouser\nn=1")


def test_plot_images_unsigned_and_errors():
    fig = plots.plot_images(torch.rand(3, 5, 5), None, "means", signed=False)
    assert _images(fig)[0].get_cmap().name == "gray"
    with pytest.raises(ValueError, match="titles"):
        plots.plot_images(torch.rand(3, 5, 5), ["a"], "x")


def test_plot_image_rows_own_and_shared_scales():
    a, b = torch.randn(4, 6, 6), torch.rand(4, 6, 6) * 10
    fig = plots.plot_image_rows([(a, "CI", True), (b, "class mean", False)], list("abcd"), "t")
    assert len(_colorbars(fig)) == 2
    fig = plots.plot_image_rows([(a, "gaussian", True), (3 * a, "uniform", True)], list("abcd"), "t",
                                shared_signed_scale=True)
    assert len(_colorbars(fig)) == 1
    clims = {im.get_clim() for im in _images(fig)}
    assert len(clims) == 1
    with pytest.raises(ValueError):
        plots.plot_image_rows([(a, "x", True), (a[:3], "y", True)])


def test_plot_class_histogram_entropy_and_names():
    counts = torch.tensor([0, 0, 0, 0, 0, 100, 0, 0, 0, 0])
    fig = plots.plot_class_histogram(counts, FASHION, "logreg on Fashion-MNIST, gaussian noise, n = 100")
    ax = fig.axes[0]
    assert "entropy 0.00 of 3.32 bits" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(FASHION)
    assert ax.get_ylabel() and ax.get_xlabel()
    heights = [p.get_height() for p in ax.patches]
    assert heights[5] == 1.0 and sum(heights) == 1.0
    uniform = plots.plot_class_histogram(torch.full((10,), 7), FASHION, "u")
    assert "entropy 3.32 of 3.32" in uniform.axes[0].get_title()
    with pytest.raises(ValueError):
        plots.plot_class_histogram(torch.ones(3), FASHION, "x")


def test_plot_class_histograms_grid():
    fig = plots.plot_class_histograms({"a": torch.ones(10), "b": torch.arange(10)}, FASHION, "sup", ncols=2)
    assert fig._suptitle.get_text() == "sup"
    assert sum(1 for ax in fig.axes if ax.patches) == 2


def test_plot_confusion_annotations_and_colorbar():
    m = torch.tensor([[5, 1], [0, 3]])
    fig = plots.plot_confusion(m, ["Bag", "Coat"], "fed back", "model's answer", "CI of class")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "3", "5"]
    assert ax.get_xlabel() == "model's answer" and ax.get_ylabel() == "CI of class"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Bag", "Coat"]
    assert len(_colorbars(fig)) == 1
    with pytest.raises(ValueError):
        plots.plot_confusion(m, FASHION, "x")


def test_plot_confusion_grid_shared_scale():
    fig = plots.plot_confusion_grid({"a": torch.eye(3) * 2, "b": torch.eye(3) * 7}, ["x", "y", "z"], "sup")
    assert len(_colorbars(fig)) == 1
    assert {im.get_clim() for im in _images(fig)} == {(0.0, 7.0)}


def test_plot_curves():
    fig = plots.plot_curves([1, 10, 100], {"a": [0.1, 0.5, 0.9], "b": [0.2, float("nan"), 1.0]}, "conv",
                            "n", "r", logx=True, hline=0.1, hline_label="chance")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_title() == "conv"
    assert len(ax.get_lines()) == 3 and ax.get_legend() is not None
    with pytest.raises(ValueError):
        plots.plot_curves([1, 2], {"a": [1, 2, 3]}, "t", "x", "y")


def test_plot_filters_vs_sta():
    w = torch.randn(6, 1, 5, 5)
    sta = {"noise, pooled": 3 * w, "noise, centre": -w}
    r = wna.filter_correlation(sta["noise, pooled"], w)
    fig = plots.plot_filters_vs_sta(w, sta, r, "paper_cnn on MNIST, conv1", max_channels=4)
    assert len(_images(fig)) == 3 * 4
    assert "ch 0\nr=1.00" in [t.get_text() for t in fig.axes[0].texts]
    assert fig.axes[0].get_ylabel() == "learned filter"
    assert len(_colorbars(fig)) == 1
    assert all(im.get_clim() == (-1.0, 1.0) for im in _images(fig))  # normalised panels


def test_plot_activation_maps_one_scale():
    real = torch.rand(10, 4, 6, 6)
    noise = 2 * torch.rand(10, 4, 6, 6)
    noise[2] = float("nan")
    fig = plots.plot_activation_maps({"real": real, "noise": noise}, FASHION, "lenet, conv1", channel=1,
                                     counts={"real": torch.ones(10), "noise": torch.arange(10)})
    ims = _images(fig)
    assert len(ims) == 20 and len({im.get_clim() for im in ims}) == 1
    assert len(_colorbars(fig)) == 1 and ims[0].get_cmap().name == "viridis"
    assert fig.axes[0].texts[0].get_text() == "T-shirt/top\nn=1"
    signed = plots.plot_activation_maps(torch.randn(10, 3, 4, 4), FASHION, "signed")
    assert _images(signed)[0].get_cmap().name == "RdBu_r"
    dense = plots.plot_activation_maps({"real": torch.rand(10, 16), "noise": torch.rand(10, 16)}, FASHION, "mlp fc1",
                                       counts={"real": torch.ones(10), "noise": torch.arange(10)})
    ims = _images(dense)  # one class-by-unit heatmap per stimulus, one scale
    assert len(ims) == 2 and ims[0].get_array().shape == (10, 16) and len({im.get_clim() for im in ims}) == 1
    assert dense.axes[1].get_yticklabels()[3].get_text() == "Dress (n=3)"


def test_plot_activation_pair():
    fig = plots.plot_activation_pair({"real": torch.rand(5, 5), "noise": torch.rand(5, 5)}, "t")
    assert len(_colorbars(fig)) == 1 and len({im.get_clim() for im in _images(fig)}) == 1
    # a dense layer: each vector as an image of its units (8 units: rows of 3, the last padded), one colour scale
    fig = plots.plot_activation_pair({"real": torch.rand(8), "noise": torch.rand(8)}, "t")
    assert [im.get_array().shape for im in _images(fig)] == [(3, 3), (3, 3)] and len(_colorbars(fig)) == 1
    assert _images(fig)[0].get_array().mask[-1, -1] and "rows of 3" in fig.axes[0].get_title()
    # a logit layer: grouped bars over the class names
    fig = plots.plot_activation_pair({"real": torch.rand(3), "noise": torch.rand(3)}, "t", colorbar_label="mean logit",
                                     unit_names=["cat", "dog", "cow"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cat", "dog", "cow"]
    assert len(fig.axes[0].patches) == 6 and fig.axes[0].get_ylabel() == "mean logit"
    with pytest.raises(ValueError, match="unit_names"):
        plots.plot_activation_pair({"real": torch.rand(4)}, "t", unit_names=["a", "b"])
