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
