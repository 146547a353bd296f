"""Chapter 8's report functions on synthetic study results with known answers."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.criteria import PATTERN_GAP  # noqa: E402
from wna_helpers.book.reports import paper as rep  # noqa: E402

NAMES = ("zero", "one", "two")
CH = Chapter(profile=wna.get_profile("quick"), models=["paper_cnn"], cnns=["paper_cnn"],
             datasets=["mnist", "fashion_mnist"], device=torch.device("cpu"),
             classes={"mnist": NAMES, "fashion_mnist": NAMES})
MNIST_ONLY = Chapter(profile=CH.profile, models=CH.models, cnns=CH.cnns, datasets=["mnist"], device=CH.device,
                     classes={"mnist": NAMES})


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- side by side

def _row(section: str, quantity: str, verdict: str, why: str = "", source: str = "a.ipynb") -> dict[str, str]:
    return {"section": section, "quantity": quantity, "paper": "60%", "ours": "58% (50% to 70%; 3 of 3)",
            "book": "91%", "verdict": verdict, "why": why, "source": source}


ROWS = [_row("white noise", "MNIST top class", "reproduced"),
        _row("white noise", "Fashion top class", "not reproduced", "another network", "b.ipynb"),
        _row("templates", "MNIST templates", "partly", "above twice chance"),
        _row("templates", "Fashion templates", "reproduced")]


def test_rule_text_states_the_rule_with_the_profiles_networks_and_the_codes_constants():
    text = rep.rule_text(wna.get_profile("full"))
    assert text.startswith("**The rule, fixed before the numbers.** Each paper number is measured on 3 `paper_cnn` "
                           "networks per dataset trained the paper's way (Adam at a constant learning rate of 0.001, "
                           "batch 256, 15 epochs;")
    assert "reaching 0.5 within 0.2 of the weight" in text and "With fewer than 2 networks" in text
    assert "on 2 `paper_cnn`" in rep.rule_text(wna.get_profile("quick"))


def test_section_tables_give_title_table_and_reasons_per_section():
    out = rep.section_tables(ROWS)
    assert len(out) == 6 and out[0] == "**White noise**" and out[3] == "**Templates**"
    assert "| MNIST top class | 60% | 58% (50% to 70%; 3 of 3) | 91% | reproduced |" in out[1]
    assert out[1].startswith("| quantity | paper | paper-recipe networks: median (range; defined of) | "
                             "the book's paper_cnn | verdict |")
    assert out[2] == ("Why not (fully) reproduced:\n\n- *Fashion top class* (not reproduced): another network.\n\n"
                      "Sources: `a.ipynb`; `b.ipynb`.")
    assert out[5] == ("Why not (fully) reproduced:\n\n- *MNIST templates* (partly): above twice chance.\n\n"
                      "Sources: `a.ipynb`.")


def test_section_without_reasons_lists_only_its_sources():
    assert rep.section_tables([_row("gabor noise", "q", "reproduced")])[2] == "Sources: `a.ipynb`."


def test_verdict_summary_counts_and_names_the_rows_not_reproduced():
    assert rep.verdict_summary(ROWS) == (
        "Of 4 comparisons, 2 are reproduced, 1 partly and 1 not.\n"
        "- **White noise**: 1 of 2 reproduced; not (or only partly): Fashion top class.\n"
        "- **Templates**: 1 of 2 reproduced; not (or only partly): MNIST templates.")
    assert rep.verdict_summary(ROWS[:1]).endswith("- **White noise**: 1 of 1 reproduced.")


def test_verdict_summary_sets_context_apart_and_counts_the_untestable():
    rows = ROWS + [_row("white noise", "wider network", "context", "another network"),
                   _row("templates", "CIFAR", "not testable", "only 1 of 3 networks give this quantity a value")]
    text = rep.verdict_summary(rows)
    assert text.startswith("Of 5 comparisons, 2 are reproduced, 1 partly and 1 not; 1 are not testable "
                           "(1 more row only context).")
    assert "- **White noise**: 1 of 2 reproduced; not (or only partly): Fashion top class." in text
    assert "- **Templates**: 1 of 3 reproduced; not (or only partly): MNIST templates; CIFAR." in text


# ---------------------------------------------------------------- gamma curves

W = [i / 10 for i in range(11)]
P_NOISE_CI = W                                                      # reaches 0.5 at w = 0.5
P_NOISE_MEAN = [0.1, 0.3, 0.5, 0.7, 0.9, 1, 1, 1, 1, 1, 1]           # 0.2 .. 0.5 .. 0.1 above: mean gap 2.9 / 9
P_IMAGES_CI = [0.1] * 8 + [0.5, 0.8, 0.9]                          # flat up to w = 0.7
PAPER = {"dataset": "mnist", "curves": {"noise_ci": {"values": P_NOISE_CI}, "images_ci": {"values": P_IMAGES_CI},
                                        "noise_mean": {"values": P_NOISE_MEAN},
                                        "images_mean": {"values": P_NOISE_MEAN}}}


def _curves(noise_ci: list[float], noise_mean: list[float], images_ci: list[float],
            gabor_noise_ci: list[float]) -> dict[tuple, dict[str, torch.Tensor]]:
    mean = {"noise_ci": noise_ci, "images_ci": images_ci, "noise_mean": noise_mean, "images_mean": noise_mean}
    out = {}
    for d in CH.datasets:
        for name, values in mean.items():
            out[d, name, "uniform"] = {"mean": _t(values), "mean_other": _t(values) / 2}
        out[d, "noise_ci", "gabor"] = {"mean": _t(gabor_noise_ci)}
        out[d, "images_ci", "gabor"] = {"mean": _t(images_ci)}
    return out


# ours: the CI beats the mean image on noise (the opposite of the paper), the Gabor CIs move noise less
OURS = _curves([0.1, 0.6, 0.9] + [1.0] * 8, W, [0.1, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0],
               [0.1] * 11)
ROUNDTRIP = {(d, n): {"mean": _t(W)} for d in CH.datasets for n in rep.ROUNDTRIP_CURVES}


def test_gap_first_w_and_share_up_to():
    assert math.isclose(rep.gap(_t(P_NOISE_MEAN), _t(P_NOISE_CI)), 2.9 / 9)
    assert math.isclose(rep.gap(_t(W), _t(P_NOISE_MEAN)), -2.9 / 9)
    assert rep.gap(_t([9.0] + [0.5] * 9 + [9.0]), _t([0.0] * 11)) == 0.5  # the ends w = 0 and 1 do not count
    assert rep.first_w(_t(P_NOISE_MEAN)) == 0.2 and rep.first_w(_t(P_NOISE_CI), 0.8) == 0.8
    assert math.isnan(rep.first_w(_t([0.1] * 11)))
    assert rep.share_up_to(_t(P_IMAGES_CI)) == 0.1 and rep.share_up_to(_t(W), 0.3) == 0.3


def test_paper_reading_states_the_papers_curves():
    assert rep.paper_reading(PAPER) == (
        "**What the paper's own numbers show.** On its MNIST model a CI pulls noise towards its class far less than "
        "the class's mean image does: between w = 0.1 and 0.9 the noise + mean-image curve lies on average 0.32 "
        "above the noise + CI curve, and it reaches a share of 0.5 at w = 0.2, the CI curve at w = 0.5. On test images "
        "the CI barely moves anything below w = 0.8 (the share stays at 0.100 or less up to w = 0.7, i.e. the class "
        "frequencies), and the CIs alone (w = 1) give 1.0, the 9-of-10 feed-back.")


def test_our_reading_when_the_ci_beats_the_mean_image():
    text = rep.our_reading(OURS, PAPER)
    assert text.startswith("**Ours** (MNIST): the mean-image curve lies ")
    gap = rep.gap(OURS["mnist", "noise_mean", "uniform"]["mean"], OURS["mnist", "noise_ci", "uniform"]["mean"])
    assert gap < 0 and f"lies {abs(gap):.2f} below the CI curve on noise" in text
    assert "reaches 0.5 at w = 0.5, the CI curve at w = 0.1;" in text
    assert "the CI curve stays at 0.800 or less up to w = 0.7 and reaches 0.5 at w = 0.5" in text
    assert "the CIs alone give 1.00. Here the CI moves noise at least as well as the mean image does" in text
    assert text.endswith("The Gabor-noise CIs (triangles) move noise less than the uniform-noise ones.")


def test_our_reading_when_the_papers_reading_holds():
    curves = _curves(P_NOISE_CI, P_NOISE_MEAN, P_IMAGES_CI, [0.9] * 11)
    text = rep.our_reading(curves, PAPER)
    assert "lies 0.32 above the CI curve" in text and "The paper's reading holds here" in text
    assert "move noise more than" in text
    assert rep.gamma_reading(curves, PAPER) == rep.paper_reading(PAPER) + "\n\n" + text


def test_a_curve_that_never_reaches_one_half_is_said_so_not_nan():
    flat = [0.1] * 11
    text = rep.our_reading(_curves(flat, P_NOISE_MEAN, flat, W), PAPER)
    assert "reaches 0.5 at w = 0.2, the CI curve at no weight up to w = 1;" in text
    assert "and reaches 0.5 at no weight up to w = 1; at w = 1" in text and "nan" not in text
    assert rep.reach(_t(W)) == "at w = 0.5" and rep.reach(_t(flat)) == "at no weight up to w = 1"


def test_the_papers_reading_needs_a_gap_above_the_criterion():
    below = [min(1.0, v + PATTERN_GAP / 2) for v in P_NOISE_CI[:-1]] + [1.0]
    above = [min(1.0, v + 2 * PATTERN_GAP) for v in P_NOISE_CI[:-1]] + [1.0]
    assert "Here the CI moves noise" in rep.our_reading(_curves(P_NOISE_CI, below, P_IMAGES_CI, W), PAPER)
    assert "The paper's reading holds" in rep.our_reading(_curves(P_NOISE_CI, above, P_IMAGES_CI, W), PAPER)


def test_gamma_panels_hold_every_curve_and_the_paper_only_on_its_dataset():
    panels = rep.gamma_panels(OURS, ROUNDTRIP, PAPER, CH)
    assert list(panels) == ["MNIST", "Fashion-MNIST"]
    assert len(panels["MNIST"]) == 14 and len(panels["Fashion-MNIST"]) == 10
    assert set(panels["MNIST"]) <= set(rep.STYLES)
    w, y = panels["MNIST"]["images + CI, other classes only"]
    assert w.tolist() == W and y.tolist() == (OURS["mnist", "images_ci", "uniform"]["mean"] / 2).tolist()
    assert panels["MNIST"]["paper: noise + CI"][1].tolist() == torch.tensor(P_NOISE_CI).tolist()
    assert rep.STYLES["paper: images + CI"] == "--C1" and rep.STYLES["noise + CI (Gabor CIs)"] == "^-C4"
    assert isinstance(rep.gamma_figure(OURS, ROUNDTRIP, PAPER, CH), Figure)


# ---------------------------------------------------------------- snapshots

def _snap(step: int, acc: float, uni: float, gab: float, top: int = 1) -> dict[str, object]:
    return {"step": step, "epoch": step / 20, "test_accuracy": acc, "uniform_paper": uni, "uniform_centred": uni,
            "gabor_rms": gab, "uniform_top": top, "uniform_share": 0.6, "gabor_top": 2, "gabor_share": 0.7}


SNAPS = {"mnist": [_snap(0, 0.1, 0.1, 0.1), _snap(10, 0.8, 0.4, 0.3), _snap(30, 0.9, 0.38, 0.5)],
         "fashion_mnist": [_snap(0, 0.1, 0.1, 0.1), _snap(10, 0.5, 0.5, 0.6, 0), _snap(30, 0.7, 0.3, 0.2)]}


def test_snapshot_tables_per_dataset():
    out = rep.snapshot_tables(SNAPS, CH)
    assert out[0] == "**MNIST**" and out[2] == "**Fashion-MNIST**"
    assert "| 10 | 0.50 | 80.0% | 40.0% | 40.0% | 30.0% | one 60% | two 70% |" in out[1]
    assert "| 10 | 0.50 | 50.0% | 50.0% | 50.0% | 60.0% | zero 60% | two 70% |" in out[3]


def test_snapshot_reading_finds_peaks_and_the_dataset_that_gets_worse():
    text = rep.snapshot_reading(SNAPS, CH)
    assert ("- **MNIST**: the uniform-noise CI templates peak at 40.0% after 10 steps (network test accuracy 80.0%) "
            "and end at 38.0% (network 90.0%), moving between 38.0% and 40.0% on the way; the Gabor ones peak at "
            "50.0% after 30 steps and end at 50.0%.") in text
    assert "\n\nOn Fashion-MNIST the best white-noise templates come from a partly trained network" in text
    assert text.endswith("make the better templates at 2 of 4 snapshots after the first step.")


def test_snapshot_reading_without_a_drop_beyond_the_criterion():
    text = rep.snapshot_reading(SNAPS, MNIST_ONLY)  # MNIST drops 2 points from its peak: not worse
    assert "Training does not make the white-noise templates clearly worse here: the peak is within 5 points" in text
    assert text.endswith("at 1 of 2 snapshots after the first step.")
    assert isinstance(rep.snapshot_figure(SNAPS, CH), Figure)
