"""The simulated observer (chapter 10): its answers, the template it hides and how well a CI recovers it; the
chapter's glue on synthetic results."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.applications.observer import TemplateObserver, stimulus_normal  # noqa: E402
from wna_helpers.book import observer_study  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.reports import observer as rep  # noqa: E402


def _template() -> torch.Tensor:
    t = torch.zeros(1, 8, 8)
    t[0, 2:6, 2] = 1.0
    t[0, 2:6, 5] = -1.0
    return t


def test_stimulus_normal_is_a_fixed_standard_normal_per_stimulus():
    x = torch.rand(20_000, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    z = stimulus_normal(x)
    assert torch.equal(z, stimulus_normal(x.clone()))                       # the same stimulus, the same draw
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
    assert abs(float(wna.pearson(z, x[:, 0, 0, 0]))) < 0.03                 # unrelated to a pixel


def test_a_noiseless_observer_ci_is_its_template_and_internal_noise_costs_accuracy_not_the_pattern():
    """Under uniform noise a linear template matcher's CI (said A minus said B) is proportional to the template in
    expectation; internal noise lowers its accuracy and the CI's signal-to-noise, not its direction."""
    t = _template()
    base_a, base_b = (0.5 + 0.2 * t)[None], (0.5 - 0.2 * t)[None]
    sharp = TemplateObserver(t, internal_noise=0.0, num_classes=2)
    noisy = TemplateObserver(t, internal_noise=1.0, num_classes=2)
    runs = {o: wna.two_class_ci(m, base_a, base_b, classes=(0, 1), weight=0.05, n_samples=20_000)
            for o, m in (("sharp", sharp), ("noisy", noisy))}
    assert runs["sharp"].accuracy > runs["noisy"].accuracy > 0.5
    for run in runs.values():
        assert wna.pearson(run.combined("noise"), t) > 0.9
    # its answers through the response path give the network path's CI on the same trials
    x = torch.rand(5000, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        said = noisy(x).argmax(1)
    run = wna.classification_images(noisy, 5000, noise=wna.Images(x), input_shape=(1, 8, 8), progress=False)
    resp = wna.classification_images_from_responses(x, said, num_classes=2)
    assert torch.equal(run.counts, resp.counts) and torch.allclose(run.sums, resp.sums, atol=1e-9)
    with pytest.raises(ValueError, match="two different indices"):
        TemplateObserver(t, classes=(1, 1))
    with pytest.raises(ValueError, match="non-zero"):
        TemplateObserver(torch.zeros(1, 2, 2))


def test_choose_weight_takes_the_accuracy_nearest_the_target():
    assert observer_study.choose_weight([0.1, 0.2, 0.3], [0.6, 0.74, 0.9]) == 0.2
    assert observer_study.choose_weight([0.1, 0.2], [0.7, 0.8]) == 0.1   # a tie goes to the smaller weight


def _run(r: float) -> dict[str, object]:
    t = _template().double()
    noise = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    noise -= (noise * t).sum() / (t * t).sum() * t                         # orthogonal to the template
    ci = r * t / t.norm() + math.sqrt(1 - r * r) * noise / noise.norm()
    counts = torch.tensor([[40, 10], [12, 38]])
    z = torch.zeros(2, 2, 1, 8, 8, dtype=torch.float64)
    two = wna.TwoClassCI(weight=0.1, classes=(5, 6), counts=counts, sums=z, sumsq=z + 1.0, noise_sums=z,
                         noise_sumsq=z + 1.0, n_samples=100, stimulus={})
    sig = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    sig[0, 0, 2:6, 2] = True
    return {"classes": (5, 6), "weights": [0.05, 0.1], "accuracy": [0.6, 0.78], "weight": 0.1, "run": two,
            "template": t, "ci": ci, "r": float(wna.pearson(ci, t)), "r_rows": [0.8, 0.7], "significant": sig}


def test_observer_summary_states_recovery_by_the_rule():
    ch = Chapter(profile=wna.get_profile("quick"), models=[], cnns=[], datasets=["mnist"], device=torch.device("cpu"),
                 classes={"mnist": tuple(str(i) for i in range(10))})
    runs = {"mnist": _run(0.95)}
    text = rep.observer_summary(runs, ch)
    assert text.startswith('- **MNIST**, "5 or 6?": w = 0.1 gives 78.0% correct over 100 trials.')
    assert runs["mnist"]["r"] > 0.9
    assert f"r = {runs['mnist']['r']:.3f} (each true class alone: 0.800 and 0.700); 4 and 0 pixels" in text
    assert text.endswith("The template is recovered.")
    assert "(No weight of the sweep comes nearer 75%: it reached 78.0% there.)" in text   # the sweep's 0.78 at w = 0.1
    low = _run(0.5)
    assert low["r"] < 0.9 and "is not recovered at r >= 0.9" in rep.observer_summary({"mnist": low}, ch)
    assert isinstance(rep.sweep_figure(runs, ch), Figure)
    figs = rep.template_figures(runs, ch)
    assert len(figs) == 1 and "5 or 6?" in " ".join(figs[0]._suptitle.get_text().split())
