"""Chapter 4's report functions on synthetic study results with known answers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.reports import confusion as rep  # noqa: E402

K = 3
CH = Chapter(profile=wna.get_profile("quick"), models=["good", "single"], cnns=[], datasets=["mnist"],
             device=torch.device("cpu"), classes={"mnist": ("zero", "one", "two")})


def _report(feedback: list[int], ci_acc: float, used: int, null_p: float = 0.5) -> dict[str, object]:
    fb = torch.tensor(feedback)
    return {"feedback": fb, "feedback_diagonal": int((fb == torch.arange(K)).sum()), "templates_used": used,
            "feedback_null": {"rate": torch.full((K,), 0.25), "expected": 0.75, "p": null_p},
            "n_samples": 5000, "ci_accuracy": ci_acc, "mean_accuracy": 0.8, "chance": 1 / K,
            "ci_confusion": torch.eye(K, dtype=torch.int64), "mean_confusion": torch.eye(K, dtype=torch.int64),
            "n_test": 30}


REPORTS = {("good", "mnist"): _report([0, 1, 0], 0.9, 3, 0.01), ("single", "mnist"): _report([-1, 1, -1], 1 / K, 1)}


def test_feedback_summary_counts_the_diagonal_over_models_against_the_null_cis():
    table, prose = rep.feedback_summary(REPORTS, CH)
    assert "| good | 2 / 3 | 0.8 | 0.020 |" in table and "| single | 1 / 1 | 0.8 | 0.500 |" in table  # Holm: 2 x 0.01
    assert prose.startswith("Fed back, 3 of 4 CIs on MNIST")
    assert "1 of 2 model–dataset pairs give back more CIs than their null CIs predict" in prose


def test_feedback_null_of_a_model_that_answers_one_class_to_every_scaled_image():
    """A model that calls every image class 1: the null CIs of class 1 always come back (rate (P + 1) / (P + 2)),
    the others never (1 / (P + 2)); a diagonal of 1 is then what the null expects (p near 1), 2 is impossible
    for it (p tiny)."""
    from wna_helpers.book.overview import feedback_null
    from wna_helpers.book.measures import poisson_binomial_tail

    class One(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), K)
            out[:, 1] = 1.0
            return out
    p_ = 8
    ci = wna.ClassificationImages(images=torch.rand(K, 1, 2, 2, dtype=torch.float64), counts=torch.tensor([5, 5, 0]),
                                  n_samples=10, sums=torch.zeros(K, 1, 2, 2, dtype=torch.float64),
                                  sumsq=torch.zeros(K, 1, 2, 2, dtype=torch.float64), stimulus={},
                                  null_images=torch.rand(p_, K, 1, 2, 2, dtype=torch.float64))
    out = feedback_null(One(), ci, 1)
    assert out["rate"][:2].tolist() == [1 / (p_ + 2), (p_ + 1) / (p_ + 2)] and out["rate"][2] != out["rate"][2]
    assert out["expected"] == 1.0 and out["p"] == 1 - (1 - 1 / 10) * (1 - 9 / 10)
    assert feedback_null(One(), ci, 2)["p"] == pytest.approx(0.09)
    assert poisson_binomial_tail([0.5] * 10, 10) == 1 / 1024 and poisson_binomial_tail([0.3], 0) == 1.0


def test_template_verdict_names_the_best_and_the_single_ci_pairs():
    rows = rep.template_rows(REPORTS, CH)
    assert [r["model"] for r in rows] == ["good", "single"] and rows[0]["n"] == 5000
    text = rep.template_verdict(rows, CH)
    assert "the best CI templates are `good`'s with 90.0%" in text
    assert "1 of 2 models' CIs reach more than 2 times chance (good)" in text   # 1/3 is not above 2/3
    assert "1 model–dataset pairs (`single` on MNIST) have a single CI" in text


def test_template_verdict_without_single_ci_pairs_says_nothing_of_them():
    reports = {k: {**v, "templates_used": 3} for k, v in REPORTS.items()}
    assert "single CI" not in rep.template_verdict(rep.template_rows(reports, CH), CH)


def _bias(ci: list[float], rand: list[float], other: list[float], single: bool = False) -> dict[str, object]:
    """Shares at gammas 0, 0.2, 0.4, 0.8 rising linearly from 0.1 to the given last values, per class."""
    g = [0.0, 0.2, 0.4, 0.8]
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)[:, None]

    def curves(last: list[float]) -> torch.Tensor:
        return 0.1 + (torch.tensor(last, dtype=torch.float64)[None] - 0.1) * t
    out = {"gammas": g, "n_inputs": 10, "single": single}
    for kind in ("test", "noise"):
        for suffix, last in (("", ci), ("_random", rand), ("_other", other)):
            share = curves(last)
            out[f"{kind}{suffix}"] = share
            out[f"{kind}{suffix}_mean"] = share.nanmean(1)
    return out


def test_bias_rows_test_the_ci_against_both_controls_class_by_class():
    ch = Chapter(profile=CH.profile, models=["good", "weak", "single"], cnns=[], datasets=["mnist"],
                 device=CH.device, classes={"mnist": tuple("abcdefghij")})
    nan = float("nan")
    bias = {("good", "mnist"): _bias([0.9] * 10, [0.1] * 10, [0.2] * 10),
            ("weak", "mnist"): _bias([0.3] * 5 + [0.1] * 5, [0.2] * 10, [0.15] * 10),
            ("single", "mnist"): _bias([0.9] + [nan] * 9, [0.1] * 10, [nan] * 10, single=True)}
    rows = {r["model"]: r for r in rep.bias_rows(bias, ch)}
    good, weak, single = rows["good"], rows["weak"], rows["single"]
    assert good["t"] == 0.4 and good["classes"] == 10 and good["tmax"] == 0.9 and good["wins"] == 10
    assert good["p"] == 2 * (2 / 1024)                    # exact sign test, 10 of 10; Holm over the two tested pairs
    assert weak["wins"] == 5 and weak["p"] == 1.0 and not weak["more"]   # tested, in the Holm family, not a finding
    assert single["single"] and single["p"] != single["p"] and single["classes"] == 1
    table, prose = rep.bias_summary(list(rows.values()))
    assert "| good | MNIST | 10 | 0.40 | 90% | 10% | 20% | 10 of 10 | 0.004 |" in table
    assert "| single | MNIST | 1 (one: not a class direction) |" in table
    assert prose.startswith("Every input is clipped to [0, 1] after the direction is added. In 1 of 2 model–dataset "
                            "pairs with two or more CIs")
    assert "class by class in 1 of them" in prose
    assert "`single` on MNIST have a CI for one class only" in prose
    figs = rep.bias_figures(bias, ch)
    assert len(figs) == 1 and isinstance(figs[0], Figure)


def test_figures_have_one_per_dataset_with_titles():
    for figs in (rep.feedback_figures(REPORTS, CH), rep.template_figures(REPORTS, CH)):
        assert len(figs) == len(CH.datasets)
        assert all(isinstance(f, Figure) and f._suptitle is not None for f in figs)
    table, fig = rep.template_table(rep.template_rows(REPORTS, CH), CH)
    assert "| good | MNIST | 5,000 | 90.0% | 80.0% | 33.3% | 3 |" in table and isinstance(fig, Figure)
