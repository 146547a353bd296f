"""The report functions of chapters 1, 2, 6, 7 and the appendices, on synthetic inputs with known answers."""
from __future__ import annotations

from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book.chapter import Chapter  # noqa: E402
from wna_helpers.book.reports import activations, appendix, models, overview  # noqa: E402

CH = Chapter(profile=wna.get_profile("quick"), models=["a", "b"], cnns=["a"], datasets=["mnist"],
             device=torch.device("cpu"), classes={"mnist": ("zero", "one", "two")})


def test_layer_section_counts_parameters_and_shapes():
    model = nn.Sequential(OrderedDict(flatten=nn.Flatten(), fc1=nn.Linear(4, 3)))
    model.input_shape = (1, 2, 2)
    text = models.layer_section("tiny", model)
    assert text.startswith("### `tiny`: 15 parameters")
    assert "| `fc1` | Linear | 3 | 15 |" in text and "| `flatten` | Flatten | 4 | 0 |" in text
    assert "|---|---|---|---:|" in text   # parameters aligned right


def test_receptive_field_table_of_a_known_stack():
    model = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 2, 3), pool1=nn.MaxPool2d(2), conv2=nn.Conv2d(2, 2, 3),
                                      flatten=nn.Flatten(), fc1=nn.Linear(2 * 11 * 11, 3)))
    table = models.receptive_field_table({"stack": model})
    assert "| `stack` | `conv1` | 3×3 | 1 | 0 | 26×26 |" in table   # unit 0 sees rows 0-2
    assert "| `stack` | `conv2` | 8×8 | 2 |" in table      # 3 + (2 - 1) + 2 * (3 - 1) = 8, step 2


def test_accuracy_table_and_learning_curves():
    hist = {"log_every": 10, "step_loss": [2.0, 1.0, 0.5], "epoch_test_accuracy": [0.8, 0.9]}
    meta = {"test_accuracy": 0.98765, "epochs": 2, "train_seconds": 12.4, "history": hist}
    trained = {(a, "mnist"): (None, meta) for a in CH.models}
    text = models.accuracy_table(trained, CH)
    assert "profile **quick**" in text and "| `a` | 98.77% (2 ep., 12 s) |" in text and "|---|---:|" in text
    figs = models.learning_curves(trained, CH)
    assert len(figs) == 1 and isinstance(figs[0], Figure)
    assert [len(line.get_xdata()) for line in figs[0].axes[0].lines] == [3, 3]


def test_parameter_figure_labels_every_model():
    fig = models.parameter_figure({"small": nn.Linear(2, 2), "big": nn.Linear(10, 10)}, CH)
    assert [t.get_text() for t in fig.axes[0].texts] == [" 6", " 110"]


def _stats(means: torch.Tensor, counts: list[int]) -> wna.ActivationStatistics:
    c = torch.tensor(counts)
    return wna.ActivationStatistics(means={"fc1": means}, counts=c, group_by="label", n_samples=int(c.sum()),
                                    stimulus={"kind": "x"})


def test_specificity_is_tested_against_relabelled_classes_and_skips_output_layers():
    """a: noise maps close to their own class's real maps (specific); b: each the map of another class (not);
    c: a layer of one unit per class, the output, where the match holds by construction (not tested); d: a class
    with fewer than 50 noise samples is left out."""
    names = tuple("abcdefgh")
    ch = Chapter(profile=CH.profile, models=["a", "b", "c", "d"], cnns=[], datasets=["mnist"], device=CH.device,
                 classes={"mnist": names})
    g = torch.Generator().manual_seed(0)
    real = torch.randn(8, 20, generator=g, dtype=torch.float64)
    close = real + 0.05 * torch.randn(8, 20, generator=g, dtype=torch.float64)
    out = torch.randn(8, 8, generator=g, dtype=torch.float64)
    many = [100] * 8
    acts = {("a", "mnist", "real"): _stats(real, many), ("a", "mnist", "noise"): _stats(close, many),
            ("b", "mnist", "real"): _stats(real, many), ("b", "mnist", "noise"): _stats(real.roll(1, 0), many),
            ("c", "mnist", "real"): _stats(out, many), ("c", "mnist", "noise"): _stats(out, many),
            ("d", "mnist", "real"): _stats(real, many), ("d", "mnist", "noise"): _stats(close, [100] * 7 + [3])}
    rows = {r["model"]: r for r in activations.specificity_rows(acts, ch)}
    assert rows["a"]["r"] > 0.99 and rows["a"]["matched"] == 1.0 and rows["a"]["p"] <= 0.05
    assert rows["b"]["r"] < rows["b"]["other"] and rows["b"]["p"] > 0.5 and rows["b"]["matched"] == 0.0
    assert rows["c"]["output"] and rows["c"]["p"] != rows["c"]["p"]       # NaN: not tested
    assert rows["d"]["k"] == 7 and rows["a"]["k"] == 8
    # Holm over the three tested pairs: a's smallest drawn p, 1/10,000, times three
    assert rows["a"]["p"] == pytest.approx(3 / 10_000)
    table, prose = activations.specificity(list(rows.values()))
    assert "| c | MNIST | fc1 (output) |" in table and "classes with >= 50 noise samples" in table
    assert "The last layer of `c` on MNIST is its output" in prose
    assert "For 2 of the 3 pairs tested, the same class matches better than every relabelling" in prose
    # the r range leaves out the output layer (r = 1 there by construction); no pair passing claims nothing
    same = [rows[m]["r"] for m in "abd"]
    assert f"correlate at r = {min(same):.2f} to {max(same):.2f} with the real maps" in prose
    _, none = activations.specificity([rows["b"], rows["c"]])
    assert "None of the 1 pair tested matches the same class better" in none and "somewhat like" not in none


def _row(model: str, r: float, h: float) -> dict[str, object]:
    return {"model": model, "dataset": "mnist", "sta_filter_r": r, "noise_entropy_bits": h}


def test_sta_summary_counts_matches_and_the_entropy_range():
    rows = [_row("a", 0.99, 0.5), _row("b", float("nan"), 2.5), _row("c", 0.80, 1.0)]
    text = overview.sta_summary(rows, CH)
    assert text.startswith("In 1 of 2 CNN–dataset pairs") and "from 0.800 to 0.990" in text
    assert "ranges from 0.50 to 2.50 bits across the 3 model–dataset pairs" in text


def test_appendix_sections_say_when_a_benchmark_has_not_run(tmp_path):
    missing = str(tmp_path / "none.json")
    assert "has not been run" in appendix.speed_section(missing)[-1]
    assert "has not been run" in appendix.engine_section(missing)[-1]
    assert "has not been run" in appendix.stats_section(missing)[-1]
    assert appendix.speed_details(missing) is None


def test_trained_models_table():
    metas = {("a", "mnist"): {"epochs": 3, "train_size": 60000, "test_accuracy": 0.5, "train_seconds": 1.25,
                              "device": "cpu", "versions": {"torch": "9.9"}}}
    assert "| a | MNIST | 3 | 60,000 | 50.00% | 1.2 | cpu | 9.9 |" in appendix.trained_models(metas, CH)
