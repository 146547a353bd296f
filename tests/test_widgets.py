"""The activation explorer (wna_helpers.widgets), headless."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.methods.activations import ActivationStatistics  # noqa: E402


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
    from wna_helpers.book.widgets import explorer_view
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
    from wna_helpers.book.widgets import activation_explorer

    box = activation_explorer(wna.get_profile("quick"), models=["paper_cnn", "mlp"], datasets=["mnist", "fashion_mnist"],
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
    from wna_helpers.book.widgets import activation_explorer

    def broken(arch, dataset, stimulus):
        raise RuntimeError("no data here")

    box = activation_explorer(wna.get_profile("quick"), models=["paper_cnn"], datasets=["mnist"], stats_fn=broken)
    assert "no data here" in box.explorer["status"].value




def test_explorer_keeps_a_class_only_where_the_noise_reaches_it():
    from wna_helpers.book.widgets import activation_explorer

    def stats(arch, dataset, stimulus):
        st = _fake_stats(arch, dataset, stimulus)
        if stimulus == "noise" and dataset == "fashion_mnist":
            st.counts = torch.tensor([0, 0, 0, 0, 0, 50, 0, 0, 0, 0])  # only class 5 gets noise
        return st

    box = activation_explorer(wna.get_profile("quick"), models=["paper_cnn"], datasets=["mnist", "fashion_mnist"], stats_fn=stats)
    ex = box.explorer
    ex["cls"].value = 7  # has noise on MNIST (7 samples in the fake statistics)
    assert ex["status"].value == ""
    ex["dataset"].value = "fashion_mnist"  # class 7 gets no noise there: go to the class that does
    assert ex["cls"].value == 5 and ex["status"].value == ""
    ex["cls"].value = 2
    assert "received no noise sample" in ex["status"].value and "Pullover" in ex["status"].value
    ex["dataset"].value = "mnist"  # class 2 has noise on MNIST: kept
    assert ex["cls"].value == 2 and ex["status"].value == ""
    ex["cls"].value = 0  # the fake MNIST noise gives class 0 no sample either
    assert "received no noise sample" in ex["status"].value


def test_explorer_loads_a_model_only_when_it_is_selected():
    from wna_helpers.book.widgets import activation_explorer

    asked = []

    def stats(arch, dataset, stimulus):
        asked.append((arch, dataset))
        return _fake_stats(arch, dataset, stimulus)

    box = activation_explorer(wna.get_profile("quick"), models=["paper_cnn", "mlp", "lenet"], datasets=["mnist", "fashion_mnist"],
                              stats_fn=stats)
    assert set(asked) == {("paper_cnn", "mnist")}
    box.explorer["model"].value = "mlp"
    assert set(asked) == {("paper_cnn", "mnist"), ("mlp", "mnist")}


def test_explorer_names_the_classes_of_a_logit_layer(monkeypatch):
    from wna_helpers.book import widgets

    def stats(arch, dataset, stimulus):
        st = _fake_stats("mlp", dataset, stimulus)
        st.means = {"fc1": torch.rand(10, 10, dtype=torch.float64)}  # ten units: the logits
        return st

    drawn = []
    monkeypatch.setattr(widgets, "plot_activation_pair",
                        lambda maps, title, **kw: drawn.append((title, kw)) or matplotlib.pyplot.figure())
    widgets.activation_explorer(wna.get_profile("quick"), models=["logreg"], datasets=["mnist"], stats_fn=stats,
                                logits_fn=lambda arch, dataset, layer: layer == "fc1")
    title, kw = drawn[-1]
    assert kw["unit_names"] == list(wna.class_names("mnist")) and kw["colorbar_label"] == "mean logit"
    assert "logits" in title
    drawn.clear()
    widgets.activation_explorer(wna.get_profile("quick"), models=["mlp"], datasets=["mnist"], stats_fn=stats,
                                logits_fn=lambda arch, dataset, layer: False)
    assert drawn[-1][1]["unit_names"] is None and "pre-ReLU" in drawn[-1][1]["colorbar_label"]


def test_explorer_shows_loading_progress_inside_the_widget():
    from wna_helpers.book.widgets import activation_explorer

    seen = []

    def stats(arch, dataset, stimulus):
        seen.append(box_status())
        return _fake_stats(arch, dataset, stimulus)

    holder = {}

    def box_status():
        return holder["box"].explorer["status"].value if "box" in holder else "building"

    holder["box"] = box = activation_explorer(wna.get_profile("quick"), models=["paper_cnn", "lenet"],
                                              datasets=["mnist"], stats_fn=stats)
    ex = box.explorer
    assert "progress" in ex and ex["progress"] in box.children
    ex["model"].value = "lenet"  # not loaded yet: the status says so while its statistics load
    assert "loading lenet on MNIST" in seen[-1] and ex["status"].value == ""
