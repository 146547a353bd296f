"""Markdown tables and generated prose (report.py) and the engine benchmark's results (perf_report.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import wna_helpers as wna  # noqa: E402
from wna_helpers.book import perf_report, plots, report  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _overview_rows() -> list[dict]:
    return [{"model": "paper_cnn", "dataset": "fashion_mnist", "test_accuracy": 0.7, "noise_entropy_bits": 0.0,
             "top_noise_class": 5, "top_noise_share": 1.0, "ci_template_accuracy": 0.1,
             "mean_template_accuracy": 0.66, "feedback_diagonal": 1, "sta_filter_r": 0.999, "n_noise": 20000},
            {"model": "logreg", "dataset": "fashion_mnist", "test_accuracy": 0.68, "noise_entropy_bits": 3.29,
             "top_noise_class": 1, "top_noise_share": 0.13, "ci_template_accuracy": 0.68,
             "mean_template_accuracy": 0.66, "feedback_diagonal": 10, "sta_filter_r": float("nan"),
             "n_noise": 20000}]


def test_report_does_not_import_matplotlib():
    code = "import sys, wna_helpers.book.report, wna_helpers.book.perf_report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_markdown_table():
    md = report.markdown_table([{"a": 0.5, "b": float("nan"), "c": "x|y"}], {"a": "A", "b": "B", "c": "C"},
                               {"a": ".1%"})
    lines = md.splitlines()
    assert lines[0] == "| A | B | C |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| 50.0% | – | x\\|y |"
    ps = report.markdown_table([{"p": v} for v in (0.0, 0.0004, 0.0005, 0.0123, 1.0, float("nan"))], None,
                               {"p": report.P_VALUE})
    assert [line.strip("| ") for line in ps.splitlines()[2:]] == ["< 0.001", "< 0.001", "0.001", "0.012", "1.000", "–"]


def test_profile_table():
    md = report.profile_table(wna.PROFILES)
    assert md.splitlines()[0] == "| setting | quick | full |" and "`n_noise`" in md


def test_benchmark_helpers(tmp_path):
    data, note = perf_report.load_engine_benchmark(str(tmp_path / "missing.json"))
    assert data is None and "No benchmark results found" in note
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    data, note = perf_report.load_engine_benchmark(str(bad))
    assert data is None and "cannot be read" in note
    good = tmp_path / "engine_benchmark.json"
    good.write_text(json.dumps({
        "meta": {"arch": "paper_cnn", "loadavg_start": [1.0, 1, 1], "loadavg_end": [2.0, 1, 1]},
        "targets": {"ci_engine_over_forward": 0.85},
        "ratios": {"cpu": {"ci_engine_over_forward": 0.9}},
        "measurements": [{"kind": k, "device": "cpu", "n": n, "seconds": 1.0, "samples_per_s": n / 2,
                          "peak_rss_mb": 100 + n / 1000} for k in ("forward", "ci_engine") for n in (1000, 10000)]}))
    data, note = perf_report.load_engine_benchmark(str(good))
    assert data is not None and "load average 1.00 at start and 2.00 at end" in note
    assert perf_report.benchmark_table(data).count("| cpu |") == 4
    assert "| yes |" in perf_report.benchmark_targets(data)
    fig = plots.plot_benchmark(data)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].get_lines()) == 2 and fig.axes[1].get_ylabel() == "peak RSS (MB)"


def test_speed_benchmark_helpers(tmp_path):
    data, note = perf_report.load_speed_benchmark(str(tmp_path / "missing.json"))
    assert data is None and "speed_benchmark.py" in note
    rows = [{"kind": k, "arch": a, "n": 1000, "samples_per_s": v, "user_s": 1.0, "sys_s": 0.0, "peak_rss_mb": 900.0}
            for a in ("paper_cnn", "net3") for k, v in (("forward_eager", 100.0), ("forward_cl", 400.0),
                                                        ("conv_alone", 1000.0), ("conv_alone_cl", 2000.0),
                                                        ("ci_engine", 380.0), ("sta_engine", 500.0))]
    rows.append({"kind": "ci_engine", "arch": "net3", "error": "rc=1: boom"})
    summary = {"paper_cnn": {"fastest_forward": "forward_cl", "ci_engine_over_fastest_forward": 0.95,
                             "sta_over_conv_alone": 0.25, "memory_growth_mb": -0.3,
                             "sta_ceiling_over_conv_alone": 0.5, "sta_over_ceiling": 0.5,
                             "memory_growth_between_mb": 40.0, "memory_repeat_spread_mb": 55.0},
               "net3": {"fastest_forward": "forward_cl", "ci_engine_over_fastest_forward": 0.80,
                        "sta_over_conv_alone": 0.40, "memory_growth_mb": 100.0}}
    good = tmp_path / "speed.json"
    good.write_text(json.dumps({"meta": {"cpu": "CPU X", "threads": 2, "mem_sizes": [1000, 10000]},
                                "targets": {"ci_over_fastest_forward": 0.85, "sta_over_conv_alone": 0.35,
                                            "memory_growth_mb": 64.0}, "rows": rows, "summary": summary}))
    data, note = perf_report.load_speed_benchmark(str(good))
    assert data is not None and "CPU X with 2 threads" in note and "re-measured" not in note
    assert perf_report.speed_table(data).count("| 900 | ? |") == 12   # no date in the file: "?", not a failure
    data["meta"].update(date="2026-12-01 10:00", updates=[{"date": "2026-12-02 11:00"}])
    data["rows"][0]["run"] = "2026-12-02 11:00"
    good.write_text(json.dumps(data))
    data, note = perf_report.load_speed_benchmark(str(good))
    assert "some rows re-measured on 2026-12-02 11:00 (each row" in note
    data["meta"]["updates"][0]["cpu"] = "CPU Y"      # an update on another machine names it
    good.write_text(json.dumps(data))
    assert "re-measured on 2026-12-02 11:00 (CPU Y) (each row" in perf_report.load_speed_benchmark(str(good))[1]
    table = perf_report.speed_table(data)
    assert table.count("| 2026-12-02 11:00 |") == 1 and table.count("| 2026-12-01 10:00 |") == 11
    targets = perf_report.speed_targets(data)
    # the new columns (old window-product STA, training) show "–" where the file has no such ratio
    assert ("| paper_cnn | forward, channels-last | 0.95 (met) | – | – | – | – | 0.25 (missed) | – | – | – | 0.50 | 0.50 "
            "| – | 0 (met) | 40 | 55 |") in targets
    assert ("| net3 | forward, channels-last | 0.80 (missed) | – | – | – | – | 0.40 (met) | – | – | – | – | – | – "
            "| 100 (missed) | – | – |") in targets
    assert "Alternating with `conv1` alone" not in perf_report.speed_summary(data)
    data["summary"]["paper_cnn"]["sta_over_conv_alone_one_process"] = 0.42   # the STA's one-process column
    assert "| paper_cnn | forward, channels-last | 0.95 (met) | – | – | – | – | 0.25 (missed) | 0.42 (met) | – |" in \
        perf_report.speed_targets(data)
    assert "the STA ran at 0.42 x the fastest conv alone of its round" in perf_report.speed_summary(data)
    assert "bare loop" not in perf_report.speed_summary(data)   # a file from before the bare loops: no sentence
    data["summary"]["paper_cnn"].update(sta_bare_over_conv_alone=0.44, sta_over_bare=0.95)   # the STA's limit
    assert "| 0.25 (missed) | 0.42 (met) | 0.44 | – |" in perf_report.speed_targets(data)
    assert ("the STA's own accumulator fed by a plain loop (its noise, the fused convolution and ReLU, the "
            "weight-gradient call, the channel sums; no engine) ran at 0.44 x the fastest conv alone, and the STA at "
            "0.95 x that bare loop") in perf_report.speed_summary(data)
    assert "allows 0.50 x `conv1` alone (above the bare loop: the parts run slower together" in perf_report.speed_summary(data)
    for k in ("sta_bare_over_conv_alone", "sta_over_bare"):
        del data["summary"]["paper_cnn"][k]
    data["summary"]["net3"].update(ci_bare_over_forward=0.83, ci_over_bare=0.97)   # the CI's limit
    assert "| net3 | forward, channels-last | 0.80 (missed) | – | – | – | 0.83 | 0.40 (met) |" in \
        perf_report.speed_targets(data)
    assert ("ran at 0.83 x the compiled forward: the pace of that work itself; the engine ran at 0.97 x the bare "
            "loop") in perf_report.speed_summary(data)
    for k in ("ci_bare_over_forward", "ci_over_bare"):
        del data["summary"]["net3"][k]
    del data["summary"]["paper_cnn"]["sta_over_conv_alone_one_process"]
    assert "Alternating with the compiled forward" not in perf_report.speed_summary(data)
    data["summary"]["net3"].update(forward_compiled_after_over_before=0.97, ci_over_forward_one_process=0.9)
    data["summary"]["paper_cnn"].update(forward_compiled_after_over_before=1.03, ci_over_forward_one_process=0.8)
    assert "| net3 | forward, channels-last | 0.80 (missed) | – | 0.97 | 0.90 (met) | – | 0.40 (met) |" in \
        perf_report.speed_targets(data)
    assert "| paper_cnn | forward, channels-last | 0.95 (met) | – | 1.03 | 0.80 (missed) |" in perf_report.speed_targets(data)
    assert ("right after the long CI run, whose rates differed by a factor of 0.97 to 1.03. Alternating with the compiled "
            "forward in one process, the CI engine with `compile=True` ran at 0.80 to 0.90 x it") in \
        perf_report.speed_summary(data)
    for s in data["summary"].values():
        del s["forward_compiled_after_over_before"], s["ci_over_forward_one_process"]
    assert perf_report.speed_table(data).count("\n") == 2 + 11  # header, rule, the rows without errors
    assert "0.80 to 0.95 x the fastest forward pass" in perf_report.speed_summary(data)
    summary_text = perf_report.speed_summary(data)
    assert "added up, allows 0.50 x `conv1` alone; the STA ran at 0.50 x that ceiling" in summary_text
    assert "the peak memory grew by 0 to 100 MB after the first 1,000" in summary_text   # -0.3 prints as 0, not -0
    assert "peaked 55 MB apart, and the run of 10,000 peaked 40 MB above" in summary_text
    for s in data["summary"].values():   # a run with one process per size: no growth within a run to judge
        s.pop("memory_growth_mb"), s.pop("memory_repeat_spread_mb", None)
    data["summary"]["net3"]["memory_growth_between_mb"] = -0.2
    summary_text = perf_report.speed_summary(data)
    assert "the run of 10,000 samples peaked 0 to 40 MB above the run of 1,000; the growth within one run" in summary_text
    assert "| – | 0 | – |" in perf_report.speed_targets(data)   # -0.2 prints as 0 here too
    data["summary"]["net3"]["ci_engine_over_fastest_forward"] = 0.849   # rounds to the target: the third digit decides
    assert "| net3 | forward, channels-last | 0.849 (missed) |" in perf_report.speed_targets(data)
    del data["meta"]["mem_sizes"]   # an older file without the sizes: the sentence says "?", it does not fail
    assert "the run of ? samples peaked 0 to 40 MB above the run of ?" in perf_report.speed_summary(data)
    fig = plots.plot_speed(data)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["paper_cnn", "net3"]
    assert titled[0].get_xscale() == "log" and len(titled[0].patches) == 6
    # a bar's share is the benchmark's own ratio where the summary has one (net3: 0.849 and 0.40), not 380 / 400 and
    # 500 / 2,000 recomputed from the rows
    labels = [t.get_text() for t in titled[1].texts]
    assert "380 (0.85x)" in labels and "500 (0.40x)" in labels
    del data["summary"]["net3"]
    fig2 = plots.plot_speed(data)
    labels = [t.get_text() for t in fig2.axes[1].texts]
    assert fig2.axes[1].get_title() == "net3" and "380 (0.95x)" in labels and "500 (0.25x)" in labels  # the rows' ratio
    plt.close(fig2)
    plt.close(fig)


def test_overview_markdown_and_describe_biases():
    rows = _overview_rows()
    md = report.overview_markdown(rows)
    assert "| paper_cnn | Fashion-MNIST | 70.0% | 0.00 | Sandal (100%) |" in md and "| – |" in md
    text = report.describe_biases(rows)
    assert "1 of 2 models are strongly biased" in text and "**Sandal**" in text
    assert "(40 % or more of the noise in one class)" in text
    assert "1 of its 10 CIs" in text and "10 of its 10 CIs" in text
    rows[0]["cis"] = 1
    assert "its only CI is given back its own class" in report.describe_biases(rows)
    assert "near chance" in text and "well above chance" in text


def test_describe_biases_thresholds_are_arguments():
    rows = _overview_rows()
    text = report.describe_biases(rows, biased_share=0.1, dominant_share=1.01, well_above=10.0, above=0.5)
    assert "2 of 2 models are strongly biased" in text and "(10 % or more of the noise in one class)" in text
    assert "is biased toward **Sandal** (100% of the noise" in text and "is biased toward **Trouser**" in text
    assert "(above chance, 10%)" in text and "well above" not in text and "near chance" not in text
