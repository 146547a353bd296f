"""Chapter 9's report functions (attacks, microstimulation, RNN, two-class design, trojans) on synthetic study
results with known answers."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.applications.attacks import BlendAttack, PerturbationAttack  # noqa: E402
from wna_helpers.book.application_study import ATTACK_KINDS, MICRO_LAYERS  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.plots.layout import PAGE_WIDTH  # noqa: E402
from wna_helpers.book.reports import applications as rep  # noqa: E402
from wna_helpers.book.reports import trojan as trj  # noqa: E402
from wna_helpers.book.trojan_study import DECLARED, SCORES  # noqa: E402
from wna_helpers.methods.ci import ClassificationImages  # noqa: E402
from wna_helpers.methods.two_class import TwoClassCI  # noqa: E402

# attack_l2 middle 4, attack_linf middle 0.2, 100 attack images, 2 trojan models
PROF = wna.get_profile("quick").updated(attack_images=100, trojan_models=2)
DIGITS = tuple(str(i) for i in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CH = Chapter(profile=PROF, models=["paper_cnn", "lenet"], cnns=[], datasets=["mnist"], device=torch.device("cpu"),
             classes={"mnist": DIGITS})
CH2 = Chapter(profile=PROF, models=["paper_cnn"], cnns=[], datasets=["mnist", "fashion_mnist"],
              device=torch.device("cpu"), classes={"mnist": DIGITS, "fashion_mnist": FASHION})
PAPER = {"targeted_attack": {"targets": [0, 1, 2], "shares": [0.9, 0.6, 0.3]},
         "trojan": {"clean_test_accuracy": 0.99, "triggered_8s_called_9": {"count": 7, "of": 8}},
         "rnn": {"test_accuracy": 0.96, "n": 100, "counts": [10, 0, 0, 0, 0, 0, 0, 0, 85, 5]},
         "signal_in_noise": {"pure_noise_called_5": 0.999}}


# ---------------------------------------------------------------------------------------------- attacks

def _perturbation(budgets: tuple[float, ...], mid: float, at_mid: float) -> PerturbationAttack:
    """Success 0 at every budget but ``mid``, where both targets reach ``at_mid``."""
    b = torch.tensor(budgets, dtype=torch.float64)
    success = torch.zeros(len(b), 2, dtype=torch.float64)
    success[budgets.index(mid)] = at_mid
    return PerturbationAttack(budgets=b, norm="l2", targets=torch.tensor([0, 2]), success=success,
                              actual_l2=success.clone(), actual_linf=success.clone(), n_images=torch.tensor([90, 90]))


def _attack(ci: float, random: float, queries: list[float], single: bool = False) -> dict[str, object]:
    l2 = {k: _perturbation(PROF.attack_l2, 4.0, {"ci": ci, "random": random}.get(k, 0.2)) for k in ATTACK_KINDS
          if not (single and k == "other")}
    linf = {k: _perturbation(PROF.attack_linf, 0.2, 0.05) for k in ATTACK_KINDS}
    blend = BlendAttack(alphas=torch.tensor([0.0, 0.3], dtype=torch.float64), targets=torch.tensor([0, 2]),
                        success=torch.tensor([[1.0, 0.8], [0.5, 0.3]], dtype=torch.float64),
                        n_images=torch.tensor([90, 90]))
    paper_blend = BlendAttack(alphas=torch.tensor([0.3], dtype=torch.float64), targets=torch.tensor([0, 2]),
                              success=torch.tensor([[1.0, 0.5]], dtype=torch.float64),
                              n_images=torch.tensor([100, 100]))
    return {"blend": blend, "blend_paper": paper_blend, "l2": l2, "linf": linf, "query_budget": 6.0,
            "queries": torch.tensor([500, 1000, 2000, 4000]),
            "query_success": torch.tensor(queries, dtype=torch.float64)}


ATTACKS = {("paper_cnn", "mnist"): _attack(0.5, 0.3, [0.1, 0.5, 0.95, 1.0]),
           ("lenet", "mnist"): _attack(0.35, 0.3, [0.0, 0.0, 0.0, 0.0])}


def test_paper_case_puts_a_dash_where_the_target_has_no_ci():
    prose, table = rep.paper_case(ATTACKS, PAPER)
    assert "MNIST, 100 images" in prose and "–: the class got no noise sample" in prose
    assert "| 0 | 90% | 100% |" in table and "| 1 | 60% | – |" in table and "| 2 | 30% | 50% |" in table
    assert "| mean | 60% | 75% |" in table


def test_blend_table_has_one_column_per_alpha():
    prose, table = rep.blend_table(ATTACKS, CH)
    assert "on 100 test images" in prose
    assert "| model | dataset | α = 0 | α = 0.3 |" in table and "| paper_cnn | MNIST | 90% | 40% |" in table


def test_success_at_reads_the_budget_and_mid_budget_the_middle():
    assert rep.mid_budget((1.0, 2.0, 3.0)) == 2.0 and rep.mid_budget((1.0, 2.0, 3.0, 4.0)) == 3.0
    assert rep.success_at(ATTACKS["paper_cnn", "mnist"], "l2", "ci", 4.0) == pytest.approx(0.5)
    assert rep.success_at(ATTACKS["paper_cnn", "mnist"], "l2", "ci", 3.0) == 0.0
    prose, table = rep.attack_table(ATTACKS, CH)
    assert prose.startswith("**Attack table**: success at L2 = 4 ") and "L∞ = 0.2" in prose
    # ci, logit, mean, random, shuffled, other; the CI's interval from 180 image-target trials; L∞ ci, random
    lo, hi = rep.interval_at(ATTACKS["paper_cnn", "mnist"], "l2", "ci", 4.0)
    assert f"| paper_cnn | MNIST | 2 | 50% | 20% | 20% | 30% | 20% | 20% | {lo:.0%} to {hi:.0%} | 5% | 5% |" in table
    single = {("paper_cnn", "mnist"): _attack(0.5, 0.3, [0.1, 0.2, 0.3, 0.4], single=True)}
    assert rep.success_at(single["paper_cnn", "mnist"], "l2", "other", 4.0) != 0.5   # NaN: no other class's CI


def test_wilson_interval_of_the_pooled_success_has_the_known_answer():
    """90 successes of 180 trials: the Wilson 95 % interval is 0.5 -+ 1.96 sqrt(0.25 / 180 + 1.96² / (4 · 180²))
    over 1 + 1.96² / 180."""
    r = _perturbation(PROF.attack_l2, 4.0, 0.5)
    i = PROF.attack_l2.index(4.0)
    assert float(r.pooled[i]) == 0.5
    z, n = 1.96, 180
    half = z * math.sqrt(0.25 / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert r.interval()[i].tolist() == pytest.approx([0.5 - half, 0.5 + half])


def test_attack_verdict_needs_the_ci_interval_above_every_control():
    assert rep.attack_wins(ATTACKS, CH) == [True, False]  # 0.5 (0.43-0.57) above 0.3; 0.35 (0.28-0.42) is not
    text = rep.attack_verdict(ATTACKS, CH)
    assert "beats all its controls of the same norm (a random direction, its own pixels shuffled, another class's " \
           "CI; the 95 % intervals do not overlap) in 1 of 2 model and dataset pairs" in text
    assert "The claim holds only in part." in text and "called its class 90% of the time" in text
    both = {k: _attack(0.9, 0.0, [0.1, 0.2, 0.3, 0.4]) for k in ATTACKS}
    assert "CIs are a query-only targeted attack here" in rep.attack_verdict(both, CH)
    assert rep.attack_wins({k: _attack(0.9, 0.0, [0.1] * 4, single=True) for k in ATTACKS}, CH) == [True, True]


def test_queries_to_reach_the_final_share():
    q = torch.tensor([500, 1000, 2000, 4000])
    assert rep.queries_to_reach(q, torch.tensor([0.1, 0.5, 0.95, 1.0])) == 2000  # 0.95 >= 0.9 * 1.0
    assert rep.queries_to_reach(q, torch.tensor([0.1, 0.5, 0.95, 1.0]), 0.5) == 1000
    assert rep.queries_to_reach(q, torch.tensor([0.3, 0.1, 0.0, 0.0])) is None


def test_query_summary_is_honest_when_the_final_success_is_zero():
    text = rep.query_summary(ATTACKS)
    assert text.startswith("CI attack success at a fixed L2 budget (the first at which the final CIs reach 50 %")
    assert ("- `paper_cnn`, MNIST: at L2 = 6, 10% with the CIs of 500 queries, 100% with 4,000; 90 % of the final "
            "success from 2,000 queries.") in text
    assert "- `lenet`, MNIST: at L2 = 6, no success at any query count (500 to 4,000 queries)." in text
    assert "final success from 500" not in text
    early = {("lenet", "mnist"): _attack(0.35, 0.3, [0.3, 0.1, 0.0, 0.0])}
    assert "no success with the CIs of 4,000 queries; the best is 30%, with 500." in rep.query_summary(early)


def test_attack_figures_and_the_query_figure_read_at_page_width():
    figs = rep.attack_curves(ATTACKS, CH)
    assert len(figs) == 2 and all(isinstance(f, Figure) for f in figs)
    fig = rep.query_figure(ATTACKS, CH)
    assert isinstance(fig, Figure) and fig.get_size_inches()[0] == pytest.approx(PAGE_WIDTH)
    title = fig._suptitle
    # the title fits on one line of the figure (about half an em per character)
    assert len(title.get_text()) * 0.5 * title.get_fontsize() / 72 < PAGE_WIDTH
    assert [ax.get_title() for ax in fig.axes] == ["MNIST"]
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == {"paper_cnn (L2 = 6)", "lenet (L2 = 6)"}


# ---------------------------------------------------------------------------------------------- microstimulation

def _micro(n: int = 10) -> dict[str, object]:
    """n classes, base threshold 0.3: conv1's class units shift it by +0.1 (random by 0), conv2's abolish every
    class (random: no shift), fc1 shifts it by +0.05 under both (every pair a tie)."""
    k, w = 10.0, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    rising = torch.tensor([[0.1, 0.6, 0.9]] * n, dtype=torch.float64)
    flat = torch.full((n, 3), 0.2, dtype=torch.float64)
    th = {("conv1", "class"): 0.4, ("conv1", "random"): 0.3, ("conv2", "class"): 0.5, ("conv2", "random"): 0.3,
          ("fc1", "class"): 0.35, ("fc1", "random"): 0.35}
    return {"ks": [k], "layers": list(MICRO_LAYERS), "weights": w, "base_shares": rising,
            "base_threshold": torch.full((n,), 0.3, dtype=torch.float64),
            "shares": {(l, k, kind): flat if (l, kind) == ("conv2", "class") else rising for l, kind in th},
            "thresholds": {(l, k, kind): torch.full((n,), t, dtype=torch.float64) for (l, kind), t in th.items()}}


MICRO = {"mnist": _micro()}


def test_format_shift_writes_infinities_and_signs():
    assert [rep.format_shift(x) for x in (math.inf, -math.inf, 0.1234, -0.05)] == ["∞", "−∞", "+0.123", "-0.050"]


def test_shift_table_has_the_median_interval_and_abolished_classes():
    prose, table = rep.shift_table(MICRO)
    assert prose.startswith("**Threshold shift**")
    assert ("| MNIST | conv1 | 10 | +0.100 [+0.100, +0.100] | 0 | +0.000 [+0.000, +0.000] | 0 | 10 | "
            "+0.100: 10 of 10 higher (p = 0.002) |") in table          # 2 / 2^10
    assert "| MNIST | conv2 | 10 | ∞ [∞, ∞] | 10 | +0.000 [+0.000, +0.000] | 0 | 10 | ∞: 10 of 10 higher" in table
    assert "| MNIST | fc1 | 10 | +0.050 [+0.050, +0.050] | 0 | +0.050 [+0.050, +0.050] | 0 | 10 | +0.000: 0 of 0 " \
           "higher (p = 1.000) |" in table                               # every pair a tie


def test_micro_verdict_orders_layers_and_tests_paired_classes_with_holm():
    text = rep.micro_verdict(MICRO)
    assert text.startswith("**Verdict.** MNIST at k = 10: layers by median shift, largest first: conv2, conv1, fc1;")
    # Holm over 3 layers: 2 / 1024 doubled (two tests of that size, then 1) -> 0.006
    assert ("in conv1 (10 of 10 classes, Holm p = 0.006); conv2 (10 of 10 classes, Holm p = 0.006).") in text
    assert text.endswith("The paper's order was conv2, fc1, conv1.")
    assert isinstance(rep.micro_figure(MICRO, CH), Figure)
    # three classes cannot reach the level: a sign test of 3 pairs has p >= 0.25
    assert "in no layer." in rep.micro_verdict({"mnist": _micro(3)})


# ---------------------------------------------------------------------------------------------- RNN, two classes

def _ci(counts: list[int]) -> ClassificationImages:
    c = torch.tensor(counts)
    z = torch.zeros(len(counts), 1, 2, 2, dtype=torch.float64)
    return ClassificationImages(images=z, counts=c, n_samples=int(c.sum()), sums=z, sumsq=z, stimulus={})


def test_rnn_comparison_names_the_top_classes():
    same = {"mnist": _ci([0, 0, 0, 0, 0, 0, 0, 0, 70, 30])}
    assert rep.rnn_comparison(same, PAPER, CH) == (
        "The paper's RNN sent 85% of the noise to 8 and 10% to 0; our GRU on MNIST sends 70% to 8 and 30% to 9. "
        "The same top class.")
    other = {"mnist": _ci([0, 100, 0, 0, 0, 0, 0, 0, 0, 0])}
    assert "sends 100% to 1" in rep.rnn_comparison(other, PAPER, CH)
    assert "Another top class" in rep.rnn_comparison(other, PAPER, CH)
    assert isinstance(rep.rnn_figure(same, {"mnist": 0.98}, PAPER, CH), Figure)


def _two_class(weight: float) -> TwoClassCI:
    """100 trials, 70 correct, 50 called A; the noise CIs differ at pixel (0, 0) by 0.5 (true A) and 0.25 (true B),
    clearly (p < 1e-8), and at pixel (0, 1) by 0.08 and 0.04 (p = 0.053 and 0.16: significant at a family-wise 0.5,
    not at 0.05); elsewhere not at all: 2 significant pixels at the FWER, and r = 1 between the two CIs."""
    counts = torch.tensor([[30, 10], [20, 40]])
    mean = torch.zeros(2, 2, 1, 2, 2, dtype=torch.float64)
    mean[0, 0, 0, 0, 0], mean[1, 0, 0, 0, 0] = 0.5, 0.25
    mean[0, 0, 0, 0, 1], mean[1, 0, 0, 0, 1] = 0.08, 0.04
    n = counts.double().view(2, 2, 1, 1, 1)
    sums, sumsq = mean * n, (mean ** 2 + 0.01) * n
    return TwoClassCI(weight=weight, classes=(5, 6), counts=counts, sums=sums, sumsq=sumsq, noise_sums=sums,
                      noise_sumsq=sumsq, n_samples=100, stimulus={})


def test_two_class_table_counts_significant_pixels_at_the_fwer():
    two = {"mnist": {0.0: _two_class(0.0), 0.1: _two_class(0.1)}}
    rows = rep.two_class_rows(two)
    assert [r["w"] for r in rows] == ["0", "0.1"] and rows[0]["sig"] == 2
    prose, table = rep.two_class_table(two, PAPER)
    assert "pure noise (w = 0) called 5 99.9% of the time" in prose
    assert "| MNIST | 0.1 | 70.0% | 50.0% | 2 | 1.00 |" in table
    figs = rep.two_class_figures(two, CH)
    assert len(figs) == 1 and isinstance(figs[0], Figure)
    assert "FWER 5 %" in " ".join(figs[0]._suptitle.get_text().split())


# ---------------------------------------------------------------------------------------------- trojans

def _tests(auc: dict[str, float], p: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per score: AUC (default 0.5) and p (default 1); Holm over the declared scores is p times their count here."""
    return {s: {"auc": auc.get(s, 0.5), "p": p.get(s, 1.0), "paired_p": 0.25, "n_positive": 2, "n_negative": 2,
                "holm_p": min(1.0, p.get(s, 1.0) * len(DECLARED)) if s in DECLARED else float("nan"),
                "holm_paired_p": 1.0 if s in DECLARED else float("nan")} for s in SCORES}


def _family(clean: tuple[dict, dict], relabelled: tuple[dict, dict] | None = None) -> dict[str, object]:
    rows = [{"index": i, "trojaned": f == "trojaned", "family": f, "position": (1, 21) if i == 0 else (5, 9),
             "clean_accuracy": 0.9 - 0.02 * (f == "trojaned"), "attack_success": 0.679 if f == "trojaned" else 0.006}
            for f in ("clean", "trojaned", "relabelled") for i in range(2)]
    maps = {"clean": {}, "trojaned": {}}
    for m in maps.values():
        for key in ("uniform_vs_reference", "gabor_vs_reference", "uniform_logit", "gabor_logit", "gradient"):
            m[key] = torch.linspace(-1, 1, 28 * 28).view(28, 28)
        m["uniform_significant"] = m["gabor_significant"] = torch.zeros(28, 28, dtype=torch.bool)
    pair_maps = {"uniform_z": torch.zeros(28, 28), "gabor_z": torch.ones(28, 28),
                 "uniform_significant": torch.zeros(28, 28, dtype=torch.bool),
                 "gabor_significant": torch.ones(28, 28, dtype=torch.bool)}
    pair = {kind: {"window": 0.5, "scan": 1.0, "in_window": 3, "outside": 1, "share_trojaned": 0.25,
                   "share_clean": 0.01} for kind in ("uniform", "gabor")}
    tests = {"clean": _tests(*clean), "relabelled": _tests(*(relabelled or clean))}
    return {"rows": rows, "tests": tests, "auc": {s: tests["clean"][s]["auc"] for s in SCORES},
            "auc_p": {s: tests["clean"][s]["p"] for s in SCORES}, "undefined": {s: 0 for s in SCORES},
            "maps": {**maps, "pair": pair_maps}, "pair": pair, "classes": (8, 9), "positions": [(1, 21), (5, 9)]}


# found: gabor_target_share at AUC 0.95, p 0.004 -> Holm 0.024 against both families
FOUND = _family(({"gabor_target_share": 0.95, "uniform_logit_scan": 1.0}, {"gabor_target_share": 0.004}))
# missed: the declared score passes against clean models, not against the relabelled ones (the prior shift alone)
PRIOR = _family(({"uniform_target_share": 1.0}, {"uniform_target_share": 0.004}),
                ({"uniform_target_share": 0.6}, {"uniform_target_share": 0.3}))
# missed: p too large after Holm on a declared score; an exploratory score does not count however small its p
MISSED = _family(({"uniform_vs_reference_window": 0.95, "uniform_logit_window": 1.0},
                  {"uniform_vs_reference_window": 0.01, "uniform_logit_window": 0.001}))


def test_finds_trigger_needs_a_declared_score_against_both_controls_after_holm():
    assert trj.finds_trigger(FOUND)
    assert not trj.finds_trigger(PRIOR)     # separates trojaned from clean only: more target labels, no trigger
    assert not trj.finds_trigger(MISSED)    # 0.01 x 6 = 0.06 after Holm; the logit score is exploratory
    assert not trj.finds_trigger(_family(({"gabor_target_share": 0.89}, {"gabor_target_share": 0.001})))


def test_detection_test_leaves_undefined_models_out_and_pairs_by_seed():
    from wna_helpers.applications.detection import detection_test
    nan = float("nan")
    out = detection_test([3.0, 4.0, nan], [1.0, 2.0, 0.5], paired=True)
    assert out["auc"] == 1.0 and (out["n_positive"], out["n_negative"]) == (2, 3)
    assert out["p"] == 1 / 10        # 2 of 5 defined models: C(5, 2) = 10 labellings, one reaches AUC 1
    assert out["pairs"] == 2 and out["paired_p"] == 0.25   # 2 pairs: 4 sign flips, one reaches the mean
    five = detection_test([1, 2, 3, 4, 5], [0, 0.5, 0.6, 0.7, 0.8], paired=True)
    assert five["p"] == 1 / 252 and five["paired_p"] == 1 / 32
    assert detection_test([nan], [1.0])["auc"] != detection_test([nan], [1.0])["auc"]   # NaN: no positive defined


def test_trojan_verdict_names_where_white_noise_finds_the_trigger():
    assert "finds the trigger on MNIST only." in trj.trojan_verdict({"mnist": FOUND, "fashion_mnist": MISSED})
    assert "finds the trigger on both datasets." in trj.trojan_verdict({"mnist": FOUND, "fashion_mnist": FOUND})
    text = trj.trojan_verdict({"mnist": MISSED, "fashion_mnist": PRIOR})
    assert "White noise does not reliably find the trigger." in text
    assert ("the best declared score, `uniform_vs_reference_window`, reaches AUC 0.95 against the clean models "
            "(Holm p = 0.060, Holm paired p = 1.000) and 0.95 against the relabelled ones (Holm p = 0.060)") in text
    assert ("The best exploratory white-noise score, `uniform_logit_window`, reaches 1.00 (p = 0.001, uncorrected, "
            "picked among 6).") in text


def test_trojan_tables():
    prose, table = trj.family_table({"fashion_mnist": FOUND}, PAPER, CH2)
    assert "clean 99.00%, attack 7 of 8 triggered 8s called 9" in prose
    assert "| Fashion-MNIST | Bag → Ankle boot | trojaned 0 | (1, 21) | 88.00% | 67.9% |" in table
    assert "| Fashion-MNIST | Bag → Ankle boot | clean 1 | (5, 9) | 90.00% | 0.6% |" in table
    assert "| Fashion-MNIST | Bag → Ankle boot | relabelled 1 | (5, 9) | 90.00% | 0.6% |" in table
    prose, table = trj.pair_table({"mnist": FOUND})
    assert "inside the 36-pixel trigger window and outside it (748 pixels)" in prose
    assert "| MNIST | gabor | 25.00% | 1.00% | 3 | 1 | 0.50 |" in table
    prose, table = trj.auc_table({"mnist": FOUND, "fashion_mnist": MISSED}, CH2)
    assert "(2 models per family and dataset;" in prose and "at least 1/6" in prose and "at least 1/4" in prose
    assert "| MNIST | **gabor_target_share** | 0.95 | 2 + 2 | 0.024 | 1.000 | 0.95 | 0.024 |" in table
    assert "| Fashion-MNIST | uniform_logit_window | 1.00 | 2 + 2 | 0.001 | 0.250 | 1.00 | 0.001 |" in table


def test_trojan_figures_one_per_dataset():
    fam = {"mnist": FOUND, "fashion_mnist": MISSED}
    for figs in (trj.model0_figures(fam, CH2), trj.pair_figures(fam, CH2)):
        assert len(figs) == 2 and all(isinstance(f, Figure) for f in figs)
    title = " ".join(trj.model0_figures(fam, CH2)[0]._suptitle.get_text().split())  # wrapped to the figure
    assert "(FWER 5 %) in the z rows, the trigger window (rows 1-6, columns 21-26)" in title
