"""The book's cached studies: a content-keyed results cache, order independence, and the
measures and experiments the chapters report."""
from __future__ import annotations

import math

import pytest
import torch

import wna_helpers as wna
from wna_helpers.book import biasing, measures, overview, results_cache, studies
from wna_helpers.methods.activations import ActivationStatistics
from wna_helpers.book.environment import environment_info

from conftest import needs_data

TINY = wna.PROFILES["quick"].updated(name="tiny", train_subset=600, batch_size=50,
                                     epochs={"mnist": 1, "fashion_mnist": 1}, n_noise={"default": 3000},
                                     n_noise_gpu={"default": 3000}, n_sta={"default": 2000}, n_real=200)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder and model memo for one test."""
    monkeypatch.setenv("WNA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(studies, "_MODELS", {})
    return tmp_path


def _count(monkeypatch, module, name):
    """Count the calls of ``module.name`` (still calling it)."""
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


# ---------------------------------------------------------------- the results cache

def test_cache_serves_recomputes_on_code_change_and_on_refresh(tmp_path, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.tensor([len(calls)])}
    a = results_cache.cached("k", {"p": 1}, compute, root=tmp_path)
    b = results_cache.cached("k", {"p": 1}, compute, root=tmp_path)
    assert len(calls) == 1 and torch.equal(a["x"], b["x"])
    results_cache.cached("k", {"p": 2}, compute, root=tmp_path)  # other parameters: another entry
    assert len(calls) == 2
    monkeypatch.setattr(results_cache, "code_digest", lambda: "a-changed-helper")
    results_cache.cached("k", {"p": 1}, compute, root=tmp_path)  # a changed helper recomputes
    assert len(calls) == 3
    results_cache.cached("k", {"p": 1}, compute, root=tmp_path, refresh=True)
    assert len(calls) == 4
    assert not list(tmp_path.glob(".*tmp"))  # no half-written file left


def test_refresh_recomputes_every_entry_that_depends_on_it(tmp_path):
    calls = {"base": 0, "mid": 0, "top": 0}

    def base():
        calls["base"] += 1
        return calls["base"]

    def mid():
        calls["mid"] += 1
        return results_cache.cached("base", {}, base, root=tmp_path) * 10

    def top():
        calls["top"] += 1
        return results_cache.cached("mid", {}, mid, root=tmp_path) + 1

    assert results_cache.cached("top", {}, top, root=tmp_path) == 11
    assert results_cache.cached("top", {}, top, root=tmp_path) == 11 and calls == {"base": 1, "mid": 1, "top": 1}
    results_cache.cached("base", {}, base, root=tmp_path, refresh=True)  # two levels below "top"
    assert results_cache.cached("top", {}, top, root=tmp_path) == 21
    assert calls == {"base": 2, "mid": 2, "top": 2}
    assert results_cache.cached("top", {}, top, root=tmp_path) == 21 and calls["top"] == 2


def test_unreadable_entry_is_recomputed(tmp_path):
    results_cache.cached("k", {}, lambda: 1, root=tmp_path)
    [path] = tmp_path.glob("k-*.pt")
    path.write_bytes(b"truncated")
    with pytest.warns(results_cache.UnsafeCacheWarning, match=path.name):   # said, not silent
        assert results_cache.cached("k", {}, lambda: 2, root=tmp_path) == 2


# ---------------------------------------------------------------- studies

@needs_data
def test_a_study_gives_the_same_result_whichever_is_called_first(cache, monkeypatch):
    """study_ci before or after the convergence series, STA and activations before or after the
    STA pass: the same numbers, because each result always comes from the same pass."""
    first = studies.study_ci(studies.subject("logreg", "mnist", TINY))
    side = studies.study_ci(studies.subject("logreg", "mnist", TINY), n_samples=studies.side_samples("logreg", TINY))
    act_first = studies.study_activations(studies.subject("paper_cnn", "mnist", TINY))
    sta_first = studies.study_sta(studies.subject("paper_cnn", "mnist", TINY), "conv2")
    for p in cache.rglob("*.pt"):  # drop the results (keep the trained models)
        if "results" in p.parts:
            p.unlink()
    conv = studies.study_ci_convergence(studies.subject("logreg", "mnist", TINY))
    sc = studies.study_sta_convergence(studies.subject("paper_cnn", "mnist", TINY))
    assert torch.equal(first.counts, conv.counts[-1]) and torch.equal(first.sums, conv.sums[-1])
    assert torch.equal(side.sums, conv.snapshot(side.n_samples).sums)
    assert torch.equal(sta_first.pooled.nan_to_num(), sc["conv2"].snapshot(2000).pooled.nan_to_num())
    later = studies.study_activations(studies.subject("paper_cnn", "mnist", TINY))
    assert torch.equal(act_first.counts, later.counts)
    # and they match the engine's direct answers
    model = studies.subject("logreg", "mnist", TINY).model
    direct = wna.classification_images(model, 3000, noise=TINY.noise, seed=TINY.seed, progress=False)
    assert torch.equal(direct.counts, first.counts) and torch.allclose(direct.sums, first.sums, atol=1e-9)
    cnn = studies.subject("paper_cnn", "mnist", TINY).model
    ref = wna.activation_statistics(cnn, ["conv1", "conv2"], 2000, noise=TINY.noise, seed=TINY.seed, progress=False)
    assert torch.equal(ref.counts, later.counts)


@needs_data
def test_second_call_is_served_from_the_cache(cache, monkeypatch):
    studies.study_ci(studies.subject("logreg", "mnist", TINY))
    studies.study_sta(studies.subject("paper_cnn", "mnist", TINY), "conv1", stimulus="real")
    runs = _count(monkeypatch, studies, "ci_convergence")
    stas = _count(monkeypatch, studies, "spike_triggered_average")
    studies.study_ci(studies.subject("logreg", "mnist", TINY))
    studies.study_ci(studies.subject("logreg", "mnist", TINY), n_samples=1000)  # a size of the series: no new run
    studies.study_sta(studies.subject("paper_cnn", "mnist", TINY), "conv1", stimulus="real")
    assert runs == [] and stas == []


@needs_data
def test_only_the_profiles_noise_goes_through_the_convergence_series(cache, monkeypatch):
    """Another noise at a size of the series is one direct run of that size, not a whole series."""
    runs = _count(monkeypatch, studies, "ci_convergence")
    direct = _count(monkeypatch, studies, "classification_images")
    n = studies.side_samples("logreg", TINY)
    assert n in studies.convergence_sizes("logreg", TINY)
    assert TINY.noise == "uniform"  # the book's main noise
    other = studies.study_ci(studies.subject("logreg", "mnist", TINY), noise="gaussian", n_samples=n)
    assert runs == [] and direct == [1] and other.n_samples == n and other.stimulus["kind"] == "gaussian"
    main_gaussian = TINY.updated(noise="gaussian")  # the book's main noise is a setting
    again = studies.study_ci(studies.subject("logreg", "mnist", main_gaussian), n_samples=n)
    assert runs == [1] and direct == [1] and again.stimulus["kind"] == "gaussian"
    assert torch.equal(again.counts, other.counts) and torch.allclose(again.sums, other.sums, atol=1e-9)


@needs_data
def test_a_changed_helper_recomputes_instead_of_serving_old_results(cache, monkeypatch):
    studies.study_ci(studies.subject("logreg", "mnist", TINY))
    runs = _count(monkeypatch, studies, "ci_convergence")
    monkeypatch.setattr(results_cache, "code_digest", lambda: "sta.py was edited")
    studies.study_ci(studies.subject("logreg", "mnist", TINY))
    assert runs == [1]


@needs_data
def test_refresh_reaches_the_entries_that_depend_on_the_refreshed_one(cache, monkeypatch):
    kw = dict(gammas=[0.0, 0.5], n_inputs=20)
    biasing.study_bias(studies.subject("logreg", "mnist", TINY), **kw)
    curves = _count(monkeypatch, biasing, "bias_curve")
    biasing.study_bias(studies.subject("logreg", "mnist", TINY), **kw)
    assert curves == []  # served
    ci = studies.study_ci(studies.subject("logreg", "mnist", TINY), refresh=True)  # the CIs the biasing used
    biasing.study_bias(studies.subject("logreg", "mnist", TINY), **kw)
    with_ci = int((ci.counts > 0).sum())
    # recomputed: per input set (test images, noise) one curve per class with a CI for the CI and each of its two
    # controls (random, another class's CI), the same classes for all three
    assert with_ci > 1 and len(curves) == 2 * 3 * with_ci


@needs_data
def test_same_name_other_settings_share_neither_model_nor_result(cache):
    other = TINY.updated(train_subset=700)  # the same name "tiny"
    assert other.name == TINY.name
    assert wna.checkpoint_path("logreg", "mnist", TINY) != wna.checkpoint_path("logreg", "mnist", other)
    s1, s2 = studies.subject("logreg", "mnist", TINY), studies.subject("logreg", "mnist", other)
    m1, meta1, m2, meta2 = s1.model, s1.meta, s2.model, s2.meta
    assert m1 is not m2 and meta1["weights_sha256"] != meta2["weights_sha256"] and meta2["train_size"] == 700
    more_noise = TINY.updated(n_noise={"default": 4000})  # same training: same model, other results
    assert studies.subject("logreg", "mnist", more_noise).model is m1
    assert studies.study_ci(studies.subject("logreg", "mnist", TINY)).n_samples == 3000
    assert studies.study_ci(studies.subject("logreg", "mnist", more_noise)).n_samples == 4000
    a = studies.study_ci(studies.subject("logreg", "mnist", TINY))
    b = studies.study_ci(studies.subject("logreg", "mnist", other))
    assert not torch.equal(a.sums, b.sums)
    shift = TINY.updated(side_fraction=0.5)  # any setting is part of the key
    assert results_cache.cache_path("ci", studies.subject("logreg", "mnist", TINY).params()) != \
        results_cache.cache_path("ci", studies.subject("logreg", "mnist", shift).params())



def _linear_subject(seed: int) -> studies.Subject:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    return studies.Subject("logreg", "mnist", TINY, model, {"weights_sha256": wna.state_digest(model)})


def test_a_study_parameter_cannot_replace_the_subjects_own_in_the_key(monkeypatch):
    s = _linear_subject(0)
    for name in studies.SUBJECT_KEYS:
        with pytest.raises(ValueError, match=f"'{name}'"):
            s.params(**{name: [0.1, 0.5]})
    assert s.params(signal_weights=[0.1])["weights"] == s.meta["weights_sha256"]
    # the gamma curves and the two-class design name their weights otherwise: two networks of one architecture
    # and dataset (the paper-recipe seeds) get two entries, not one shared by whichever ran first
    from wna_helpers.book import application_study, paper_study
    keys = []
    monkeypatch.setattr(paper_study, "cached", lambda kind, params, compute, **kw: keys.append((kind, params)))
    monkeypatch.setattr(application_study, "cached", lambda kind, params, compute, **kw: keys.append((kind, params)))
    for seed in (0, 1):
        paper_study.study_gamma_curve(_linear_subject(seed), curve="noise_mean")
        application_study.study_two_class(_linear_subject(seed))
    paths = [results_cache.cache_path(kind, params) for kind, params in keys]
    assert len(set(paths)) == 4
    assert {p["weights"] for _, p in keys} == {_linear_subject(0).meta["weights_sha256"],
                                              _linear_subject(1).meta["weights_sha256"]}


def test_the_code_digest_covers_every_module_of_the_package():
    from pathlib import Path
    from wna_helpers.engine import fingerprint
    root = Path(wna.__file__).resolve().parent
    files = set(fingerprint.code_files())
    assert set(root.rglob("*.py")) <= files          # every subpackage, not only the engine's own folder
    for rel in ("config.py", "book/studies.py", "methods/ci.py", "book/reports/trojan.py", "paper/paper_numbers.json"):
        assert root / rel in files, rel

@needs_data
def test_study_bias_and_mixing(cache):
    bias = biasing.study_bias(studies.subject("logreg", "mnist", TINY), gammas=[0.0, 0.2, 2.0], n_inputs=50)
    model = studies.subject("logreg", "mnist", TINY).model
    test = wna.load_dataset("mnist", "test", limit=50)
    base = torch.bincount(wna.feed_back(model, test.images), minlength=10).double() / 50
    has_ci = studies.study_ci(studies.subject("logreg", "mnist", TINY)).counts > 0
    assert int(has_ci.sum()) >= 2  # under uniform noise some classes may get no CI, hence no curve
    for key in ("test", "noise"):
        share = bias[key]
        assert share.shape == (3, 10)
        assert torch.equal(share.isnan().any(0), ~has_ci)  # NaN exactly for the classes without a CI
        assert share[0][has_ci].sum() <= 1 + 1e-12  # gamma = 0: the class shares
        assert (share[-1][has_ci] >= share[0][has_ci] - 1e-12).all()  # pushing toward c raises the share of c
        assert share[-1][has_ci].mean() > 0.9
    assert torch.allclose(bias["test"][0][has_ci], base[has_ci])  # gamma = 0 on test images: the model's answers
    mixed = studies.study_ci_mixing(studies.subject("logreg", "mnist", TINY), gammas=[0.5], n_samples=1000)
    assert list(mixed) == [0.5] and mixed[0.5].stimulus["gamma"] == 0.5 and mixed[0.5].stimulus["kind"] == "mixture"
    rep = overview.template_report(studies.subject("logreg", "mnist", TINY))
    assert 0 <= rep["ci_accuracy"] <= 1 and rep["chance"] == pytest.approx(0.1)


def test_profile_settings_are_typed_and_unknown_ones_listed():
    p = wna.PROFILES["quick"]
    assert studies.side_samples("paper_cnn", p) == round(0.25 * p.noise_samples("paper_cnn"))
    q = p.updated(side_fraction=0.5, mix_gammas=(0.3,), bias_inputs=7)
    assert studies.side_samples("mlp", q) == round(0.5 * q.noise_samples("mlp"))
    assert studies.mix_gammas(q) == [0.3] and biasing.bias_inputs("mlp", q) == 7
    assert studies.side_samples("mlp", q.updated(side_fraction=1e-9)) == 1000
    with pytest.raises(TypeError, match=r"unknown profile setting\(s\) \['side_fractoin'\].*'side_fraction'"):
        p.updated(side_fractoin=0.5)
    with pytest.raises(TypeError, match="unknown profile setting"):
        wna.Profile(name="x", train_subset=None, epochs={}, batch_size=1, lr=1.0, seed=0, n_noise={},
                    n_noise_gpu={}, n_sta={}, n_real=1, extra={"a": 1})


# ---------------------------------------------------------------- measures and experiments

def test_bias_directions():
    ci = torch.randn(4, 1, 3, 3, dtype=torch.float64)
    ci[2] = float("nan")
    d = biasing.bias_directions(ci)
    ok = [0, 1, 3]
    assert torch.isnan(d[2]).all()
    rms = d[ok].reshape(3, -1).square().mean(1).sqrt()
    assert torch.allclose(rms, torch.ones(3, dtype=torch.float64))
    centred = ci[ok].reshape(3, -1) - ci[ok].reshape(3, -1).mean(0)
    for i, c in enumerate(ok):  # same direction as the mean-centred CI
        assert wna.pearson(d[c], centred[i]) == pytest.approx(1.0)
    d2 = biasing.bias_directions(ci, center=False, rms=2.0)
    assert wna.pearson(d2[0], ci[0]) == pytest.approx(1.0)
    lone = torch.full_like(ci, float("nan"))
    lone[1] = ci[1]  # all noise went to one class (Fashion-MNIST CNNs): no centring, CI kept
    d3 = biasing.bias_directions(lone)
    assert wna.pearson(d3[1], ci[1]) == pytest.approx(1.0) and torch.isnan(d3[0]).all()


def test_control_directions_match_the_ci_classes_and_size():
    dirs = torch.full((4, 1, 3, 3), float("nan"), dtype=torch.float64)
    dirs[0], dirs[2] = 1.0, -1.0                       # classes 0 and 2 have a CI direction
    ctl = biasing.control_directions(dirs, seed=3)
    rand, other = ctl["random"], ctl["other"]
    assert torch.isnan(rand[[1, 3]]).all() and torch.isfinite(rand[[0, 2]]).all()
    assert torch.allclose(rand[[0, 2]].square().mean((1, 2, 3)), torch.ones(2, dtype=torch.float64))   # RMS 1
    assert torch.equal(other[0], dirs[2]) and torch.equal(other[2], dirs[0]) and torch.isnan(other[[1, 3]]).all()
    assert torch.equal(biasing.control_directions(dirs, seed=3)["random"].nan_to_num(), rand.nan_to_num())
    one = torch.full_like(dirs, float("nan"))
    one[1] = 1.0
    assert torch.isnan(biasing.control_directions(one, seed=0)["other"]).all()   # no other class to take


def test_activation_similarity_and_specificity():
    g = torch.Generator().manual_seed(0)
    real_means = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    noise_means = real_means + 0.01 * torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64)
    noise_means[3] = float("nan")
    real = ActivationStatistics({"c": real_means}, torch.tensor([5, 5, 5, 5]), "label", 20, {})
    noise = ActivationStatistics({"c": noise_means}, torch.tensor([7, 2, 1, 0]), "prediction", 10, {})
    r = measures.activation_similarity(real, noise, "c")
    assert torch.allclose(r[:3], torch.ones(3, dtype=torch.float64), atol=1e-3) and torch.isnan(r[3])
    spec = measures.activation_specificity(real, noise, "c", min_count=1)
    # centred on different class sets (three noise classes, four real ones): close to, not exactly, one
    assert spec["same"] > 0.9 and spec["matched"] == 1.0 and abs(spec["other"]) < 0.9 and spec["classes"] == 3
    assert spec["p"] == pytest.approx(1 / 6)                        # 3 classes: only the identity of 3! reaches it
    assert measures.activation_specificity(real, noise, "c")["classes"] == 0   # none has 50 noise samples


def test_noise_bias_class_correlation_first_reaching_feedback():
    ci = wna.ClassificationImages(images=torch.zeros(3, 1, 2, 2), counts=torch.tensor([0, 90, 10]), n_samples=100,
                                  sums=torch.zeros(3, 1, 2, 2), sumsq=torch.zeros(3, 1, 2, 2), stimulus={})
    b = measures.noise_bias(ci, ["a", "b", "c"])
    assert b["top_class"] == "b" and b["top_share"] == 0.9 and b["empty_classes"] == ["a"]
    assert b["classes_reached"] == 2 and b["entropy_bits"] == pytest.approx(0.469, abs=1e-3)
    assert b["max_entropy_bits"] == pytest.approx(math.log2(3))
    x = torch.randn(3, 5, dtype=torch.float64)
    r = measures.class_correlation(x, 2 * x + 1, torch.tensor([100, 10, 60]))
    assert r[0] == pytest.approx(1.0) and torch.isnan(r[1]) and r[2] == pytest.approx(1.0)
    r2 = measures.class_correlation(x, -x, (torch.tensor([100, 100, 100]), torch.tensor([100, 0, 100])))
    assert r2[0] == pytest.approx(-1.0) and torch.isnan(r2[1])
    assert measures.first_reaching([1, 2, 3], [0.1, float("nan"), 0.95], 0.9) == 3.0
    assert math.isnan(measures.first_reaching([1, 2], [0.1, 0.2], 0.9))
    assert measures.stable_from([10, 1, 5], [0.95, 0.2, 0.91], 0.9) == 5.0
    fb = measures.feedback_matrix(torch.tensor([0, 2, -1]))
    assert fb.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


def test_environment_info():
    info = environment_info()
    assert info["torch"] == torch.__version__.split("+")[0] or info["torch"].startswith(torch.__version__[:4])
    assert "device" in info and "python" in info


def test_chapter_setup_computes_chance_and_entropy():
    from wna_helpers.book import chapter
    ch = chapter.setup("quick", show=False)
    assert ch.num_classes == 10 and ch.chance == pytest.approx(0.1) and ch.max_entropy == pytest.approx(math.log2(10))
    assert ch.models == wna.model_names() and set(ch.cnns) <= set(ch.models) and "quick" in ch.header()


def test_a_study_takes_a_resolved_profile_only():
    """The chapter resolves the profile once; a name given to a study is refused, not resolved again."""
    with pytest.raises(TypeError, match="resolved Profile"):
        studies.subject("logreg", "mnist", "quick")


def test_chapter_show_displays_markdown_figures_and_lists_in_order(monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import IPython.display
    from wna_helpers.book import chapter

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda x: shown.append(x))
    fig = plt.figure()
    chapter.show("a", [fig, None, ("b",)])
    assert [type(x).__name__ for x in shown] == ["Markdown", "Figure", "Markdown"]
    assert shown[0].data == "a" and shown[2].data == "b" and not plt.fignum_exists(fig.number)
    with pytest.raises(TypeError, match="strings"):
        chapter.show(3)


def test_prepare_trains_every_model_once_and_then_loads(tmp_path, monkeypatch):
    """make models: a plan of every model the book trains, each job run once; a second run finds them cached."""
    from wna_helpers.book import prepare

    calls = []
    monkeypatch.setattr(prepare, "get_trained_model", lambda a, d, p, progress: calls.append(("model", a, d)))
    monkeypatch.setattr(prepare, "training_snapshots", lambda a, d, p, progress: calls.append(("snapshots", a, d)))
    monkeypatch.setattr(prepare, "trojan_model", lambda d, p, index, trojaned, progress, relabelled=False:
                        calls.append(("trojan", d, index, trojaned, relabelled)))
    monkeypatch.setattr(prepare, "noise_kind", lambda kind, d: calls.append(("gabor", d)))
    monkeypatch.setattr(prepare, "paper_recipe_model", lambda d, p, seed, progress: calls.append(("paper", d, seed)))
    plan = prepare.jobs(TINY)
    n_models = len(wna.model_names()) * 2
    n_trojan = (3 * TINY.trojan_models + 1) * 2   # clean, trojaned, relabelled, and the reference
    n_paper = TINY.paper_seeds * 2
    assert len(plan) == n_models + 2 + 2 + n_trojan + n_paper
    assert all(j.seconds > 0 for j in plan)
    # paper_cnn's snapshots come before its checkpoint (they write it)
    labels = [j.label for j in plan]
    assert labels.index("paper_cnn on mnist: training snapshots (chapter 8)") < labels.index("paper_cnn on mnist")
    assert plan[labels.index("paper_cnn on mnist")].after == "paper_cnn on mnist: training snapshots (chapter 8)"
    import io
    prepare.prepare(TINY, stream=io.StringIO(), workers=1)
    assert len(calls) == len(plan) and len(set(calls)) == len(calls)


@needs_data
def test_prepare_knows_which_paper_recipe_and_trojan_models_are_cached(cache):
    """The overall estimate counts only what is still to train: the paper-recipe networks and the trojan study's
    models are looked up where their functions write them."""
    from wna_helpers.book import prepare, trojan_study
    seed = wna.paper_recipe_seeds(TINY)[0]
    paper = f"paper_cnn on mnist trained the paper's way, seed {seed} (chapter 8)"
    relabelled, trojaned = "trojan study on mnist: relabelled model 0", "trojan study on mnist: trojaned model 0"
    plan = {j.label: j for j in prepare.jobs(TINY)}
    assert not (plan[paper].cached or plan[relabelled].cached or plan[trojaned].cached)
    wna.paper_recipe_model("mnist", TINY, seed)
    trojan_study.trojan_model("mnist", TINY, index=0, trojaned=False, relabelled=True)
    plan = {j.label: j for j in prepare.jobs(TINY)}
    assert plan[paper].cached and plan[relabelled].cached and not plan[trojaned].cached
    assert wna.paper_recipe_path("mnist", TINY, seed) == next((cache / "models").glob("paper_recipe-*.pt"))
