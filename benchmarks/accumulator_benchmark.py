"""What the CI engine's accumulators cost per sample inside real runs, and what the class sums' ``index_add_`` saves.

The CI engine runs the model, then per chunk piece :class:`~wna_helpers.methods.ci.CIAccumulator` (the float64
per-class sums and sums of squares) and per chunk :class:`~wna_helpers.methods.ci_stats.CIStatsAccumulator` (the
permutation nulls, odd-chunk sums and logit images: one float32 matrix product per chunk). This script wraps the
two methods with timers and runs ``classification_images(model, n, compile=True)`` (compiled in a warm-up, outside
the timing) two ways, alternating, ``--repeats`` times each, in one process:

    product    the class sums as the engine took them before 2026-12-03: a float64 one-hot matrix product
               ``onehot (K, B) @ x (B, D)`` for the sums and another for the squares
    shipped    as shipped: on a CPU each sample's row added to its class's row (``index_add_``, float64)

Reported per model: microseconds a sample of the whole run, of the class sums and of the per-chunk statistics,
and the largest difference between the two ways' class sums (both float64: 0 expected, any order of adding 0s).
Then, alone, the statistics' matrix product of one chunk (its shape with the default 32 permutations and 10
classes: 308 x 4,096 by 4,096 x 784, float32), median of 20 calls, in microseconds a sample and GFLOP/s.

    .venv/bin/python benchmarks/accumulator_benchmark.py               # about 3 minutes on 2 idle cores
    .venv/bin/python benchmarks/accumulator_benchmark.py --archs lenet --n 20000 --repeats 1

Writes ``benchmarks/results/accumulator_benchmark.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from engine_benchmark import RESULTS, _cpu_name, _write_json  # same folder: run as a script

WAYS = ("product", "shipped")


def product_update(self, x, logits, taps, labels) -> None:  # noqa: ANN001
    """``CIAccumulator.update`` before 2026-12-03: the class sums as float64 one-hot matrix products."""
    import torch

    k = len(self.acc["counts"])
    onehot = torch.nn.functional.one_hot(logits.argmax(1), k).T.double()  # (K, B)
    xd = x.reshape(len(x), -1).double()
    self.acc["sums"].addmm_(onehot, xd)
    self.acc["sumsq"].addmm_(onehot, xd.square())
    self.acc["counts"] += onehot.sum(1).long()


def measure(arch: str, n: int, repeats: int) -> dict:
    """Both ways on one untrained ``arch``, alternating; seconds of each part, summed over the repeats."""
    import torch
    import wna_helpers as wna
    from wna_helpers.methods import ci, ci_stats

    shipped_update, end_chunk = ci.CIAccumulator.update, ci_stats.CIStatsAccumulator.end_chunk
    clock = {"sums": 0.0, "stats": 0.0}

    def timed_update(f):  # noqa: ANN001, ANN202
        def update(self, *args) -> None:  # noqa: ANN001
            t = time.perf_counter()
            f(self, *args)
            clock["sums"] += time.perf_counter() - t
        return update

    def timed_end_chunk(self, chunk) -> None:  # noqa: ANN001
        t = time.perf_counter()
        end_chunk(self, chunk)
        clock["stats"] += time.perf_counter() - t

    model = wna.build_model(arch, seed=0).eval()
    totals = {w: {"run": 0.0, "sums": 0.0, "stats": 0.0, "samples": 0} for w in WAYS}
    sums: dict[str, torch.Tensor] = {}
    wna.classification_images(model, 8192, noise=wna.Uniform(), progress=False, compile=True)  # compiles here
    ci_stats.CIStatsAccumulator.end_chunk = timed_end_chunk
    try:
        for _ in range(repeats):
            for way in WAYS:
                ci.CIAccumulator.update = timed_update(product_update if way == "product" else shipped_update)
                clock.update(sums=0.0, stats=0.0)
                t = time.perf_counter()
                res = wna.classification_images(model, n, noise=wna.Uniform(), progress=False, compile=True)
                tot = totals[way]
                tot["run"] += time.perf_counter() - t
                tot["sums"] += clock["sums"]
                tot["stats"] += clock["stats"]
                tot["samples"] += n
                sums[way] = res.sums
    finally:
        ci.CIAccumulator.update, ci_stats.CIStatsAccumulator.end_chunk = shipped_update, end_chunk
    row: dict = {"arch": arch, "n": n, "repeats": repeats,
                 "max_abs_diff_sums": float((sums["product"] - sums["shipped"]).abs().max())}
    for way, tot in totals.items():
        for part in ("run", "sums", "stats"):
            row[f"{way}_{part}_us"] = 1e6 * tot[part] / tot["samples"]
    return row


def stats_product(chunk: int = 4096, rows: int = 308, d: int = 784) -> dict:
    """The per-chunk statistics' float32 matrix product alone: median seconds of 20 calls, per sample and GFLOP/s."""
    import statistics

    import torch

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(rows, chunk, generator=g), torch.rand(chunk, d, generator=g) - 0.5
    a @ b
    times = []
    for _ in range(20):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    return {"rows": rows, "chunk": chunk, "d": d, "us_per_sample": 1e6 * sec / chunk,
            "gflops": 2 * rows * chunk * d / sec / 1e9}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="paper_cnn,lenet")
    ap.add_argument("--n", type=int, default=100_000, help="samples per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "accumulator_benchmark.json"))
    args = ap.parse_args(argv)
    import torch
    from wna_helpers.engine import speed

    speed.tune_allocator()
    speed.inductor_cache()
    meta = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_start": round(os.getloadavg()[0], 2), "argv": sys.argv[1:]}
    rows = []
    for arch in [a for a in args.archs.split(",") if a]:
        rows.append(measure(arch, args.n, args.repeats))
        print(rows[-1], flush=True)
    product = stats_product()
    meta["load_end"] = round(os.getloadavg()[0], 2)
    lines = [f"accumulator_benchmark: {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, {meta['date']}, "
             f"load average {meta['load_start']} -> {meta['load_end']}; CI engine, compile=True, {args.n:,} samples a "
             f"run, {args.repeats} runs each way, alternating; microseconds a sample:", "",
             "| model | whole run: product / shipped | class sums: product / shipped | per-chunk statistics "
             "| sums' largest difference |", "|---|---:|---:|---:|---:|"]
    lines += [f"| `{r['arch']}` | {r['product_run_us']:.1f} / {r['shipped_run_us']:.1f} | {r['product_sums_us']:.2f} / "
              f"{r['shipped_sums_us']:.2f} | {r['shipped_stats_us']:.2f} | {r['max_abs_diff_sums']:.1e} |" for r in rows]
    lines += ["", f"The statistics' product alone ({product['rows']} x {product['chunk']:,} by {product['chunk']:,} x "
                  f"{product['d']}, float32, median of 20): {product['us_per_sample']:.2f} us a sample, "
                  f"{product['gflops']:.0f} GFLOP/s."]
    text = "\n".join(lines)
    print("\n" + text)
    _write_json(Path(args.out), {"meta": meta, "rows": rows, "stats_product": product, "markdown": text})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
