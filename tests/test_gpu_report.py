"""The GPU benchmark's verdict rule and its report (wna_helpers.book.gpu_report), and the GPU-safe class sums."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from wna_helpers.book import gpu_report
from wna_helpers.methods.ci import count_by_class
from wna_helpers.methods.ci_stats import class_indicators, draw_permutations

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu_benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_verdict_rule_known_answers():
    v = _bench().verdict
    ref = [500_000, 300_000, 200_000, 0]          # n = 10^6: standard errors 500, 458, 400, 0
    ok = v(ref, [500_100, 299_950, 199_950, 0], [0.9995, 0.9999, 0.9991, None])
    assert ok["agrees"] and ok["counts_within_se"] and ok["classes_judged"] == 3
    assert ok["standard_errors"][:3] == [500.0, 458.3, 400.0]
    moved = v(ref, [500_600, 299_400, 200_000, 0], [0.9999, 0.9999, 0.9999, None])   # 600 > 500
    assert not moved["agrees"] and not moved["counts_within_se"] and moved["moved"][:2] == [600, 600]
    blurred = v(ref, ref, [0.9989, 0.9999, 0.9999, None])                           # one image below 0.999
    assert not blurred["agrees"] and blurred["counts_within_se"]
    # a class that took no sample in float32 but some in bf16 moved beyond its (zero) standard error
    assert not v(ref, [500_000, 300_000, 199_999, 1], [1.0, 1.0, 1.0, None])["agrees"]
    # no class large enough to judge: undefined, not agreement
    small = v([5_000, 5_000], [5_000, 5_000], [1.0, 1.0])
    assert small["min_corr_classes_1e4"] is None and not small["agrees"]


def _data(rate_1e8: float, peak_1e8: float) -> dict:
    return {"meta": {"date": "2026-12-04 15:48"},
            "sections": {"env": {"gpu": "Test GPU", "torch": "2.x"},
                         "forward": {"rows": {"fp32_contiguous": {"samples_per_s": 4e6},
                                              "fp32_cl": {"samples_per_s": 3e6},
                                              "bf16_contiguous": {"samples_per_s": 5e6}}},
                         "compiled": {"rows": {"forward_fp32_compiled": {"samples_per_s": 5e6}}},
                         "ci": {"rows": {"shipped_1000000": {"samples_per_s": 2e6, "cuda_peak_mb": 100.0},
                                         "shipped_100000000": {"samples_per_s": rate_1e8, "cuda_peak_mb": peak_1e8},
                                         "bf16_100000000": {"samples_per_s": 4.5e6}}}}}


def test_gpu_summary_ratios_and_targets():
    text = gpu_report.gpu_summary(_data(4.5e6, 110.0))
    row = next(ln for ln in text.splitlines() if ln.startswith("| 100,000,000"))
    # float32 / fastest (the compiled 5e6), / eager (the better layout, 4e6), bf16 / bf16 forward (5e6), peak
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    assert cells == ["100,000,000", "4,500,000", "4,500,000", "0.90", "1.12", "0.90", "110"]
    assert "at >= 10,000,000 a second: 4,500,000 a second, missed" in text
    assert "0.8 x the fastest forward pass alone: 0.90, met" in text and "grew by 10 MB" in text
    fast = gpu_report.gpu_summary(_data(1.2e7, 100.0))
    assert "1.2e7" not in fast and "12,000,000 a second, met" in fast and "grew by 0 MB" in fast


def test_agreement_summary_reports_the_worst_class_and_the_verdict():
    agree = {"trained_mnist": {"flip_share_bf16": 2.1e-4, "flip_share_tf32": 0.0,
                               "bf16": {"moved": [5, 1386, 29], "standard_errors": [8.7, 274.7, 31.1],
                                        "min_corr_classes_1e4": 0.99995, "agrees": False},
                               "tf32": {"moved": [0, 10, 4], "standard_errors": [8.7, 274.7, 31.1],
                                        "min_corr_classes_1e4": 1.0, "agrees": True}}}
    text = gpu_report.agreement_summary({"sections": {"agree": agree}})
    bf = next(ln for ln in text.splitlines() if "| bf16 |" in ln)
    assert "0.021%" in bf and "1,386 / 275" in bf and bf.rstrip(" |").endswith("differs")
    tf = next(ln for ln in text.splitlines() if "| tf32 |" in ln)
    assert tf.rstrip(" |").endswith("agrees") and "trained on MNIST" in tf
    assert "not measured" in gpu_report.agreement_summary(None)


def test_load_gpu_benchmark(tmp_path):
    data, first, note = gpu_report.load_gpu_benchmark(str(tmp_path / "missing.json"))
    assert data is None and first is None and "No GPU benchmark results" in note
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    assert "has no `sections`" in gpu_report.load_gpu_benchmark(str(bad))[2]
    good = tmp_path / "gpu_benchmark.json"
    good.write_text(json.dumps(_data(3e6, 100.0)))
    data, first, note = gpu_report.load_gpu_benchmark(str(good))
    assert data is not None and first is None and "Test GPU" in note and "2026-12-04 15:48" in note


def test_class_indicators_and_counts_equal_one_hot_and_bincount():
    classes = torch.tensor([3, 0, 3, 9, 1, 3])
    assert torch.equal(class_indicators(classes, 10, torch.float64),
                       torch.nn.functional.one_hot(classes, 10).T.double())
    counts = torch.zeros(10, dtype=torch.int64)
    count_by_class(counts, classes)
    assert counts.tolist() == [1, 1, 0, 3, 0, 0, 0, 0, 0, 1]


def test_cpu_permutations_are_the_randperm_draws_as_before():
    """On a CPU the null permutations are one randperm each, as before the GPU's argsort: the same nulls per seed."""
    got = draw_permutations(4, 50, torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    want = torch.stack([torch.randperm(50, generator=gen) for _ in range(4)])
    assert torch.equal(got, want)
    assert all(sorted(row.tolist()) == list(range(50)) for row in got)


def test_gpu_blocks_take_the_agreement_from_the_earlier_run_only_when_the_latest_lacks_it(tmp_path):
    agree = {"trained_mnist": {"flip_share_bf16": 1e-3, "bf16": {"moved": [9], "standard_errors": [3.0],
                                                                 "min_corr_classes_1e4": 0.99, "agrees": False}}}
    latest = tmp_path / "gpu_benchmark.json"
    latest.write_text(json.dumps(_data(3e6, 100.0)))
    assert gpu_report.gpu_blocks(str(latest))[2] == "_The bf16 agreement was not measured._"
    (tmp_path / "gpu_benchmark.first.json").write_text(json.dumps({"meta": {"date": "2026-12-04 15:36"},
                                                                  "sections": {"agree": agree}}))
    note, summary, table = gpu_report.gpu_blocks(str(latest))
    assert "the bf16 agreement from the earlier run of 2026-12-04 15:36" in note and "9 / 3" in table
    both = _data(3e6, 100.0)
    both["sections"]["agree"] = {"untrained": {"flip_share_tf32": 0.0, "tf32": {
        "moved": [0], "standard_errors": [3.0], "min_corr_classes_1e4": 1.0, "agrees": True}}}
    latest.write_text(json.dumps(both))
    note, _, table = gpu_report.gpu_blocks(str(latest))
    assert "earlier run" not in note and "| untrained | tf32 |" in table and "9 / 3" not in table
    assert gpu_report.gpu_blocks(str(tmp_path / "none.json"))[0].startswith("**No GPU benchmark results")


def _build_run(models_rc, chapters):
    return {"profile": "full", "host": {"gpu": "Test GPU", "torch": "2.x", "cpu_count": 16},
            "models": None if models_rc is None else
            {"seconds": 200.0, "rc": models_rc, "stopped": models_rc is None,
             "jobs": [{"label": "a", "seconds": 17, "cached": False}, {"label": "b", "seconds": 3, "cached": False}]},
            "chapters": chapters}


def _ch(name, seconds, status, slowest=None):
    return {"file": f"book/{name}.ipynb", "seconds": seconds, "status": status, "error": None,
            "slowest_cell_seconds": slowest}


def test_build_summary_counts_only_finished_phases():
    run = _build_run(0, [_ch("01_a", 10.0, "ok", 4.0), _ch("02_b", 30.0, "stopped", 2.0), _ch("03_c", None, "not run")])
    text = gpu_report.build_summary(run)
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in text.splitlines() if ln.startswith("| ")]
    assert rows[1:] == [["make models (2 models and fits)", "200", "ok", "17"], ["01_a", "10", "ok", "4"],
                        ["02_b", "30", "stopped", "–"]]          # a stopped phase's slowest step is not claimed
    assert "finished took 210 s, the models 200 s of it" in text   # 200 + 10, not the stopped 30
    assert "Not finished: 02_b" in text and "no whole build's time" in text and "03_c" not in text


def test_build_summary_joins_runs_on_one_cache_and_a_whole_build_has_no_caveat():
    first = _build_run(0, [_ch("01_a", 10.0, "ok", 4.0), _ch("02_b", 30.0, "stopped")])
    second = _build_run(None, [_ch("02_b", 50.0, "ok", 40.0)])
    text = gpu_report.build_summary({"note": "two calls", "runs": [first, second]})
    assert "| 02_b | 50 | ok | 40 |" in text and "| 02_b | 30 |" not in text   # the later run's row wins
    assert "finished took 260 s" in text and "Not finished" not in text and text.endswith("_two calls_")
    failed = gpu_report.build_summary(_build_run(1, []))
    assert "| make models (2 models and fits) | 200 | exit 1 | – |" in failed and "the models" not in failed.split(
        "finished")[1]


def test_gpu_blocks_add_the_build_beside_the_benchmark(tmp_path):
    (tmp_path / "gpu_benchmark.json").write_text(json.dumps(_data(4.5e6, 110.0)))
    assert len(gpu_report.gpu_blocks(str(tmp_path / "gpu_benchmark.json"))) == 3
    (tmp_path / "build_gpu.json").write_text(json.dumps(_build_run(0, [_ch("01_a", 10.0, "ok", 4.0)])))
    blocks = gpu_report.gpu_blocks(str(tmp_path / "gpu_benchmark.json"))
    assert len(blocks) == 4 and "| 01_a | 10 | ok | 4 |" in blocks[3]
    (tmp_path / "build_gpu.json").write_text("{not json")
    assert "cannot be read" in gpu_report.gpu_blocks(str(tmp_path / "gpu_benchmark.json"))[3]
