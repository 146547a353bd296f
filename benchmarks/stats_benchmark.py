"""What the statistics of issue 11 cost: the CI stream's null, split halves and logit images, and
spike-triggered covariance against the STA.

In one process, with interleaved repeats (the median is reported), on ``paper_cnn`` (untrained,
``build_model("paper_cnn", seed=0)``; speed does not depend on the weights), uniform noise:

* ``ci_plain``: the engine with the class sums alone (what ``classification_images`` computed before);
* ``ci_no_null``: ``classification_images(..., null_permutations=0)`` (split halves and logit images);
* ``ci_stats``: ``classification_images(...)`` as shipped (``null_permutations=32`` as well);
* ``sta``: ``spike_triggered_average(model, "conv1", n)``;
* ``stc``: ``spike_triggered_covariance(model, "conv1", n)`` (with its null shifts; every third
  position), ``stc_no_null`` (``null_shifts=0``) and ``stc_every_position`` (``position_stride=1``).

Targets (issue 11): ``ci_stats / ci_plain <= 1.15`` in time, ``stc / sta <= 2``.

    .venv/bin/python benchmarks/stats_benchmark.py            # n = 200,000 (CI), 100,000 (STA); a few minutes
    .venv/bin/python benchmarks/stats_benchmark.py --quick    # n = 40,960 / 20,480

Writes ``benchmarks/results/stats_benchmark.json`` (``stats_benchmark.quick.json`` with ``--quick``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

import wna_helpers as wna
from wna_helpers.methods.ci import CIAccumulator
from wna_helpers.engine.kernel import run_engine

OUT = Path(__file__).resolve().parent / "results"


def kinds(model, n_ci: int, n_sta: int) -> dict:
    noise = wna.Uniform()
    kw = dict(progress=False)
    out = {
        "ci_plain": (n_ci, lambda: run_engine(model, noise, n_ci, [CIAccumulator()], input_shape=(1, 28, 28), **kw)),
        "ci_no_null": (n_ci, lambda: wna.classification_images(model, n_ci, noise=noise, null_permutations=0, **kw)),
        "ci_stats": (n_ci, lambda: wna.classification_images(model, n_ci, noise=noise, **kw)),
        "sta": (n_sta, lambda: wna.spike_triggered_average(model, "conv1", n_sta, noise=noise, **kw)),
    }
    stc = getattr(wna, "spike_triggered_covariance", None)
    if stc is not None:
        out["stc"] = (n_sta, lambda: stc(model, "conv1", n_sta, noise=noise, **kw))
        out["stc_no_null"] = (n_sta, lambda: stc(model, "conv1", n_sta, noise=noise, null_shifts=0, **kw))
        out["stc_every_position"] = (n_sta, lambda: stc(model, "conv1", n_sta, noise=noise, position_stride=1, **kw))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n_ci, n_sta = (40_960, 20_480) if args.quick else (200_000, 100_000)
    torch.manual_seed(0)
    model = wna.build_model("paper_cnn", seed=0)
    todo = kinds(model, n_ci, n_sta)
    todo["ci_plain"][1]()                    # warm-up: allocator, layouts, first-call costs
    times: dict[str, list[float]] = {k: [] for k in todo}
    load0 = os.getloadavg()[0]
    for rep in range(args.repeats):
        for name, (n, fn) in todo.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            print(f"repeat {rep}: {name:12s} {times[name][-1]:7.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [{"kind": k, "n": todo[k][0], "seconds": med[k], "samples_per_s": todo[k][0] / med[k],
             "all_seconds": times[k]} for k in todo]
    ratios = {"ci_stats/ci_plain": med["ci_stats"] / med["ci_plain"],
              "ci_no_null/ci_plain": med["ci_no_null"] / med["ci_plain"]}
    if "stc" in med:
        ratios["stc/sta"] = med["stc"] / med["sta"]
        ratios["stc_no_null/sta"] = med["stc_no_null"] / med["sta"]
        ratios["stc_every_position/sta"] = med["stc_every_position"] / med["sta"]
    data = {"rows": rows, "ratios": ratios, "targets": {"ci_stats/ci_plain": 1.15, "stc/sta": 2.0},
            "repeats": args.repeats, "quick": args.quick, "model": "paper_cnn", "noise": "uniform",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "load_start": load0, "load_end": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d")}
    OUT.mkdir(exist_ok=True)
    path = OUT / ("stats_benchmark.quick.json" if args.quick else "stats_benchmark.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    for r in rows:
        print(f"{r['kind']:12s} n={r['n']:>8d} {r['seconds']:7.2f} s {r['samples_per_s']:10.0f} samples/s")
    for k, v in ratios.items():
        print(f"{k:20s} {v:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
