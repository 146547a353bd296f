"""Does the engine's batch size change classification-image throughput?

For each architecture (untrained, ``build_model(arch, seed=0)``: throughput does not depend on the
weights), time ``classification_images(model, n, batch_size=B)`` for every ``B``, interleaved and
repeated, in one process on one machine, so the batch sizes share the same conditions. Reports
samples/s per repetition and the best of each batch size relative to the best at the engine's CPU
default (1,024). The results do not depend on ``batch_size`` (tested in ``tests/test_engine.py``),
so a profile may pick any batch size; this measures whether a larger one is faster.

    .venv/bin/python benchmarks/batch_size_benchmark.py            # about 8 minutes on 2 idle cores
    .venv/bin/python benchmarks/batch_size_benchmark.py --quick    # seconds

Writes ``benchmarks/results/batch_size_benchmark[.quick].json``.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import wna_helpers as wna
from engine_benchmark import RESULTS, _cpu_name, _write_json  # same folder: run as a script

# samples per timed run: about 10 s each for the default architectures on 2 CPU cores
DEFAULT_N = {"paper_cnn": 40_960, "lenet": 40_960, "net3": 16_384, "alexnet_small": 8_192, "mlp": 81_920}


def measure(archs: list[str], batches: list[int], reps: int, scale: float, device: torch.device,
            seed: int) -> list[dict[str, object]]:
    """Samples/s of ``classification_images`` for every (arch, batch), ``reps`` interleaved runs each."""
    rows = []
    for arch in archs:
        n = max(max(batches), int(DEFAULT_N.get(arch, 40_960) * scale))
        model = wna.build_model(arch, seed=seed).to(device).eval()
        wna.classification_images(model, min(batches), batch_size=min(batches), progress=False)  # warm-up
        rates: dict[int, list[float]] = {b: [] for b in batches}
        for _ in range(reps):
            for b in batches:
                t = time.perf_counter()
                wna.classification_images(model, n, batch_size=b, seed=seed, progress=False)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                rates[b].append(n / (time.perf_counter() - t))
        base = max(rates[batches[0]])
        for b in batches:
            rows.append({"arch": arch, "n": n, "batch_size": b, "samples_per_s": rates[b],
                         "best_vs_first_batch": max(rates[b]) / base})
            print(f"{arch:14s} B={b:6d}  samples/s " + "  ".join(f"{r:9,.0f}" for r in rates[b])
                  + f"   best / best at B={batches[0]}: {max(rates[b]) / base:.2f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default=",".join(DEFAULT_N), help="comma-separated architectures")
    ap.add_argument("--batch-sizes", default="1024,2048,4096,8192", help="comma-separated; the first is the baseline")
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions per batch size")
    ap.add_argument("--device", default=None, help="default: wna_helpers.default_device()")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="1/16 of the samples, two batch sizes, one repetition")
    args = ap.parse_args(argv)

    archs = [a for a in args.archs.split(",") if a]
    unknown = sorted(set(archs) - set(wna.model_names()))
    if unknown:
        raise SystemExit(f"unknown architecture(s) {unknown}; valid: {wna.model_names()}")
    try:
        batches = [int(b) for b in args.batch_sizes.split(",") if b]
    except ValueError:
        raise SystemExit(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    if not batches or min(batches) < 1 or args.reps < 1:
        raise SystemExit("need at least one batch size >= 1 and --reps >= 1")
    scale, reps = (1 / 16, 1) if args.quick else (1.0, args.reps)
    if args.quick:
        batches = batches[:2]
    device = torch.device(args.device) if args.device else wna.default_device()

    load = os.getloadavg()[0]
    rows = measure(archs, batches, reps, scale, device, args.seed)
    out = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu": _cpu_name(), "load_average_start": load,
           "load_average_end": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path = RESULTS / f"batch_size_benchmark{'.quick' if args.quick else ''}.json"
    _write_json(path, out)  # atomic: no half-written results
    print(f"load average {load:.2f} -> {out['load_average_end']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
