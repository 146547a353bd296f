"""The glue of chapter 9: the summary of the microstimulation thresholds, the trojan family's positions,
the exact AUC p-value, and the trojan models' cache."""
import math

import pytest
import torch

import wna_helpers as wna
from wna_helpers.book import application_study as apps
from wna_helpers.book import trojan_study

W = torch.linspace(0, 1, 11, dtype=torch.float64)


def _micro(thresholds, base, shares):
    return {"weights": W, "base_threshold": torch.tensor(base, dtype=torch.float64),
            "thresholds": {("conv2", 5.0, "class"): torch.tensor(thresholds, dtype=torch.float64)},
            "shares": {("conv2", 5.0, "class"): torch.stack(shares)}}


def test_threshold_shifts_median_abolished_and_off_range():
    rising = torch.linspace(0, 1, 11, dtype=torch.float64)
    flat = torch.zeros(11, dtype=torch.float64)
    # five classes: shifts 0.1, 0.2, 0.3; one abolished (never reaches 0.5, its fit at a huge negative value);
    # one whose uninhibited threshold is off the range (noise alone goes to it): left out
    m = _micro([0.6, 0.7, 0.8, -1e16, 0.9], [0.5, 0.5, 0.5, 0.5, -5.0], [rising, rising, rising, flat, rising])
    out = apps.threshold_shifts(m, "conv2", 5.0, "class", n_boot=500)
    assert out["abolished"] == 1 and out["classes"] == 4
    assert out["median"] == pytest.approx(0.2)          # lower median of (0.1, 0.2, 0.3, inf)
    assert out["lo"] <= out["median"] <= out["hi"]
    # a fitted threshold far beyond the weights counts as abolished too; most abolished: the median is inf
    m = _micro([5.0, 1e9, 0.6], [0.5, 0.5, 0.5], [rising, rising, rising])
    out = apps.threshold_shifts(m, "conv2", 5.0, "class", n_boot=200)
    assert out["abolished"] == 2 and math.isinf(out["median"]) and out["median"] > 0


def test_threshold_shifts_do_not_count_a_left_out_class_as_abolished():
    """A class whose uninhibited threshold is off the range is left out of the row, abolished or not
    (chapter 9's first full run counted MNIST's class 8, which uniform noise alone calls, as abolished)."""
    rising = torch.linspace(0, 1, 11, dtype=torch.float64)
    flat = torch.zeros(11, dtype=torch.float64)
    m = _micro([0.6, 0.7, 1e9], [0.5, 0.5, 4.7], [rising, rising, flat])
    out = apps.threshold_shifts(m, "conv2", 5.0, "class", n_boot=200)
    assert out["classes"] == 2 and out["abolished"] == 0
    assert out["median"] == pytest.approx(0.1)
    m = _micro([1e9, 1e9], [0.5, 4.7], [flat, flat])  # one reported class abolished, the left-out one too
    out = apps.threshold_shifts(m, "conv2", 5.0, "class", n_boot=200)
    assert out["classes"] == 1 and out["abolished"] == 1 and math.isinf(out["median"])


def test_trigger_positions_start_with_the_papers_and_fit():
    prof = wna.get_profile("full")
    pos = trojan_study.trigger_positions("mnist", prof)
    assert pos[0] == trojan_study.PAPER_POSITION and len(pos) == prof.trojan_models
    assert all(0 <= r <= 22 and 0 <= c <= 22 for r, c in pos)
    assert pos == trojan_study.trigger_positions("mnist", prof)           # seeded
    assert pos != trojan_study.trigger_positions("fashion_mnist", prof)   # another stream per dataset


def test_detection_tests_holm_adjust_the_declared_scores_only():
    """Rows of three families with known scores: the declared scores' p are Holm-adjusted across the declared
    ones; an exploratory score keeps its raw p; an undefined score leaves its model out."""
    rows = []
    for f, base in (("clean", 0.0), ("trojaned", 10.0), ("relabelled", 5.0)):
        for i in range(5):
            r = {"family": f, "index": i, **{sc: base + i for sc in trojan_study.SCORES}}
            if f == "clean" and i == 0:
                r["uniform_target_share"] = float("nan")
            rows.append(r)
    t = trojan_study.detection_tests(rows)
    first = t["clean"]["gabor_target_share"]
    assert first["auc"] == 1.0 and first["p"] == pytest.approx(1 / 252) and first["paired_p"] == pytest.approx(1 / 32)
    assert first["holm_p"] == pytest.approx(len(trojan_study.DECLARED) / 252)
    share = t["clean"]["uniform_target_share"]
    assert (share["n_positive"], share["n_negative"]) == (5, 4) and share["p"] == pytest.approx(1 / 126)
    explore = t["clean"]["uniform_logit_window"]
    assert explore["p"] == pytest.approx(1 / 252) and explore["holm_p"] != explore["holm_p"]
    assert t["relabelled"]["gabor_target_share"]["auc"] == 1.0


def test_trojan_model_is_cached_and_poisoned(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_CACHE_DIR", str(tmp_path))
    prof = wna.get_profile("quick").updated(train_subset=600, trojan_models=2)
    with pytest.raises(ValueError, match="reference model"):
        trojan_study.trojan_model("mnist", prof, index=-1, trojaned=True)
    with pytest.raises(ValueError, match="index must be"):
        trojan_study.trojan_model("mnist", prof, index=2)
    model, meta = trojan_study.trojan_model("mnist", prof, index=1, device="cpu")
    assert meta["trojan"]["position"] == list(trojan_study.trigger_positions("mnist", prof)[1])
    assert 0 < meta["trojan"]["count"] <= 2000
    files = list((tmp_path / "models").glob("trojan-*.pt"))
    assert len(files) == 1
    again, meta2 = trojan_study.trojan_model("mnist", prof, index=1, device="cpu")   # loaded, not retrained
    assert meta2["weights_sha256"] == meta["weights_sha256"] and len(list((tmp_path / "models").glob("*.pt"))) == 1
    clean, cmeta = trojan_study.trojan_model("mnist", prof, index=1, trojaned=False, device="cpu")
    assert cmeta["trojan"] is None and cmeta["weights_sha256"] != meta["weights_sha256"]
    _, rmeta = trojan_study.trojan_model("mnist", prof, index=1, trojaned=False, relabelled=True, device="cpu")
    assert rmeta["trojan"]["relabelled"] and rmeta["trojan"]["position"] is None
    assert rmeta["trojan"]["count"] == meta["trojan"]["count"]
    assert len({meta["weights_sha256"], cmeta["weights_sha256"], rmeta["weights_sha256"]}) == 3
    with pytest.raises(ValueError, match="not both"):
        trojan_study.trojan_model("mnist", prof, index=1, trojaned=True, relabelled=True)
