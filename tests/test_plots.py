"""Figures (plots.py), the activation explorer (widgets.py) and the chapter helpers added to study.py."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers import plots, study  # noqa: E402
from wna_helpers.activations import ActivationStatistics  # noqa: E402

from conftest import needs_data  # noqa: E402

FASHION = wna.class_names("fashion_mnist")
TINY = replace(wna.PROFILES["quick"], name="tiny-plots", train_subset=600, batch_size=50,
               epochs={"mnist": 1, "fashion_mnist": 1}, n_noise={"default": 3000}, n_noise_gpu={"default": 3000},
               n_sta={"default": 2000}, n_real=200)


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


def test_markdown_table():
    md = plots.markdown_table([{"a": 0.5, "b": float("nan"), "c": "x|y"}], {"a": "A", "b": "B", "c": "C"},
                              {"a": ".1%"})
    lines = md.splitlines()
    assert lines[0] == "| A | B | C |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| 50.0% | – | x\\|y |"


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
    fig = plots.plot_activation_pair({"real": torch.rand(8), "noise": torch.rand(8)}, "t")
    assert len(fig.axes[0].get_lines()) == 2


# ----------------------------------------------------------------------------- study helpers

def test_geometric_sizes():
    assert study.geometric_sizes(20000) == [500, 1000, 2000, 4000, 8000, 16000, 20000]
    assert study.geometric_sizes(1000, 500) == [500, 1000]
    assert study.geometric_sizes(300) == [300]
    assert study.geometric_sizes(10, 1, 1.5) == sorted(set(study.geometric_sizes(10, 1, 1.5)))
    with pytest.raises(ValueError):
        study.geometric_sizes(100, factor=1.0)


def test_ci_convergence_snapshots_are_prefix_runs():
    """Known answer: the snapshot at n is exactly the CI of a run of n samples (same seed)."""
    m = wna.build_model("paper_cnn", seed=0)
    conv = study.ci_convergence(m, [300, 1000, 2500], batch_size=256)
    for i, n in enumerate(conv.sizes):
        ci = wna.classification_images(m, n, batch_size=700, progress=False)
        assert torch.equal(ci.counts, conv.counts[i])
        assert torch.allclose(ci.sums, conv.sums[i], rtol=0, atol=1e-9)
        snap = conv.snapshot(n)
        assert snap.n_samples == n and torch.allclose(snap.sumsq, ci.sumsq, rtol=0, atol=1e-9)
    r = conv.correlation_with_final()
    ok = conv.counts[-1] >= 2
    assert torch.allclose(r[-1, ok], torch.ones(int(ok.sum()), dtype=torch.float64))
    assert torch.isnan(r[:, ~ok]).all()
    assert conv.mean_correlation()[-1] == pytest.approx(1.0)
    assert (conv.counts.sum(1) == torch.tensor(conv.sizes)).all()
    with pytest.raises(ValueError):
        conv.snapshot(999)
    with pytest.raises(ValueError):
        study.ci_convergence(m, [1000, 500])


def test_ci_convergence_linear_known_answer():
    """For a linear model the CI converges toward w_c - mean_k w_k (METHOD.md)."""
    m = wna.build_model("logreg", seed=0)
    with torch.no_grad():
        m.fc1.weight.mul_(20)
    conv = study.ci_convergence(m, [500, 20000])
    w = m.fc1.weight.detach().double()
    target = w - w.mean(0, keepdim=True)
    r_small = [wna.pearson(conv.images[0, c], target[c]) for c in range(10)]
    r_big = [wna.pearson(conv.images[1, c], target[c]) for c in range(10)]
    assert np.mean(r_big) > np.mean(r_small) and np.mean(r_big) > 0.8


def test_sta_convergence_matches_spike_triggered_average():
    m = wna.build_model("lenet", seed=0)
    conv = study.sta_convergence(m, "conv1", [256, 1500], batch_size=300)
    sta = wna.spike_triggered_average(m, "conv1", 1500, progress=False)
    snap = conv.snapshot(1500)
    # the STA's sums are float32 convolutions per batch: equal up to float32 rounding
    assert torch.allclose(snap.pooled, sta.pooled, atol=1e-5, equal_nan=True)
    assert torch.allclose(snap.center, sta.center, atol=1e-5, equal_nan=True)
    assert torch.allclose(snap.mean_activation, sta.mean_activation, atol=1e-5)
    r = conv.filter_correlation(m.conv1.weight)
    assert r["pooled"].shape == (2, 32)
    assert r["pooled"][-1].nanmean() > 0.95  # Bussgang: pooled STA ~ filter
    fin = conv.correlation_with_final()
    assert torch.allclose(fin["pooled"][-1], torch.ones(32, dtype=torch.float64))
    with pytest.raises(ValueError, match="not a conv layer"):
        study.sta_convergence(m, "fc1", [10])
    both = study.sta_convergence(m, ["conv1", "conv2"], [256, 1500], batch_size=300)
    assert torch.allclose(both["conv1"].pooled, conv.pooled, atol=1e-5, equal_nan=True)
    sta2 = wna.spike_triggered_average(m, "conv2", 256, progress=False)
    assert torch.allclose(both["conv2"].snapshot(256).pooled, sta2.pooled, atol=1e-5, equal_nan=True)


def test_bias_directions():
    ci = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    ci[2] = float("nan")
    d = study.bias_directions(ci)
    ok = [0, 1, 3]
    assert torch.isnan(d[2]).all()
    rms = d[ok].reshape(3, -1).square().mean(1).sqrt()
    assert torch.allclose(rms, torch.ones(3, dtype=torch.float64))
    centred = ci[ok].reshape(3, -1) - ci[ok].reshape(3, -1).mean(0)
    for i, c in enumerate(ok):  # same direction as the mean-centred CI
        assert wna.pearson(d[c], centred[i]) == pytest.approx(1.0)
    d2 = study.bias_directions(ci, center=False, rms=2.0)
    assert wna.pearson(d2[0], ci[0]) == pytest.approx(1.0)
    lone = torch.full_like(ci, float("nan"))
    lone[1] = ci[1]  # all noise went to one class (Fashion-MNIST CNNs): no centring, CI kept
    d3 = study.bias_directions(lone)
    assert wna.pearson(d3[1], ci[1]) == pytest.approx(1.0) and torch.isnan(d3[0]).all()


def test_side_samples_and_gammas():
    assert study.side_samples("paper_cnn", wna.PROFILES["quick"]) == \
        round(0.25 * wna.PROFILES["quick"].noise_samples("paper_cnn"))
    p = replace(wna.PROFILES["quick"], extra={"side_fraction": 0.5, "mix_gammas": [0.3], "bias_inputs": 7})
    assert study.side_samples("mlp", p) == round(0.5 * p.noise_samples("mlp"))
    assert study.mix_gammas(p) == [0.3] and study.bias_inputs("mlp", p) == 7
    assert study.side_samples("mlp", replace(p, extra={"side_fraction": 1e-9})) == 1000


@needs_data
def test_study_helpers_cache_and_seed_study_ci(tmp_path, monkeypatch):
    """The convergence run stores its snapshots as study_ci / study_sta results (no second run)."""
    monkeypatch.setenv("WNA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(study, "_MODELS", {})
    conv = study.study_ci_convergence("logreg", "mnist", TINY, sizes=[1000, 3000])
    calls = []
    real = study.classification_images
    monkeypatch.setattr(study, "classification_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    ci = study.study_ci("logreg", "mnist", TINY)  # 3000 = TINY's n_noise: from the cache
    assert calls == [] and torch.equal(ci.counts, conv.counts[-1])
    ci1k = study.study_ci("logreg", "mnist", TINY, n_samples=1000)
    assert calls == [] and torch.equal(ci1k.counts, conv.counts[0])

    sc = study.study_sta_convergence("paper_cnn", "mnist", TINY, sizes=[500, 2000])  # 2000 = TINY's n_sta
    assert list(sc) == ["conv1", "conv2"]
    model, _ = study.trained("paper_cnn", "mnist", TINY)
    expected = wna.activation_statistics(model, ["conv1", "conv2"], 2000, progress=False)
    monkeypatch.setattr(study, "spike_triggered_average", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(study, "activation_statistics", lambda *a, **k: pytest.fail("recomputed"))
    for layer in ("conv1", "conv2"):
        sta = study.study_sta("paper_cnn", "mnist", layer, TINY)
        assert torch.allclose(sta.pooled, sc[layer].pooled[-1], equal_nan=True)
    act = study.study_activations("paper_cnn", "mnist", profile=TINY)  # rode along on the STA pass
    assert torch.equal(act.counts, expected.counts)
    for layer in ("conv1", "conv2"):
        assert torch.allclose(act.means[layer], expected.means[layer], equal_nan=True)

    bias = study.study_bias("logreg", "mnist", TINY, gammas=[0.0, 0.2, 2.0], n_inputs=50)
    for key in ("test", "noise"):
        share = bias[key]
        assert share.shape == (3, 10)
        assert share[0].sum() == pytest.approx(1.0)  # gamma = 0: the class shares
        assert (share[-1] >= share[0] - 1e-12).all()  # pushing toward c raises the share of c
        assert share[-1].mean() > 0.9
    assert study.study_bias("logreg", "mnist", TINY, gammas=[0.0, 0.2, 2.0], n_inputs=50)["test"].equal(bias["test"])

    mixed = study.study_ci_mixing("logreg", "mnist", TINY, gammas=[0.5], n_samples=1000)
    assert list(mixed) == [0.5] and mixed[0.5].noise["gamma"] == 0.5


# ----------------------------------------------------------------------------- widget

def _fake_stats(arch: str, dataset: str, stimulus: str) -> ActivationStatistics:
    g = torch.Generator().manual_seed(hash((arch, stimulus)) % 1000)
    means = {"conv1": torch.rand(10, 3, 6, 6, generator=g, dtype=torch.float64),
             "conv2": torch.rand(10, 5, 2, 2, generator=g, dtype=torch.float64)}
    if arch == "mlp":
        means = {"fc1": torch.rand(10, 12, generator=g, dtype=torch.float64)}
    counts = torch.arange(10) + (100 if stimulus == "real" else 0)
    return ActivationStatistics(means=means, counts=counts, group_by="label" if stimulus == "real" else "prediction",
                                n_samples=int(counts.sum()), stimulus={"kind": stimulus})


def test_explorer_view():
    real, noise = _fake_stats("a", "mnist", "real"), _fake_stats("a", "mnist", "noise")
    from wna_helpers.widgets import explorer_view
    v = explorer_view(real, noise, "conv1", 4, 2)
    (k1, a), (k2, b) = v.items()
    assert torch.equal(a, real.means["conv1"][4, 2]) and torch.equal(b, noise.means["conv1"][4, 2])
    assert "n=104" in k1 and "n=4" in k2
    assert torch.allclose(explorer_view(real, noise, "conv1", 0, None)[k1.replace("104", "100")],
                          real.means["conv1"][0].mean(0))
    with pytest.raises(ValueError):
        explorer_view(real, noise, "conv1", 0, 3)


def test_activation_explorer_builds_headless_and_updates():
    ipywidgets = pytest.importorskip("ipywidgets")
    from wna_helpers.widgets import activation_explorer

    box = activation_explorer("quick", models=["paper_cnn", "mlp"], datasets=["mnist", "fashion_mnist"],
                              stats_fn=_fake_stats)
    assert isinstance(box, ipywidgets.VBox)
    ex = box.explorer
    assert ex["status"].value == ""
    assert list(ex["layer"].options) == ["conv1", "conv2"]
    assert ex["cls"].value == 9  # the class the noise reaches most
    assert len(ex["channel"].options) == 1 + 3
    ex["layer"].value = "conv2"
    assert len(ex["channel"].options) == 1 + 5 and ex["status"].value == ""
    ex["channel"].value = 4
    ex["dataset"].value = "fashion_mnist"
    assert ex["cls"].options[0][0].startswith("T-shirt/top")
    ex["model"].value = "mlp"
    assert list(ex["layer"].options) == ["fc1"] and ex["status"].value == ""
    ex["cls"].value = 3
    assert ex["status"].value == ""


def test_activation_explorer_reports_errors_in_status():
    from wna_helpers.widgets import activation_explorer

    def broken(arch, dataset, stimulus):
        raise RuntimeError("no data here")

    box = activation_explorer("quick", models=["paper_cnn"], datasets=["mnist"], stats_fn=broken)
    assert "no data here" in box.explorer["status"].value


def test_activation_similarity_and_specificity():
    g = torch.Generator().manual_seed(0)
    real_means = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    noise_means = real_means + 0.01 * torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    noise_means[3] = float("nan")
    real = ActivationStatistics({"c": real_means}, torch.tensor([5, 5, 5, 5]), "label", 20, {})
    noise = ActivationStatistics({"c": noise_means}, torch.tensor([7, 2, 1, 0]), "prediction", 10, {})
    r = study.activation_similarity(real, noise, "c")
    assert torch.allclose(r[:3], torch.ones(3, dtype=torch.float64), atol=1e-3) and torch.isnan(r[3])
    spec = study.activation_specificity(real, noise, "c")
    assert spec["same"] > 0.99 and spec["matched"] == 1.0 and abs(spec["other"]) < 0.9


def test_noise_bias_class_correlation_first_reaching_feedback():
    ci = wna.ClassificationImages(images=torch.zeros(3, 1, 2, 2), counts=torch.tensor([0, 90, 10]), n_samples=100,
                                  sums=torch.zeros(3, 1, 2, 2), sumsq=torch.zeros(3, 1, 2, 2), noise={})
    b = study.noise_bias(ci, ["a", "b", "c"])
    assert b["top_class"] == "b" and b["top_share"] == 0.9 and b["empty_classes"] == ["a"]
    assert b["classes_reached"] == 2 and b["entropy_bits"] == pytest.approx(0.469, abs=1e-3)
    x = torch.randn(3, 5, dtype=torch.float64)
    r = study.class_correlation(x, 2 * x + 1, torch.tensor([100, 10, 60]))
    assert r[0] == pytest.approx(1.0) and torch.isnan(r[1]) and r[2] == pytest.approx(1.0)
    r2 = study.class_correlation(x, -x, (torch.tensor([100, 100, 100]), torch.tensor([100, 0, 100])))
    assert r2[0] == pytest.approx(-1.0) and torch.isnan(r2[1])
    assert study.first_reaching([1, 2, 3], [0.1, float("nan"), 0.95], 0.9) == 3.0
    assert math.isnan(study.first_reaching([1, 2], [0.1, 0.2], 0.9))
    assert study.stable_from([10, 1, 5], [0.95, 0.2, 0.91], 0.9) == 5.0
    fb = study.feedback_matrix(torch.tensor([0, 2, -1]))
    assert fb.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_convergence_null_and_points():
    conv = study.CIConvergence(sizes=[100, 400], counts=torch.tensor([[50, 50], [200, 200]]),
                               sums=torch.randn(2, 2, 1, 2, 2, dtype=torch.float64),
                               sumsq=torch.ones(2, 2, 1, 2, 2, dtype=torch.float64), noise={})
    assert torch.allclose(conv.null_correlation(), torch.tensor([0.5, 1.0], dtype=torch.float64))
    n, r = conv.class_points()
    assert n.tolist() == [50.0, 50.0] and len(r) == 2


def test_environment_info_and_profile_table():
    info = study.environment_info()
    assert info["torch"] == torch.__version__.split("+")[0] or info["torch"].startswith(torch.__version__[:4])
    assert "device" in info and "python" in info
    md = plots.profile_table(wna.PROFILES)
    assert md.splitlines()[0] == "| setting | quick | full |" and "`n_noise`" in md


def test_benchmark_helpers(tmp_path):
    data, note = plots.load_engine_benchmark(str(tmp_path / "missing.json"))
    assert data is None and "No benchmark results found" in note
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    data, note = plots.load_engine_benchmark(str(bad))
    assert data is None and "cannot be read" in note
    good = tmp_path / "engine_benchmark.json"
    good.write_text(json.dumps({
        "meta": {"arch": "paper_cnn", "loadavg_start": [1.0, 1, 1], "loadavg_end": [2.0, 1, 1]},
        "targets": {"ci_engine_over_forward": 0.85},
        "ratios": {"cpu": {"ci_engine_over_forward": 0.9}},
        "measurements": [{"kind": k, "device": "cpu", "n": n, "seconds": 1.0, "samples_per_s": n / 2,
                          "peak_rss_mb": 100 + n / 1000} for k in ("forward", "ci_engine") for n in (1000, 10000)]}))
    data, note = plots.load_engine_benchmark(str(good))
    assert data is not None and "load average 1.00 at start and 2.00 at end" in note
    assert plots.benchmark_table(data).count("| cpu |") == 4
    assert "| yes |" in plots.benchmark_targets(data)
    fig = plots.plot_benchmark(data)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_lines()) == 2 and fig.axes[1].get_ylabel() == "peak RSS (MB)"


def test_overview_markdown_and_describe_biases():
    rows = [{"model": "paper_cnn", "dataset": "fashion_mnist", "test_accuracy": 0.7, "noise_entropy_bits": 0.0,
             "top_noise_class": 5, "top_noise_share": 1.0, "ci_template_accuracy": 0.1,
             "mean_template_accuracy": 0.66, "feedback_diagonal": 1, "sta_filter_r": 0.999, "n_noise": 20000},
            {"model": "logreg", "dataset": "fashion_mnist", "test_accuracy": 0.68, "noise_entropy_bits": 3.29,
             "top_noise_class": 1, "top_noise_share": 0.13, "ci_template_accuracy": 0.68,
             "mean_template_accuracy": 0.66, "feedback_diagonal": 10, "sta_filter_r": float("nan"),
             "n_noise": 20000}]
    md = plots.overview_markdown(rows)
    assert "| paper_cnn | Fashion-MNIST | 70.0% | 0.00 | Sandal (100%) |" in md and "| – |" in md
    text = plots.describe_biases(rows)
    assert "1 of 2 models are strongly biased" in text and "**Sandal**" in text
    assert "1 of its 10 CIs" in text and "10 of its 10 CIs" in text
    rows[0]["cis"] = 1
    assert "its only CI is given back its own class" in plots.describe_biases(rows)
    assert "near chance" in text and "well above chance" in text
