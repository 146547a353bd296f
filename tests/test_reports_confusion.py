"""Chapter 4's report functions on synthetic study results with known answers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.reports import confusion as rep  # noqa: E402

K = 3
CH = Chapter(profile=wna.get_profile("quick"), models=["good", "single"], cnns=[], datasets=["mnist"],
             device=torch.device("cpu"), classes={"mnist": ("zero", "one", "two")})


def _report(feedback: list[int], ci_acc: float, used: int) -> dict[str, object]:
    fb = torch.tensor(feedback)
    return {"feedback": fb, "feedback_diagonal": int((fb == torch.arange(K)).sum()), "templates_used": used,
            "n_samples": 5000, "ci_accuracy": ci_acc, "mean_accuracy": 0.8, "chance": 1 / K,
            "ci_confusion": torch.eye(K, dtype=torch.int64), "mean_confusion": torch.eye(K, dtype=torch.int64),
            "n_test": 30}


REPORTS = {("good", "mnist"): _report([0, 1, 0], 0.9, 3), ("single", "mnist"): _report([-1, 1, -1], 1 / K, 1)}


def test_feedback_summary_counts_the_diagonal_over_models():
    table, prose = rep.feedback_summary(REPORTS, CH)
    assert "| good | 2 / 3 |" in table and "| single | 1 / 1 |" in table
    assert prose.startswith("Fed back, 3 of 4 CIs on MNIST")


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


def test_bias_rows_find_the_gamma_that_moves_half():
    g = [0.0, 0.2, 0.4, 0.8]
    curve = torch.tensor([0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    never = torch.tensor([0.1, 0.1, 0.2, 0.3], dtype=torch.float64)
    share = torch.full((4, K), 0.5, dtype=torch.float64)
    share[:, 2] = float("nan")  # a class without a CI
    bias = {("good", "mnist"): {"gammas": g, "test_mean": curve, "noise_mean": curve, "test": share, "n_inputs": 10},
            ("single", "mnist"): {"gammas": g, "test_mean": never, "noise_mean": curve, "test": share,
                                  "n_inputs": 10}}
    rows = rep.bias_rows(bias, CH)
    assert rows[0]["t"] == 0.4 and rows[0]["classes"] == 2 and rows[0]["tmax"] == 0.9
    assert rows[1]["t"] != rows[1]["t"]  # never reaches half: NaN
    table, prose = rep.bias_summary(rows)
    assert "| good | MNIST | 2 | 0.40 |" in table
    assert prose.startswith("In 1 of 2 model–dataset pairs") and "the smallest γ that does so is 0.40" in prose
    figs = rep.bias_figures(bias, CH)
    assert len(figs) == 1 and isinstance(figs[0], Figure)


def test_figures_have_one_per_dataset_with_titles():
    for figs in (rep.feedback_figures(REPORTS, CH), rep.template_figures(REPORTS, CH)):
        assert len(figs) == len(CH.datasets)
        assert all(isinstance(f, Figure) and f._suptitle is not None for f in figs)
    table, fig = rep.template_table(rep.template_rows(REPORTS, CH), CH)
    assert "| good | MNIST | 5,000 | 90.0% | 80.0% | 33.3% | 3 |" in table and isinstance(fig, Figure)
