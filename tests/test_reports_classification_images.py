"""Chapter 3's report functions on synthetic CIs, snapshots and noise-study rows with known answers."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.criteria import DENSITY_CLIP  # noqa: E402
from wna_helpers.book.reports import ci_noise  # noqa: E402
from wna_helpers.book.reports import classification_images as rep  # noqa: E402
from wna_helpers.methods.ci import ClassificationImages  # noqa: E402
from wna_helpers.methods.convergence import CIConvergence  # noqa: E402

CH = Chapter(profile=wna.get_profile("quick"), models=["paper_cnn", "flat"], cnns=[], datasets=["mnist"],
             device=torch.device("cpu"), classes={"mnist": ("zero", "one", "two")})
#: Three 2x2 class means, each a different pattern.
MEANS = {"mnist": torch.tensor([[1.0, 0, 0, 2], [0, 3, 1, 0], [2, 2, 0, 1]], dtype=torch.float64).view(3, 1, 2, 2)}


def _ci(counts: list[int], images: torch.Tensor | None = None, *, nulls: torch.Tensor | None = None,
        logit: torch.Tensor | None = None) -> ClassificationImages:
    """CIs with these counts and images (NaN for an empty class) whose two halves are identical (reliability 1)."""
    c = torch.tensor(counts)
    img = (images if images is not None else MEANS["mnist"]).clone().double()
    img[c == 0] = float("nan")
    sums = img.nan_to_num() * c.double().view(-1, 1, 1, 1)
    return ClassificationImages(images=img, counts=c, n_samples=int(c.sum()), sums=sums, sumsq=sums.square(),
                                stimulus={}, null_images=nulls, odd_sums=sums / 2, odd_counts=c // 2,
                                logit_images=logit)


def test_run_table_and_histograms():
    cis = {("paper_cnn", "mnist"): _ci([6, 3, 1]), ("flat", "mnist"): _ci([0, 10, 0])}
    acc = {("paper_cnn", "mnist"): 0.913, ("flat", "mnist"): 0.5}
    table = rep.run_table(cis, acc, CH)
    assert "| paper_cnn | MNIST | 91.3% | 10 |" in table and "| flat | MNIST | 50.0% | 10 |" in table
    figs = rep.histogram_figures(cis, acc, CH)
    assert len(figs) == 1 and isinstance(figs[0], Figure)
    assert [p.get_height() for p in figs[0].axes[0].patches] == [0.6, 0.3, 0.1]
    assert "predicted class of pure uniform noise U[0, 1]" in figs[0]._suptitle.get_text()
    assert rep.main_noise(CH) == "Main noise of this build: **uniform noise U[0, 1]**."


def test_bias_names_the_most_biased_and_the_most_even_model():
    cis = {("paper_cnn", "mnist"): _ci([6, 3, 1]), ("flat", "mnist"): _ci([0, 10, 0])}
    table, prose = rep.bias_summary(rep.bias_rows(cis, CH), CH)
    assert "| paper_cnn | MNIST | zero | 60.0% | 1.30 | 3 | none |" in table   # H(0.6, 0.3, 0.1) = 1.2955 bits
    assert "| flat | MNIST | one | 100.0% | 0.00 | 1 | zero, two |" in table
    assert "classes with >= 1 %" in table
    assert ("2 of 2 models put at least half of the noise into one class (`paper_cnn` → zero 60%, `flat` → one "
            "100%). The most biased is `flat` (100.0% to one, entropy 0.00 bits); the most even is `paper_cnn` "
            "(1.30 of 1.58 bits).") in prose


def test_correlation_with_class_means_is_centred_and_judged_against_relabelled_classes():
    m = MEANS["mnist"]
    centred = m - m.mean(0)
    shared = torch.full_like(m[0], 5.0)                        # what every CI shares: the mean stimulus
    cis = {("paper_cnn", "mnist"): _ci([60, 60, 60], shared + 2 * centred, logit=m.clone()),
           ("flat", "mnist"): _ci([0, 180, 0], m, logit=-m)}
    match = rep.ci_matches(cis, MEANS)
    pc = match["paper_cnn", "mnist"]
    assert torch.allclose(pc["r"], torch.ones(3, dtype=torch.float64))  # the shared 5 is removed: r = 1 exactly
    assert pc["p"] == pytest.approx(1 / 6) and pc["classes"] == 3      # only the identity of 3! reaches it
    other = wna.pearson(centred[0].flatten(), centred[1].flatten())
    assert pc["other"][0] == pytest.approx(float((other + wna.pearson(centred[0].flatten(),
                                                                        centred[2].flatten())) / 2))
    assert match["flat", "mnist"]["classes"] == 1 and match["flat", "mnist"]["p"] != match["flat", "mnist"]["p"]
    table, prose = rep.correlation_summary(cis, MEANS, CH)
    assert "| paper_cnn | 1.00 |" in table and "| 0.167 | 3 |" in table   # Holm over the one pair with a p
    assert "| flat | – | – | – | 1 |" in table  # its one CI is the mean of all the noise: nothing left
    assert "come most clearly from `paper_cnn` on MNIST (r = 1.00 against" in prose
    assert "0 of 2 model–dataset pairs beat every relabelling" in prose      # 1/6 > 0.05: three classes cannot pass
    # one class above 1 % is not "every sample in one class": the others may still have CIs from few samples
    assert "1 model–dataset pairs (`flat` on MNIST) send 99% or more of the noise to one class (every other class " \
           "gets under 1%)" in prose
    table, prose = rep.logit_summary(cis, MEANS, CH)
    assert "MNIST: logit image r, all 3 classes" in table
    assert "| paper_cnn | 1.00 | 1.00 | 1.00 | 0.333 |" in table        # Holm over two pairs: 2 x 1/6
    assert "| flat | – | -1.00 | -1.00 | 1.000 |" in table
    assert "for 0 of 2 model–dataset pairs" in prose and "cover all three classes" in prose
    figs = rep.ci_figures(cis, MEANS, CH) + rep.logit_figures(cis, CH)
    assert len(figs) == 2 and all(isinstance(f, Figure) for f in figs)


def test_a_shared_component_alone_gives_a_large_raw_r_but_no_centred_one():
    """The issue's case: CIs that are the mean stimulus plus noise, class means that share one large component;
    the raw r is near 1, the centred r near 0 and no relabelling is beaten."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64) * 5
    means = base + torch.rand(6, 1, 8, 8, generator=gen, dtype=torch.float64)
    cis = base + 0.1 * torch.randn(6, 1, 8, 8, generator=gen, dtype=torch.float64)
    from wna_helpers.book.measures import class_correlation, class_match
    assert float(class_correlation(cis, means).mean()) > 0.9
    m = class_match(cis, means, centre=base)
    assert abs(m["mean_r"]) < 0.2 and m["p"] > 0.05


def test_correlation_summary_without_single_class_pairs_says_nothing_of_them():
    cis = {k: _ci([60, 60, 60]) for k in (("paper_cnn", "mnist"), ("flat", "mnist"))}
    assert "or more of the noise to one class" not in rep.correlation_summary(cis, MEANS, CH)[1]


def _null_cis(degenerate: bool = False) -> dict[tuple[str, str], ClassificationImages]:
    """paper_cnn: one pixel of class zero 50 null SDs from the null mean, the rest at it; flat: one class at it
    (``degenerate``: that class took every sample of every permutation, so its null CIs are all the same)."""
    nulls = torch.randn(32, 3, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    strong = nulls.mean(0).clone()
    strong[0, 0, 0, 0] += 50
    empty = nulls.clone()
    empty[:, [0, 2]] = float("nan")
    if degenerate:
        empty[:, 1] = nulls.mean(0)[1]
    return {("paper_cnn", "mnist"): _ci([60, 60, 60], strong, nulls=nulls),
            ("flat", "mnist"): _ci([0, 180, 0], nulls.mean(0), nulls=empty)}


def test_significance_counts_the_one_real_pixel():
    cis = _null_cis()
    table, prose = rep.significance_summary(cis, CH)
    assert "| paper_cnn | MNIST | 180 | 3 | 0 | 1 | 8.3% | 8.3% |" in table      # 1 pixel of 3 classes x 4
    assert "| flat | MNIST | 180 | 1 | 0 | 0 | 0.0% | 0.0% |" in table
    assert "pixels significant (FWER 0.05)" in table
    assert prose.startswith("With 32 label permutations the smallest p-value is 1/33 = 0.030,")
    assert ("from 0.0% (`flat`) to 8.3% (`paper_cnn`) of the testable CI pixels differ from chance at FWER 0.05; "
            "no pixel passes for `flat`. Clusters add pixels that the pixel test misses: 0 of 2 models") in prose
    # flat's one class took every sample under every permutation: nothing of it can be tested (not 0 %)
    table, prose = rep.significance_summary(_null_cis(degenerate=True), CH)
    assert "| flat | MNIST | 180 | 1 | 1 | 0 | – | – |" in table
    assert ("from 8.3% (`paper_cnn`) to 8.3% (`paper_cnn`) of the testable CI pixels differ from chance at FWER 0.05; "
            "every model with a testable class has a class with significant pixels. Not testable at all: `flat` "
            "(every sample in one class). Clusters add pixels that the pixel test misses: 0 of 1 models") in prose
    figs = rep.zmap_figures(cis, CH)
    assert len(figs) == 1 and "against 32 label-permuted null" in figs[0]._suptitle.get_text()   # wrapped


def _conv(counts: list[list[int]], r: list[list[float]]) -> CIConvergence:
    """Snapshots at n = 100, 200, 400 whose class c at size i is ``r[i][c]`` times its final image (the mean)."""
    c = torch.tensor(counts)
    img = MEANS["mnist"].unsqueeze(0) * torch.tensor(r, dtype=torch.float64).view(3, 3, 1, 1, 1)
    sums = img * c.double().view(3, 3, 1, 1, 1)
    return CIConvergence(sizes=[100, 200, 400], counts=c, sums=sums, sumsq=sums.square(), stimulus={},
                         odd_sums=sums / 2, odd_counts=c // 2)


CONV = {("paper_cnn", "mnist"): _conv([[60, 40, 0], [120, 80, 0], [240, 160, 0]], [[1, -1, 0], [1, 1, 0], [1, 1, 0]]),
        ("flat", "mnist"): _conv([[0, 100, 0], [0, 200, 0], [0, 400, 0]], [[0, -1, 0], [0, -1, 0], [0, 1, 0]])}


def test_convergence_rows_and_summary():
    rows = rep.convergence_rows(CONV, {"paper_cnn": 200, "flat": 200}, CH)
    # the halves of the synthetic runs hold the same images as the whole, so r across halves is the r with the final
    # CI; N_c counts the odd half's samples (30 of class zero's 60 at n = 100)
    assert rows[0]["side"] == pytest.approx(1.0) and rows[0]["reach"] == 200 and rows[0]["nc"] == 30  # -1 at 20
    assert rows[0]["overlap"] == pytest.approx(1.0) and rows[0]["null"] == pytest.approx(0.5 ** 0.5)
    assert rows[1]["side"] == pytest.approx(-1.0) and rows[1]["reach"] == 400 and rows[1]["nc"] == 200
    table, prose = rep.convergence_summary(rows)
    assert "r across halves at 50% of n" in table
    assert "| paper_cnn | MNIST | 400 | 1.00 | 1.00 | 0.71 | 200 | 30 |" in table
    assert "| flat | MNIST | 400 | -1.00 | -1.00 | 0.71 | 400 | 200 |" in table
    assert prose.startswith("With 50% of the samples the odd half's CIs correlate at r = -1.00 to 1.00 with the even "
                            "half of the final run. The two share no sample, so a CI without any signal gives r = 0 "
                            "here; the r with the final CI is higher (-1.00 to 1.00)")
    assert "reaches √(n/N) = 0.71 from noise alone" in prose
    assert "1 of 2 model–dataset pairs lie more than 0.1 above 0 across halves" in prose
    assert "every CI whose odd half has more than 30 to 200 samples" in prose
    figs = rep.convergence_figures(CONV, CH)
    assert len(figs) == 2 and all(isinstance(f, Figure) for f in figs)


def test_reliability_tables_give_a_dash_for_classes_without_halves():
    cis = {k: c.snapshot(400) for k, c in CONV.items()}
    (text,) = rep.reliability_tables(CONV, cis, CH)
    assert text.startswith("**MNIST**\n\n| model | zero | one | two | n for 0.9 (worst class ≥ 50) |")
    assert "| paper_cnn | 1.00 | 1.00 | — |" in text
    figs = rep.reliability_figures(CONV, cis, CH)
    assert len(figs) == 2 and all(isinstance(f, Figure) for f in figs)


def _row(model: str, kind: str, top: int, share: float, h: float, cis: int, paper: float, centred: float,
         fb: int) -> dict[str, object]:
    return {"model": model, "dataset": "mnist", "kind": kind, "n": 1000, "top_class": top, "top_share": share,
            "entropy_bits": h, "cis": cis, "paper_accuracy": paper, "centred_accuracy": centred,
            "feedback_diagonal": fb, "ci": _ci([500, 300, 200])}


STUDY = [_row("paper_cnn", "gaussian", 0, 0.95, 0.3, 2, 0.5, 0.6, 2),
         _row("paper_cnn", "uniform", 1, 0.6, 1.2, 3, 0.2, 0.2, 0),
         _row("flat", "gaussian", 1, 0.5, 1.0, 3, 0.3, 0.2, 1), _row("flat", "uniform", 1, 1.0, 0.0, 1, 0.1, 0.1, 1)]


def test_kind_tables_and_summary_average_over_models():
    line, table = ci_noise.kind_tables(STUDY, CH)
    assert line == "**MNIST** (n per model: `paper_cnn` 1,000, `flat` 1,000)"
    assert "| paper_cnn | N(0, 1) | zero 95% | 0.30 | 2 | 50.0% | 60.0% | 2 |" in table
    assert "| flat | U[0, 1] | one 100% | 0.00 | 1 | 10.0% | 10.0% | 1 |" in table
    text = ci_noise.kind_summary(STUDY, CH)
    assert ("under N(0, 1), 1 of 2 models send at least 90 % of the noise to one class (`paper_cnn` zero 95%); "
            "N(0, 1): mean entropy 0.65 bits, 2.5 classes with a CI; U[0, 1]: mean entropy 0.60 bits, 2.0 classes "
            "with a CI.") in text
    assert ("the paper's recipe reaches 40.0% (N(0, 1)), 15.0% (U[0, 1]); the centred recipe 40.0%, 15.0% in the "
            "same order. The best kind for templates is N(0, 1).") in text
    assert "on average 1.5 (N(0, 1)), 0.5 (U[0, 1]) of the three min-max-scaled CIs" in text
    figs = ci_noise.kind_figures(STUDY, CH)
    assert len(figs) == 1 and "paper_cnn on MNIST" in figs[0]._suptitle.get_text()


def test_pixel_table_and_clipped_densities():
    centers = torch.linspace(-1, 2, 4, dtype=torch.float64)
    dens = {"training images": torch.tensor([0.0, 9.0, 1.0, 0.0]), "gaussian": torch.tensor([0.2, 0.4, 0.3, 0.1])}
    hists = {"mnist": {"centers": centers, "density": dens, "below": {"training images": 0.0, "gaussian": 0.5},
                       "above": {"training images": 0.0, "gaussian": 0.159}}}
    table = ci_noise.pixel_table(hists, CH)
    assert "| pixels of | MNIST: < 0 | MNIST: > 1 |" in table
    assert "| training images | 0.0% | 0.0% |" in table and "| N(0, 1) | 50.0% | 15.9% |" in table
    fig = ci_noise.pixel_figure(hists, CH)
    assert max(max(line.get_ydata()) for line in fig.axes[0].lines) == DENSITY_CLIP
    samples = {"gaussian": torch.zeros(3, 1, 2, 2), "uniform": torch.ones(3, 1, 2, 2)}
    fig = ci_noise.sample_figure(samples, torch.rand(3, 1, 2, 2), CH)
    assert fig._suptitle.get_text().startswith("3 samples of each noise kind (fitted to MNIST")


def test_mixing_summary_names_the_pairs_still_flat():
    mix = {("paper_cnn", "mnist"): {0.0: _ci([10, 0, 0]), 0.5: _ci([5, 5, 0])},
           ("flat", "mnist"): {0.0: _ci([0, 10, 0]), 0.5: _ci([0, 9, 1])}}   # H(0.9, 0.1) = 0.469 bits
    text = ci_noise.mixing_summary(mix, MEANS, CH)
    assert "At γ = 0.5 no CI has 50 samples; 0 of 2 model–dataset pairs beat every relabelling" in text
    assert "from γ = 0 to γ = 0.5 the entropy goes `paper_cnn` 0.00 → 1.00, `flat` 0.00 → 0.47 bits." in text
    assert ("Even with half of each stimulus being a real image, 1 model–dataset pairs still give most stimuli one "
            "answer (`flat` on MNIST): the noise half dominates") in text
    less = {k: {0.0: v[0.0], 0.3: v[0.5]} for k, v in mix.items()}
    assert "Even with a weight of 0.3 on a real image" in ci_noise.mixing_summary(less, MEANS, CH)
    spread = {k: {0.0: v[0.0], 0.5: _ci([4, 3, 3])} for k, v in mix.items()}
    assert "By the largest γ every model spreads its answers" in ci_noise.mixing_summary(spread, MEANS, CH)
    figs = ci_noise.mixing_figures(mix, MEANS, CH)
    assert len(figs) == 3 and all(isinstance(f, Figure) for f in figs)   # entropy, r, paper_cnn's CIs


def test_mixing_summary_centres_the_cis_and_compares_with_the_other_classes():
    m = MEANS["mnist"]
    centred = m - m.mean(0)
    shared = torch.full_like(m[0], 0.5)
    mix = {("paper_cnn", "mnist"): {0.0: _ci([60, 60, 60]), 0.5: _ci([60, 60, 60], shared + 2 * centred)},
           ("flat", "mnist"): {0.0: _ci([60, 60, 60]), 0.5: _ci([60, 60, 60], shared + centred[[1, 2, 0]])}}
    match = ci_noise.mixed_match(mix["paper_cnn", "mnist"][0.5], m)
    assert match["mean_r"] == pytest.approx(1.0) and match["p"] == pytest.approx(1 / 6)
    wrong = ci_noise.mixed_match(mix["flat", "mnist"][0.5], m)       # each CI shows another class's mean
    assert wrong["mean_r"] < wrong["mean_other"]
    text = ci_noise.mixing_summary(mix, MEANS, CH)
    assert f"At γ = 0.5 the centred CIs correlate with their own class means at r = {wrong['mean_r']:.2f} to 1.00" in text
    assert "0 of 2 model–dataset pairs beat every relabelling of their classes at a Holm-corrected p <= 0.05." in text
