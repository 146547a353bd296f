"""benchmarks/speed_benchmark.py: its ratios divide the right rows, and the STA's parts time what the STA does."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))   # the script imports its neighbours by name
    try:
        import speed_benchmark
        yield speed_benchmark
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _row(kind: str, rate: float) -> dict:
    return {"kind": kind, "arch": "paper_cnn", "n": 1000, "samples_per_s": rate}


def test_sta_ceiling_adds_the_times_of_its_parts(bench):
    rows = [_row("conv_alone", 50.0), _row("conv_alone_cl", 100.0), _row("noise_alone", 400.0),
            _row("wgrad_alone", 200.0), _row("sta_engine", 40.0)]
    s = bench.ratios(rows, "paper_cnn", ())
    # per sample: 1/100 + 1/400 + 1/200 = 0.0175 s, a rate of 57.14
    assert s["sta_ceiling"] == pytest.approx(1 / 0.0175)
    assert s["sta_over_ceiling"] == pytest.approx(40.0 * 0.0175)
    assert s["sta_ceiling_over_conv_alone"] == pytest.approx(1 / 0.0175 / 100.0)
    assert s["sta_over_conv_alone"] == pytest.approx(0.4)
    # without one of the parts there is no ceiling, not a ceiling of the others
    s = bench.ratios(rows[:2] + rows[3:], "paper_cnn", ())
    assert "sta_ceiling" not in s and s["sta_over_conv_alone"] == pytest.approx(0.4)


def test_update_keeps_the_sta_parts_with_the_sta(bench):
    """The parts divide the STA's rows, so --update re-measures them with it or not at all."""
    group = next(g for g in bench.RATIO_GROUPS if "sta_engine" in g)
    assert set(bench.STA_PARTS) <= set(group) and "conv_alone_cl" in group


@pytest.mark.parametrize("kind", ["noise_alone", "wgrad_alone"])
def test_the_parts_run(bench, kind):
    out = bench.worker(kind, "paper_cnn", 2048, "cpu", 1024)
    assert out["kind"] == kind and out["n"] == 2048 and out["samples_per_s"] > 0


def test_ci_ratio_divides_by_the_bracketing_forwards(bench):
    """The compiled forward timed before and after the long CI run: the ratio uses their mean, and says the drift."""
    rows = [_row("forward_eager", 20.0), _row("forward_compiled", 100.0), _row("ci_engine", 90.0),
            _row("forward_compiled_after", 80.0), _row("ci_engine_compiled", 45.0)]
    s = bench.ratios(rows, "paper_cnn", ())
    assert s["forward_compiled_after_over_before"] == pytest.approx(0.8)
    assert s["fastest_forward"] == "forward_compiled"
    assert s["ci_engine_over_fastest_forward"] == pytest.approx(1.0)        # 90 / mean(100, 80)
    assert s["ci_engine_compiled_over_fastest_forward"] == pytest.approx(0.5)
    # without the second half, the first alone (as before the bracket)
    s = bench.ratios(rows[:3], "paper_cnn", ())
    assert "forward_compiled_after_over_before" not in s
    assert s["ci_engine_over_fastest_forward"] == pytest.approx(0.9)
    # a slower bracket can make another variant the fastest
    s = bench.ratios(rows + [_row("forward_cl", 95.0)], "paper_cnn", ())
    assert s["fastest_forward"] == "forward_cl" and s["ci_engine_over_fastest_forward"] == pytest.approx(90 / 95)


def test_one_process_ratio_is_the_median_of_its_rounds(bench):
    out = bench.worker("ci_one_process", "logreg", 2048, "cpu", 1024)
    assert out["kind"] == "ci_one_process" and len(out["ci_samples_per_s"]) == bench.ROUNDS
    ratios = sorted(c / f for c, f in zip(out["ci_samples_per_s"], out["forward_samples_per_s"]))
    assert out["ci_over_forward"] == pytest.approx(ratios[len(ratios) // 2])
    s = bench.ratios([{**out, "arch": "paper_cnn"}], "paper_cnn", ())
    assert s["ci_over_forward_one_process"] == out["ci_over_forward"]
    # the bare loop alternates with them: its own medians, the engine against it
    assert len(out["bare_samples_per_s"]) == bench.ROUNDS
    bare = sorted(b / f for b, f in zip(out["bare_samples_per_s"], out["forward_samples_per_s"]))
    assert out["bare_over_forward"] == pytest.approx(bare[len(bare) // 2])
    over = sorted(c / b for c, b in zip(out["ci_samples_per_s"], out["bare_samples_per_s"]))
    assert out["ci_over_bare"] == pytest.approx(over[len(over) // 2])
    assert s["ci_bare_over_forward"] == out["bare_over_forward"] and s["ci_over_bare"] == out["ci_over_bare"]
    # a row from before the bare loop: no bare ratios, not zeros
    old = {k: v for k, v in out.items() if "bare" not in k}
    s = bench.ratios([{**old, "arch": "paper_cnn"}], "paper_cnn", ())
    assert "ci_over_bare" not in s and "ci_bare_over_forward" not in s


def test_bare_loop_does_the_engines_work(bench):
    """The bare loop feeds the accumulators what the engine feeds them: the same noise (n not a whole number of
    chunks), the same predictions, so the same sums, statistics and STA; what it leaves out is only the engine."""
    import torch
    import wna_helpers as wna
    from wna_helpers.engine.options import resolve_options
    from wna_helpers.methods.ci import CIAccumulator, ci_result
    from wna_helpers.methods.ci_stats import CIStatsAccumulator
    from wna_helpers.methods.sta import STAAccumulator

    n, cpu = 5000, torch.device("cpu")
    model = wna.build_model("logreg", seed=0).eval()
    accs = [CIAccumulator(), CIStatsAccumulator()]
    for a in accs:
        a.setup(10, (1, 28, 28), cpu, {})
    with torch.inference_mode():
        bench.bare_loop(model, accs, n, 1024, cpu, lambda: None)
    ci = wna.classification_images(model, n, noise=wna.Uniform(), progress=False, batch_size=1024, compile=False)
    bare = ci_result(*accs, (1, 28, 28), n, wna.Uniform(), resolve_options(None, {}), 1)
    assert torch.equal(bare.counts, ci.counts) and int(ci.counts.sum()) == n
    for k in ("sums", "null_images", "odd_sums", "logit_images"):
        assert torch.allclose(getattr(bare, k), getattr(ci, k), rtol=1e-9, atol=1e-9, equal_nan=True), k
    cnn = wna.build_model("paper_cnn", seed=0).eval()
    rf = wna.receptive_field(cnn, "conv1")
    acc = STAAccumulator("conv1", rf, (1, 28, 28))
    acc.owns_taps = True
    acc.setup(10, (1, 28, 28), cpu, {"conv1": (20, 24, 24)})
    with torch.inference_mode():
        bench.bare_loop(None, [acc], n, 128, cpu, lambda: None, taps=lambda x: {"conv1": torch.relu(cnn.conv1(x))})
    sta = wna.spike_triggered_average(cnn, "conv1", n, noise=wna.Uniform(), progress=False)
    got = (acc.acc["pooled_num"] / acc.acc["pooled_den"][:, None]).view_as(sta.pooled)
    assert torch.allclose(got, sta.pooled, rtol=0, atol=1e-6, equal_nan=True)
    assert torch.allclose(acc.acc["act_sum"], sta.mean_activation * n * 24 * 24, rtol=1e-6)
