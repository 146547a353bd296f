"""Compilation across runs: what ``compile=None`` gains when a process probes many networks of one architecture.

A study such as chapter 9's trojan detection runs the CI engine on many networks of one architecture, each for
10^5 samples, in one process. Each run alone is under ``COMPILE_MIN_SAMPLES`` (5 x 10^5), so it ran eagerly;
``should_compile`` now also weighs what the process compiled before (dynamo reuses one graph for every network
of a class, so compiling again costs about 0.07 s) and the samples that already went eagerly through that
forward pass. This script runs the same sequence of runs two ways, each in a fresh process:

    history    as shipped: ``compile=None`` with the process' compile history
    fresh      ``compile=None``, the history forgotten before every run (each run decides alone, as before)

``--models`` networks (``build_model(arch, seed=i)``, untrained), ``--n`` samples of uniform noise each, the two
ways alternating, ``--repeats`` times each. Reported: seconds of the whole sequence, the runs compiled, and how
far the compiled runs' class counts lie from the eager ones of the same networks (float32 rounding only).

A second part asks which architectures gain at all (``--archs``): per architecture, in its own process, the
first compile (``compile=True`` on 1,024 samples, persistent cache warm), then the CI engine on ``--arch-n``
samples with ``compile=False`` and ``compile=True``, alternating, ``--repeats`` times each.

    .venv/bin/python benchmarks/compile_benchmark.py                  # about 12 minutes on 2 idle cores
    .venv/bin/python benchmarks/compile_benchmark.py --models 4 --n 20000 --repeats 1 --archs logreg --arch-n 20000

Writes ``benchmarks/results/compile_benchmark.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from engine_benchmark import RESULTS, _cpu_name, _write_json  # same folder: run as a script

WAYS = ("history", "fresh")


def worker(way: str, arch: str, models: int, n: int) -> dict:
    """One sequence of runs in this process; the counts of every run."""
    import torch
    import wna_helpers as wna
    from wna_helpers.engine import speed

    speed.inductor_cache()
    nets = [wna.build_model(arch, seed=i).eval() for i in range(models)]
    runs, counts = [], []
    t0 = time.perf_counter()
    for net in nets:
        if way == "fresh":
            speed.forget_compile_history()
        before = speed.compile_history()
        t = time.perf_counter()
        ci = wna.classification_images(net, n, noise=wna.Uniform(), progress=False)
        after = speed.compile_history()
        runs.append({"seconds": time.perf_counter() - t,
                     "compiled": (after["eager_samples"] == before["eager_samples"]
                                  and after["failed"] == before["failed"])})
        counts.append(ci.counts.tolist())
    return {"way": way, "seconds": time.perf_counter() - t0, "runs": runs, "counts": counts,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def gain_worker(arch: str, n: int, repeats: int) -> dict:
    """Eager against compiled CI engine runs of one untrained network, alternating, in this process."""
    import torch
    import wna_helpers as wna
    from wna_helpers.engine import speed

    speed.inductor_cache()
    net = wna.build_model(arch, seed=0).eval()

    def run(m: int, compile: bool) -> float:
        t = time.perf_counter()
        wna.classification_images(net, m, noise=wna.Uniform(), progress=False, compile=compile)
        return time.perf_counter() - t
    first = run(1024, True)
    secs: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        secs["eager"].append(run(n, False))
        secs["compiled"].append(run(n, True))
    return {"arch": arch, "n": n, "first_compile_seconds": first, **secs,
            "eager_over_compiled": min(secs["eager"]) / min(secs["compiled"]), "torch": torch.__version__,
            "convolutional": any(isinstance(mod, torch.nn.Conv2d) for mod in net.modules())}


def spawn(way: str, arch: str, models: int, n: int, repeats: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--worker", way, "--arch", arch, "--models", str(models), "--n", str(n),
           "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="paper_cnn")
    ap.add_argument("--models", type=int, default=16, help="networks of the architecture, one run each")
    ap.add_argument("--n", type=int, default=100_000, help="samples a run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--archs", default="paper_cnn,lenet,mlp,logreg,gru", help="architectures of the second part")
    ap.add_argument("--arch-n", type=int, default=100_000, help="samples a run of the second part")
    ap.add_argument("--worker", choices=WAYS + ("gain",), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "compile_benchmark.json"))
    args = ap.parse_args(argv)
    if args.worker == "gain":
        print(json.dumps(gain_worker(args.arch, args.n, args.repeats)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.arch, args.models, args.n)))
        return 0
    meta = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"), "load_start": round(os.getloadavg()[0], 2),
            "arch": args.arch, "models": args.models, "n": args.n, "repeats": args.repeats, "argv": sys.argv[1:]}
    spawn("history", args.arch, 1, min(args.n, 4096))   # fills the persistent inductor cache: both ways start warm
    rows: list[dict] = []
    for _ in range(args.repeats):
        for way in WAYS:
            rows.append(spawn(way, args.arch, args.models, args.n))
            print(f"{way:8s} {rows[-1]['seconds']:7.1f} s, compiled runs "
                  f"{sum(r['compiled'] for r in rows[-1]['runs'])} of {args.models}", flush=True)
    gains = []
    for arch in [a for a in args.archs.split(",") if a]:
        gains.append(spawn("gain", arch, 1, args.arch_n, args.repeats))
        g = gains[-1]
        print(f"{arch:14s} first compile {g['first_compile_seconds']:.1f} s; eager {g['eager']} compiled "
              f"{g['compiled']} s -> {g['eager_over_compiled']:.2f}", flush=True)
    meta.update(load_end=round(os.getloadavg()[0], 2), torch=rows[0]["torch"], threads=rows[0]["threads"])
    best = {w: min(r["seconds"] for r in rows if r["way"] == w) for w in WAYS}
    hist, fresh = (next(r for r in rows if r["way"] == w) for w in WAYS)
    moved = [sum(abs(a - b) for a, b in zip(ch, cf)) // 2
             for ch, cf, run in zip(hist["counts"], fresh["counts"], hist["runs"])
             if run["compiled"]]
    summary = {"best_seconds": best, "fresh_over_history": best["fresh"] / best["history"],
               "compiled_runs": sum(r["compiled"] for r in hist["runs"]),
               "samples_moved_per_compiled_run_max": max(moved, default=0)}
    _write_json(Path(args.out), {"meta": meta, "rows": rows, "summary": summary, "gains": gains})
    print(f"\ncompile_benchmark: {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, {meta['date']}, load "
          f"{meta['load_start']} -> {meta['load_end']}\n\n"
          f"{args.models} `{args.arch}` networks x {args.n:,} uniform samples, CI engine, each way in its own "
          "process:\n\n"
          "| way | seconds (best of repeats) | runs compiled |\n|---|---:|---:|\n"
          f"| history (as shipped) | {best['history']:.1f} | {summary['compiled_runs']} of {args.models} |\n"
          f"| fresh (each run alone) | {best['fresh']:.1f} | "
          f"{sum(r['compiled'] for r in fresh['runs'])} of {args.models} |\n\n"
          f"fresh / history: {summary['fresh_over_history']:.2f}; the compiled runs' class counts moved by at most "
          f"{summary['samples_moved_per_compiled_run_max']} samples against the eager runs of the same networks\n\n"
          f"Which architectures gain: CI engine, {args.arch_n:,} samples a run, seconds (each of {args.repeats} "
          "runs), in one process per architecture:\n\n"
          "| model | convolutional | first compile s | eager | compiled | eager / compiled (best) |\n"
          "|---|---|---:|---|---|---:|\n" +
          "\n".join(f"| `{g['arch']}` | {'yes' if g['convolutional'] else 'no'} | {g['first_compile_seconds']:.1f} | "
                    f"{', '.join(f'{v:.2f}' for v in g['eager'])} | {', '.join(f'{v:.2f}' for v in g['compiled'])} | "
                    f"{g['eager_over_compiled']:.2f} |" for g in gains))
    return 0


if __name__ == "__main__":
    sys.exit(main())
