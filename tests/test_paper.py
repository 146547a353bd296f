"""The paper's numbers (paper_numbers.json) and the gamma-curve experiment, with known answers."""
from __future__ import annotations

import doctest
import math
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

import wna_helpers as wna
from wna_helpers import paper
from wna_helpers.paper import (PAPER_WEIGHTS, colormap_roundtrip, compare, gamma_curves, minmax_scale, paper_numbers,
                               paper_templates)

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the numbers


def _walk(node, covered=False, path="$"):
    """Yield (path, value, covered) for every number, covered = some enclosing dict has source and what."""
    if isinstance(node, dict):
        here = covered or ("source" in node and "what" in node)
        for key, value in node.items():
            if key != "source":
                yield from _walk(value, here, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, covered, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node, covered


def _sources(node):
    if isinstance(node, dict):
        if "source" in node:
            yield node
        for key, value in node.items():
            if key != "source":
                yield from _sources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _sources(value)


def test_every_number_has_a_source_and_every_source_is_well_formed():
    p = paper_numbers()
    for key, section in p.items():
        assert isinstance(section, dict) and "source" in section and isinstance(section["what"], str), key
    uncovered = [path for path, _, covered in _walk(p) if not covered]
    assert not uncovered
    entries = list(_sources(p))
    assert len(entries) > 30
    for e in entries:
        src = e["source"]
        assert isinstance(e["what"], str) and e["what"]
        assert isinstance(src["notebooks"], list) and all(isinstance(n, str) for n in src["notebooks"])
        assert isinstance(src["section"], str) and src["section"]
        assert src["cells"] is None or isinstance(src["cells"], str)
    # the records the book cites one by one carry their own source
    for rec in (p["white_noise"]["histograms"] + p["templates"]["accuracy"] + p["feed_back"]["results"]
                + list(p["gamma_curves"]["curves"].values()) + p["gabor_noise"]["prediction_shares"]):
        assert "source" in rec and "what" in rec


def test_top_level_keys():
    assert list(paper_numbers()) == ["meta", "class_names", "data", "training", "white_noise", "gabor_noise",
                                     "templates", "feed_back", "gamma_curves", "targeted_attack", "trojan",
                                     "microstimulation", "rnn", "signal_in_noise", "sta", "exploratory", "quirks"]


def test_gamma_curves_in_the_json():
    g = paper_numbers()["gamma_curves"]
    assert tuple(g["weights"]) == PAPER_WEIGHTS and len(PAPER_WEIGHTS) == 11
    assert paper.paper_weights().tolist() == list(PAPER_WEIGHTS)
    assert set(g["curves"]) == {"noise_ci", "images_ci", "noise_mean", "images_mean"}
    for name, c in g["curves"].items():
        assert len(c["values"]) == 11 and c["values"][0] == 0.100, name
        assert all(0 <= v <= 1 for v in c["values"])
        assert c["base"] in ("noise", "images") and c["pattern"] in ("ci", "mean_image")
    assert g["curves"]["noise_ci"]["values"][-1] == g["curves"]["images_ci"]["values"][-1] == 0.9
    assert g["curves"]["images_ci"]["values"][8] == 0.214 and g["curves"]["noise_mean"]["values"][5] == 0.842
    half = g["images_half_ci_per_class"]
    assert half["classes"] == list(range(10)) and len(half["shares"]) == 10
    assert abs(sum(half["shares"]) / 10 - half["mean"]) < 0.001 and half["weight"] == 0.5
    assert g["n_stimuli"] == 10_000


def test_attack_trojan_rnn_and_counts():
    p = paper_numbers()
    attack = p["targeted_attack"]
    rates = dict(zip(attack["targets"], attack["shares"]))
    assert rates == {0: 0.92, 1: 0.68, 2: 1.0, 3: 0.98, 4: 0.99, 5: 0.50, 6: 0.75, 7: 1.0, 8: 0.66}
    assert attack["source_class"] == 9 and attack["n_images"] == 100 and attack["image_weight"] == 0.3
    assert attack["source"]["cells"] == "62"
    adv = p["white_noise"]["adverserial_mnist_counts"]
    assert adv["counts"] == [23707, 163622, 627403, 311850, 67331, 143501, 2936, 7869, 8647992, 3789]
    assert sum(adv["counts"]) == adv["n"] == 10**7
    rnn = p["rnn"]
    assert sum(rnn["counts"]) == 10**7 and rnn["counts"][8] == 8622748 and rnn["test_accuracy"] == 0.9636
    trojan = p["trojan"]
    assert trojan["triggered_8s_called_9"] == {"count": 974, "of": 974}
    assert (trojan["clean_test_accuracy"], trojan["test_accuracy_with_trigger_on_8s"]) == (0.9904, 0.8944)
    assert trojan["detection"] is None
    sig = p["signal_in_noise"]
    assert sig["test_accuracy"] == 0.9838 and sig["pure_noise_called_5"] == 0.999
    assert sig["weights"] == [0.3, 0.2, 0.1, 0.0]


def test_histograms_templates_recipe_and_training():
    p = paper_numbers()
    hist = p["white_noise"]["histograms"]
    assert [(h["dataset"], h["top"]["class"], h["top"]["share"]) for h in hist] == [
        ("mnist", 8, 0.624), ("mnist", 8, 0.915), ("mnist", 8, 0.865), ("fashion_mnist", 8, 0.953),
        ("fashion_mnist", 6, 0.499)]
    # PAPER.md: every histogram holds 10^7 images (RF_MNIST's two runs and the Colab run included)
    assert [h["n"] for h in hist] == [10**7] * 5
    assert hist[3]["next"][1] == {"class": 2, "name": "Pullover", "count": 13249}
    for rec in hist:  # names agree with the package's class names
        for c in [rec["top"], *rec["next"]]:
            assert c["name"] == wna.class_names(rec["dataset"])[c["class"]]
    for rec in p["gabor_noise"]["prediction_shares"]:
        for c in rec["classes"]:
            assert c["name"] == wna.class_names(rec["dataset"])[c["class"]]
    assert p["gabor_noise"]["pca_variance_explained"]["share"] == 0.96
    assert p["gabor_noise"]["dictionary"]["n_kernels"] == 960 and p["gabor_noise"]["pca_components"] == 250
    acc = {r["dataset"]: (r["accuracy"], r["split"]) for r in p["templates"]["accuracy"]}
    assert acc == {"mnist": (0.356, "test"), "fashion_mnist": (0.412, "train"), "cifar10": (0.217, None)}
    recipe = p["templates"]["recipe"]
    assert recipe["template_image"] == "rms" and recipe["score"] == "dot product"
    assert [s.split()[0] for s in recipe["template_steps"]] == ["sqrt(mean(noise^2))", "min-max", "L2-normalise"]
    assert [(r["dataset"], r["correct"], r["of"]) for r in p["feed_back"]["results"]] == [
        ("mnist", 9, 10), ("fashion_mnist", 7, 10)]
    assert p["microstimulation"]["scale"] == {"conv1": 0.1, "conv2": 1.0, "fc1": 0.01}
    assert p["microstimulation"]["k"] == list(range(11))
    t = p["training"]
    assert (t["optimizer"], t["lr"], t["batch_size"], t["epochs"]) == ("Adam", 1e-3, 256, 15)
    assert p["class_names"]["fashion_mnist"] == list(wna.class_names("fashion_mnist"))


def test_paper_numbers_is_a_private_copy_and_package_data():
    a = paper_numbers()
    a["gamma_curves"]["curves"]["noise_ci"]["values"][0] = 99.0
    a["rnn"].clear()
    b = paper_numbers()
    assert b["gamma_curves"]["curves"]["noise_ci"]["values"][0] == 0.1 and b["rnn"]["hidden"] == 100
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.json" in cfg["tool"]["setuptools"]["package-data"]["wna_helpers.paper"]
    assert (ROOT / "wna_helpers" / "paper" / "paper_numbers.json").is_file()


def test_cite():
    p = paper_numbers()
    assert paper.cite(p["targeted_attack"]) == "Colab Notebooks/classification_images_adverserial.ipynb, cell 62"
    assert paper.cite(p["feed_back"]).startswith("PAPER.md, section")
    with pytest.raises(ValueError, match="source"):
        paper.cite({"what": "x"})


def test_docstring_examples_run():
    from wna_helpers.paper import gamma, numbers, recipes, verdicts
    for module in (numbers, recipes, gamma, verdicts):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# ---------------------------------------------------------------- minmax_scale and templates


def test_minmax_scale_range_constant_and_nan():
    x = torch.randn(5, 1, 4, 4) * 3 + 2
    y = minmax_scale(x)
    flat = y.reshape(5, -1)
    assert torch.allclose(flat.amin(1), torch.zeros(5)) and torch.allclose(flat.amax(1), torch.ones(5))
    assert y.shape == x.shape and y.dtype == x.dtype
    x[1] = 7.0
    x[2, 0, 1, 1] = float("nan")
    y = minmax_scale(x)
    assert torch.equal(y[1], torch.zeros_like(y[1]))
    assert torch.isnan(y[2]).all() and not torch.isnan(y[[0, 1, 3, 4]]).any()
    u8 = minmax_scale(torch.tensor([[0, 255, 51]], dtype=torch.uint8))
    assert u8.dtype == torch.float32 and torch.allclose(u8, torch.tensor([[0.0, 1.0, 0.2]]))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        minmax_scale(torch.rand(5))
    with pytest.raises(ValueError, match="inf"):
        minmax_scale(torch.tensor([[0.0, math.inf]]))


def test_paper_templates_and_accuracy():
    ci = torch.rand(4, 1, 3, 3)
    ci[2] = float("nan")
    t = paper_templates(ci)
    assert t.dtype == torch.float64 and torch.isnan(t[2]).all()
    assert torch.allclose(t[[0, 1, 3]].reshape(3, -1).norm(dim=1), torch.ones(3, dtype=torch.float64))
    assert (t[[0, 1, 3]] >= 0).all()
    manual = minmax_scale(ci[0:1].double()).flatten()
    assert torch.allclose(t[0].flatten(), manual / manual.norm())
    rms = torch.rand(4, 1, 3, 3)
    assert torch.allclose(paper_templates(ci, rms_images=rms), paper_templates(rms))
    with pytest.raises(ValueError, match="rms_images"):
        paper_templates(ci, rms_images=torch.rand(4, 9))
    # the recipe as a classifier (analysis.template_classify, no centring): a known answer
    eye = torch.eye(4).view(4, 1, 2, 2)
    images = eye.repeat(5, 1, 1, 1) * 0.8 + 0.05
    templates = paper_templates(eye * 3 + 1)  # min-max undoes any offset and scale
    assert torch.allclose(templates, eye.double())
    assert torch.equal(wna.template_classify(images, templates), torch.arange(4).repeat(5))
    const = paper_templates(torch.full((2, 1, 2, 2), 0.5))
    assert torch.equal(const, torch.zeros_like(const))  # a constant CI: an all-zero template
    with pytest.raises(ValueError, match="ci_images"):
        paper_templates(torch.rand(4))


# ---------------------------------------------------------------- gamma_curves


K, SIDE = 4, 2  # 4 classes on 2x2 images; class c's pattern lights pixel c


class Counting(nn.Module):
    """Linear model whose class-c logit reads pixel c (the one-hot pattern P_c); counts forwards."""

    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.lin = nn.Linear(K, K, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(K))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.lin(self.flat(x))


def _patterns():
    return torch.eye(K).view(K, 1, SIDE, SIDE)


def _expected(base: torch.Tensor, weights) -> torch.Tensor:
    """Closed form: (1-w) a + w e_c is called c iff w + (1-w) a_c > (1-w) a_j for every j != c."""
    a = base.reshape(len(base), K).double()
    out = torch.empty(len(weights), K, dtype=torch.float64)
    for i, w in enumerate(weights):
        for c in range(K):
            logits = (1 - w) * a
            logits[:, c] += w
            out[i, c] = (logits.argmax(1) == c).double().mean()
    return out


def test_gamma_curves_known_answer_on_noise():
    base = torch.rand(500, 1, SIDE, SIDE)
    model = Counting()
    out = gamma_curves(model, _patterns(), base)
    assert out["share"].dtype == torch.float64 and out["share"].shape == (11, K)
    assert out["weights"].tolist() == list(PAPER_WEIGHTS) and out["has_pattern"].all()
    assert torch.allclose(out["share"], _expected(base, PAPER_WEIGHTS))
    assert torch.equal(out["share"][-1], torch.ones(K, dtype=torch.float64))  # every pattern alone is its class
    freq = torch.bincount(model(base).argmax(1), minlength=K).double() / len(base)
    assert torch.allclose(out["share"][0], freq)  # w = 0: the share of the base the model calls c
    assert torch.allclose(out["mean"], out["share"].mean(1)) and out["mean"][0] == pytest.approx(1 / K)
    assert (out["mean"].diff() >= 0).all()
    assert "share_other" not in out


def test_gamma_curves_labelled_images_nan_pattern_and_batches():
    base = torch.rand(300, 1, SIDE, SIDE)
    labels = base.reshape(300, K).argmax(1)  # the model classifies the base perfectly
    pats = _patterns()
    pats[3] = float("nan")
    weights = [0.0, 0.25, 0.5, 1.0]
    out = gamma_curves(Counting(), pats, base, weights, base_labels=labels)
    # a class without a pattern: NaN at w > 0; at w = 0 its share of the base inputs is measured all the same
    assert torch.isnan(out["share"][1:, 3]).all() and torch.isnan(out["share_other"][1:, 3]).all()
    assert out["has_pattern"].tolist() == [True, True, True, False]
    exp = _expected(base, weights)
    freq = torch.bincount(labels, minlength=K).double() / len(base)
    assert out["share"][0, 3] == pytest.approx(float(freq[3])) and out["share_other"][0, 3] == 0.0
    assert torch.allclose(out["share"][:, :3], exp[:, :3])
    assert torch.allclose(out["mean_with_pattern"], exp[:, :3].mean(1))
    # the paper's score: the mean over all K classes, the class without a pattern a miss at w > 0
    assert out["mean"][0] == pytest.approx(1.0 / K)  # every base input is called some class
    assert torch.allclose(out["mean"][1:], exp[1:, :3].sum(1) / K)
    assert torch.allclose(out["share"][0, :3], freq[:3])  # images already of class c count as hits
    assert torch.equal(out["share_other"][0, :3], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out["share_other"][-1, :3], torch.ones(3, dtype=torch.float64))
    assert out["n_other"].tolist() == (len(base) - torch.bincount(labels, minlength=K)).tolist()
    # share_other by hand at w = 0.5
    a = base.reshape(300, K)
    for c in range(3):
        logits = 0.5 * a
        logits[:, c] += 0.5
        keep = labels != c
        assert out["share_other"][2, c] == pytest.approx(float((logits.argmax(1)[keep] == c).double().mean()))
    assert torch.allclose(out["mean_other"], out["share_other"][:, :3].mean(1))
    # batch-size invariance
    small = gamma_curves(Counting(), pats, base, weights, base_labels=labels, batch_size=3)
    big = gamma_curves(Counting(), pats, base, weights, base_labels=labels, batch_size=1000)
    for key in ("share", "share_other", "mean", "mean_with_pattern", "mean_other"):
        assert torch.equal(small[key].nan_to_num(-1), big[key].nan_to_num(-1)), key
    assert torch.equal(small["share"].nan_to_num(-1), out["share"].nan_to_num(-1))


def test_gamma_curves_class_with_only_its_own_images():
    base = torch.zeros(6, 1, SIDE, SIDE)
    base.view(6, K)[:, 0] = 1.0  # every base image is a 0
    labels = torch.zeros(6, dtype=torch.int64)
    out = gamma_curves(Counting(), _patterns(), base, [0.0, 1.0], base_labels=labels)
    assert out["n_other"].tolist() == [0, 6, 6, 6]
    assert torch.isnan(out["share_other"][:, 0]).all() and out["share"][0, 0] == 1.0
    assert out["mean_other"].tolist() == [0.0, 1.0]


def test_gamma_curves_leaves_model_state_as_found():
    model = Counting()
    model.train()
    model.flat.eval()  # mixed flags come back as they were
    model.lin.weight.grad = torch.full((K, K), 3.0)
    gamma_curves(model, _patterns(), torch.rand(20, 1, SIDE, SIDE), [0.0, 0.5, 1.0])
    assert model.training and model.lin.training and not model.flat.training
    assert torch.equal(model.lin.weight.grad, torch.full((K, K), 3.0))
    assert torch.equal(model.lin.weight, torch.eye(K))
    model.eval()
    gamma_curves(model, _patterns(), torch.rand(20, 1, SIDE, SIDE), [0.5])
    assert not model.training


def test_gamma_curves_bad_inputs_raise_before_work():
    model = Counting()
    base = torch.rand(10, 1, SIDE, SIDE)
    bad = [
        dict(patterns=torch.rand(K, 1, 3, 3), match="patterns' shape"),
        dict(base=torch.rand(10, SIDE * SIDE), match="patterns' shape"),
        dict(base=base[:0], match="empty"),
        dict(weights=[0.0, 1.5], match=r"\[0, 1\]"),
        dict(weights=[-0.1], match=r"\[0, 1\]"),
        dict(weights=[float("nan")], match=r"\[0, 1\]"),
        dict(weights=[], match="non-empty"),
        dict(weights=0.5, match="sequence"),
        dict(batch_size=0, match="batch_size"),
        dict(base_labels=torch.zeros(9, dtype=torch.int64), match="labels"),
        dict(base_labels=torch.zeros(10), match="integer"),
        dict(base_labels=torch.full((10,), K), match=r"\[0, 4\)"),
        dict(patterns=torch.full((K, 1, SIDE, SIDE), float("nan")), match="every pattern is NaN"),
        dict(patterns=torch.full((K, 1, SIDE, SIDE), math.inf), match="inf"),
        dict(base=torch.full((10, 1, SIDE, SIDE), float("nan")), match="finite"),
    ]
    for case in bad:
        match = case.pop("match")
        args = dict(patterns=_patterns(), base=base, weights=PAPER_WEIGHTS) | case
        with pytest.raises(ValueError, match=match):
            gamma_curves(model, args.pop("patterns"), args.pop("base"), args.pop("weights"), **args)
        assert model.calls == 0, case
    with pytest.raises(ValueError, match="one pattern per class"):  # 3 patterns for a 4-class model
        gamma_curves(model, _patterns()[:3], base)
    assert model.calls == 1 and model.training  # only the one-input probe ran


def test_gamma_curves_on_the_paper_cnn_runs():
    model = wna.build_model("paper_cnn", seed=0)
    pats = minmax_scale(torch.rand(10, 1, 28, 28))
    out = gamma_curves(model, pats, torch.rand(40, 1, 28, 28), [0.0, 0.3, 1.0], batch_size=16)
    assert out["share"].shape == (3, 10) and ((out["share"] >= 0) & (out["share"] <= 1)).all()
    assert out["share"][0].sum() == pytest.approx(1.0)  # w = 0: every base input is called something


# ---------------------------------------------------------------- compare


def test_compare():
    r = compare(0.371, 0.356, tolerance=0.05)
    assert r["paper"] == 0.356 and r["ours"] == 0.371 and r["diff"] == pytest.approx(0.015) and r["reproduced"]
    assert not compare(0.5, 0.356, tolerance=0.05)["reproduced"]
    assert compare(0.15, 0.1, tolerance=0.05)["reproduced"]  # the boundary counts, floating noise aside
    curve = paper_numbers()["gamma_curves"]["curves"]["noise_ci"]["values"]
    r = compare(torch.tensor(curve) + 0.01, curve, tolerance=0.02)
    assert r["reproduced"] and len(r["diff"]) == 11 and r["max_abs_diff"] == pytest.approx(0.01, abs=1e-6)
    assert compare([0.1, 0.5], [0.1, 0.2], tolerance=0.05)["diff"] == [0.0, 0.3]
    nan = compare(float("nan"), 0.3, tolerance=1.0)
    assert not nan["reproduced"] and math.isnan(nan["max_abs_diff"])
    with pytest.raises(ValueError, match="tolerance"):
        compare(0.1, 0.1, tolerance=-0.01)
    with pytest.raises(ValueError, match="same"):
        compare([0.1, 0.2], [0.1], tolerance=0.1)
    with pytest.raises(ValueError, match="finite"):
        compare(0.1, float("nan"), tolerance=0.1)


def _entries(x):
    if isinstance(x, dict):
        yield x
        for v in x.values():
            yield from _entries(v)
    elif isinstance(x, list):
        for v in x:
            yield from _entries(v)


def test_every_histogram_adds_up_to_its_n():
    """Counts sum to the stated n, counts and shares agree, and every white-noise histogram states its n."""
    p = paper_numbers()
    checked = 0
    for e in _entries(p):
        if isinstance(e.get("counts"), list) and isinstance(e.get("n"), int):
            assert sum(e["counts"]) == e["n"], e.get("what")
            checked += 1
    assert checked >= 3   # the second RF_MNIST run, the adversarial notebook's model, the RNN
    for h in p["white_noise"]["histograms"]:
        assert isinstance(h["n"], int) and h["n"] in (10**6, 10**7), h["what"]
        top = h["top"]
        if "count" in top:
            assert round(top["count"] / h["n"], 3) == top["share"]
        if "counts" in h:
            assert round(max(h["counts"]) / h["n"], 3) == top["share"] and h["counts"].index(max(h["counts"])) == top["class"]
    fashion = [h for h in p["white_noise"]["histograms"] if h["source"]["notebooks"] == ["FashionMNIST.ipynb"]][0]
    assert {"Pullover": 13249, "Sandal": 11, "Coat": 11} == {x["name"]: x["count"] for x in fashion["next"] if "count" in x}


# ---------------------------------------------------------------- the paper's recipes, as its code ran them


def test_gamma_mean_counts_a_class_without_a_pattern_as_a_miss():
    """The paper's score is the mean over all K classes: on noise at w = 0 it is exactly 1/K, whatever the
    patterns; a class without a pattern cannot be pulled towards and counts 0 at w > 0."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4))
    patterns = torch.eye(4).view(4, 1, 2, 2)
    patterns[2] = float("nan")
    out = gamma_curves(model, patterns, torch.rand(500, 1, 2, 2), [0.0, 0.5, 1.0])
    assert out["mean"][0].item() == pytest.approx(0.25, abs=1e-12)
    assert not torch.isnan(out["share"][0]).any() and torch.isnan(out["share"][1:, 2]).all()
    has = out["has_pattern"]
    assert torch.allclose(out["mean"][1:], torch.nan_to_num(out["share"][1:]).sum(1) / 4)
    assert torch.allclose(out["mean_with_pattern"], out["share"][:, has].mean(1))


def test_colormap_roundtrip_reads_the_png_as_the_paper_did():
    import matplotlib
    x = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    rgba = torch.tensor(matplotlib.colormaps["viridis"](x.numpy()), dtype=torch.float64)
    assert torch.allclose(colormap_roundtrip(x), rgba.mean(-1))                       # the alpha channel counts
    assert torch.allclose(colormap_roundtrip(x, channels="rgb"), rgba[..., :3].mean(-1))
    red = colormap_roundtrip(x, channels="red")
    assert torch.allclose(red, rgba[..., 0]) and not bool((red.diff() > 0).all())    # not monotone in viridis
    with pytest.raises(ValueError, match="channels"):
        colormap_roundtrip(x, channels="green")


def test_weighted_cis_are_the_top_output_weighted_means():
    from wna_helpers.paper import weighted_classification_images
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(60, 1, 2, 2)
    ci = weighted_classification_images(model, 60, noise=wna.Images(x), input_shape=(1, 2, 2), progress=False)
    with torch.no_grad():
        p, pred = torch.softmax(model(x).double(), 1).max(1)
    for c in range(3):
        sel = pred == c
        if sel.any():
            want = (p[sel, None] * x[sel].reshape(-1, 4).double()).sum(0) / p[sel].sum()
            assert torch.allclose(ci.images[c].flatten(), want, atol=1e-12)
        else:
            assert torch.isnan(ci.images[c]).all()
    assert int(ci.counts.sum()) == 60 and ci.stimulus["weighting"] == "top softmax output"
    # one constant output for every sample: equal weights cancel, the weighted CI is the plain mean
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    plain = wna.classification_images(model, 4096, noise="uniform", input_shape=(1, 2, 2), progress=False)
    heavy = weighted_classification_images(model, 4096, noise="uniform", input_shape=(1, 2, 2), progress=False)
    assert torch.equal(plain.counts, heavy.counts) and plain.counts.tolist() == [4096, 0, 0]
    assert torch.allclose(plain.images, heavy.images, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("center", [False, True])
def test_template_classify_is_the_argmax_of_cosine_or_correlation(center):
    """The classifier skips normalising each image (it cannot change the argmax): its answers equal the cosine's
    (or, centred, the correlation's) computed in full, batched or not, a zero image included."""
    g = torch.Generator().manual_seed(5)
    images = torch.rand(3000, 1, 6, 6, generator=g) * torch.rand(3000, 1, 1, 1, generator=g) * 4
    images[7] = 0.0
    templates = torch.randn(7, 1, 6, 6, generator=g, dtype=torch.float64)
    y, t = images.reshape(3000, -1).double(), templates.reshape(7, -1)
    if center:
        y, t = y - y.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    full = ((y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)) @ (t / t.norm(dim=1, keepdim=True)).T).argmax(1)
    got = wna.template_classify(images, templates, center=center)
    assert torch.equal(got, full) and int(got[7]) == 0
    assert torch.equal(wna.template_classify(images, templates, center=center, batch_size=128), got)
