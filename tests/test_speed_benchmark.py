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
