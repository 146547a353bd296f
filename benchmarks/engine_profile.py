"""Where the engines' time goes, and what the STA's fused ReLU gains, in one process.

Two parts, both on untrained models (``build_model(arch, seed=0)``), uniform [0, 1] noise, the engine's
default batch (1,024 on a CPU), allocator tuned:

    ab        the STA engine on ``conv1`` with the ReLU inside the convolution (as shipped:
              ``wna_helpers.engine.speed.fused_conv_relu``) against the same engine with the fusion turned off
              (the engine then applies the ReLU to the convolution's output, in place), alternating, ``--repeats``
              times each, ``--n`` samples a run; reported: samples/s of every run and the ratio of the sums.
    profile   ``torch.profiler`` (CPU, with Python stacks) over one engine run per model: the STA of ``conv1`` as
              shipped, and the CI engine of ``paper_cnn`` with ``compile=True`` (compiled before the profile);
              each operator's own CPU time is credited to the innermost ``wna_helpers`` function that called it
              (or to the model's forward), reported as shares of the profiled CPU time.

The profiler adds its own overhead, so the shares say where the time goes, not how fast the engine runs.

    .venv/bin/python benchmarks/engine_profile.py                 # about 6 minutes on 2 idle cores
    .venv/bin/python benchmarks/engine_profile.py --archs paper_cnn --repeats 2 --n 50000

Writes ``benchmarks/results/engine_profile.json`` and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections import Counter
from pathlib import Path

from engine_benchmark import RESULTS, _cpu_name, _write_json  # same folder: run as a script

ARCHS = ("paper_cnn", "lenet", "net3", "alexnet_small")


def _label(event: object) -> str:
    """The innermost wna_helpers function (or the model's forward) above a profiler event, and the operator."""
    p = event.cpu_parent  # type: ignore[attr-defined]
    op = re.sub(r" of .* at 0x[0-9a-f]+>", ">", event.name)  # type: ignore[attr-defined]
    while p is not None:
        name = p.name
        if "wna_helpers/" in name and ".py(" in name:
            where = re.sub(r"\(\d+\)", "", name.split("wna_helpers/")[-1])      # engine/speed.py: run
            where = "model forward" if where.startswith("zoo/models.py") else where.replace(".py: ", ".py ")
            return f"{where} :: {op}"
        p = p.cpu_parent
    return f"elsewhere :: {op}"


def shares(run, top: int) -> tuple[list[dict], float]:
    """Profile ``run()``: the ``top`` largest (function, operator) shares of the operators' own CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
        run()
    total, by = 0.0, Counter()
    for e in prof.events():
        own = e.self_cpu_time_total
        if own <= 0 or (".py(" in e.name):   # Python frames: their own time is the interpreter's, not an operator's
            continue
        by[_label(e)] += own
        total += own
    return [{"where": k, "share": v / total} for k, v in by.most_common(top)], total / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--n", type=int, default=100_000, help="samples per A/B run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile-n", type=int, default=50_000)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--out", default=str(RESULTS / "engine_profile.json"))
    args = ap.parse_args(argv)
    import torch
    import wna_helpers as wna
    from wna_helpers.engine import kernel, speed

    speed.tune_allocator()
    fused = kernel.fused_conv_relu
    archs = [a for a in args.archs.split(",") if a]
    meta = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_start": round(os.getloadavg()[0], 2), "n": args.n, "repeats": args.repeats,
            "profile_n": args.profile_n, "argv": sys.argv[1:]}
    ab, profiles = [], []
    t0 = time.perf_counter()
    for arch in archs:
        model = wna.build_model(arch, seed=0).eval()

        def sta(n: int, fuse: bool) -> float:
            kernel.fused_conv_relu = fused if fuse else (lambda module: None)
            try:
                t = time.perf_counter()
                wna.spike_triggered_average(model, "conv1", n, noise=wna.Uniform(), progress=False)
                return n / (time.perf_counter() - t)
            finally:
                kernel.fused_conv_relu = fused
        sta(4096, True), sta(4096, False)   # warm-up
        rates: dict[str, list[float]] = {"fused": [], "unfused": []}
        for _ in range(args.repeats):
            rates["unfused"].append(sta(args.n, False))
            rates["fused"].append(sta(args.n, True))
        row = {"arch": arch, **rates, "fused_over_unfused": sum(rates["fused"]) / sum(rates["unfused"]),
               "fusion_applies": fused(model.conv1) is not None}
        ab.append(row)
        print(f"{arch:14s} STA fused {[round(v) for v in rates['fused']]} unfused {[round(v) for v in rates['unfused']]}"
              f" -> {row['fused_over_unfused']:.3f}", flush=True)
        top, cpu = shares(lambda: sta(args.profile_n, True), args.top)
        profiles.append({"what": f"STA {arch} conv1", "cpu_seconds": cpu, "top": top})
    if "paper_cnn" in archs:
        model = wna.build_model("paper_cnn", seed=0).eval()
        ci = lambda n: wna.classification_images(model, n, noise=wna.Uniform(), progress=False, compile=True)  # noqa: E731
        ci(4096)   # compiled here, outside the profile
        top, cpu = shares(lambda: ci(2 * args.profile_n), args.top)
        profiles.append({"what": "CI paper_cnn compile=True", "cpu_seconds": cpu, "top": top})
    meta.update(wall_seconds=time.perf_counter() - t0, load_end=round(os.getloadavg()[0], 2))
    lines = [f"engine_profile: {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, {meta['date']}, load "
             f"average {meta['load_start']} -> {meta['load_end']}", "",
             f"STA engine on `conv1`, {args.n:,} samples a run, alternating, samples/s:", "",
             "| model | fused ReLU (as shipped) | ReLU after the convolution | fused / unfused |", "|---|---|---|---:|"]
    lines += [f"| `{r['arch']}` | {', '.join(f'{v:,.0f}' for v in r['fused'])} | "
              f"{', '.join(f'{v:,.0f}' for v in r['unfused'])} | {r['fused_over_unfused']:.2f} |" for r in ab]
    for p in profiles:
        lines += ["", f"{p['what']}, {args.profile_n * (2 if p['what'].startswith('CI') else 1):,} samples, "
                      f"{p['cpu_seconds']:.2f} s of operator CPU time under the profiler:", "",
                  "| where :: operator | share |", "|---|---:|"]
        lines += [f"| {t['where']} | {100 * t['share']:.1f} % |" for t in p["top"]]
    text = "\n".join(lines)
    print("\n" + text)
    _write_json(Path(args.out), {"meta": meta, "ab": ab, "profiles": profiles, "markdown": text})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
