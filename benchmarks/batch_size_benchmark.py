"""Does the engine's batch size change classification-image (or STA) throughput?

For each architecture (untrained, ``build_model(arch, seed=0)``: throughput does not depend on the
weights), time ``classification_images(model, n, batch_size=B)`` for every ``B`` (``--method sta``:
``spike_triggered_average(model, "conv1", n, noise=Uniform(), batch_size=B)``, whose pass stops at ``conv1``;
``--method stc``: ``spike_triggered_covariance`` likewise), interleaved and repeated, in one process on one
machine, so the batch sizes share the same conditions. Reports samples/s per repetition and the best of each
batch size relative to the best at the first batch size given. The results do not depend on ``batch_size``
(tested in ``tests/test_engine.py`` and ``tests/test_speed.py``), so a profile may pick any batch size; this
measures which one is faster.

    .venv/bin/python benchmarks/batch_size_benchmark.py            # about 8 minutes on 2 idle cores
    .venv/bin/python benchmarks/batch_size_benchmark.py --quick    # seconds
    .venv/bin/python benchmarks/batch_size_benchmark.py --method sta --archs paper_cnn,lenet,net3,alexnet_small \
        --batch-sizes 1024,512,256,128 --reps 3

Writes ``benchmarks/results/batch_size_benchmark[.sta|.stc][.quick].json``.
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


#: samples per timed STA run (the pass stops at ``conv1``: 4-8 s each on 2 CPU cores), and per STC run (1-2 s)
STA_N, STC_N = 200_000, 30_000


def measure(archs: list[str], batches: list[int], reps: int, scale: float, device: torch.device,
            seed: int, method: str = "ci") -> list[dict[str, object]]:
    """Samples/s of ``classification_images`` (``method="sta"`` or ``"stc"``: the STA or STC of ``conv1`` on uniform
    noise) for every (arch, batch), ``reps`` interleaved runs each."""
    rows = []
    for arch in archs:
        n = max(max(batches), int({"sta": STA_N, "stc": STC_N}.get(method, DEFAULT_N.get(arch, 40_960)) * scale))
        model = wna.build_model(arch, seed=seed).to(device).eval()
        if method == "stc":
            def call(m: int, b: int) -> None:
                wna.spike_triggered_covariance(model, "conv1", m, noise=wna.Uniform(), batch_size=b, seed=seed,
                                               progress=False)
        elif method == "sta":
            def call(m: int, b: int) -> None:
                wna.spike_triggered_average(model, "conv1", m, noise=wna.Uniform(), batch_size=b, seed=seed,
                                            progress=False)
        else:
            def call(m: int, b: int) -> None:
                wna.classification_images(model, m, batch_size=b, seed=seed, progress=False)
        for b in batches:
            call(b, b)  # warm-up, each batch shape once
        rates: dict[int, list[float]] = {b: [] for b in batches}
        for _ in range(reps):
            for b in batches:
                t = time.perf_counter()
                call(n, b)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                rates[b].append(n / (time.perf_counter() - t))
        base = max(rates[batches[0]])
        for b in batches:
            rows.append({"arch": arch, "method": method, "n": n, "batch_size": b, "samples_per_s": rates[b],
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
    ap.add_argument("--method", choices=("ci", "sta", "stc"), default="ci",
                    help="ci: classification_images (default); sta, stc: the STA, the STC of conv1 on uniform noise")
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
    rows = measure(archs, batches, reps, scale, device, args.seed, args.method)
    out = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
           "cpu": _cpu_name(), "load_average_start": load,
           "load_average_end": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M"),
           "method": args.method, "rows": rows}
    tag = ("" if args.method == "ci" else f".{args.method}") + (".quick" if args.quick else "")
    path = RESULTS / f"batch_size_benchmark{tag}.json"
    _write_json(path, out)  # atomic: no half-written results
    print(f"load average {load:.2f} -> {out['load_average_end']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()
