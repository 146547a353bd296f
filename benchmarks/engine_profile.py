"""Where the engines' time goes, and what the STA's fused ReLU gains, in one process.

Two parts, both on untrained models (``build_model(arch, seed=0)``), uniform [0, 1] noise, the engine's
default batch (1,024 on a CPU), allocator tuned:

    ab        the STA engine on ``conv1`` with the ReLU inside the convolution (as shipped:
              ``wna_helpers.engine.speed.fused_conv_relu``) against the same engine with the fusion turned off
              (the engine then applies the ReLU to the convolution's output, in place), alternating, ``--repeats``
              times each, ``--n`` samples a run; reported: samples/s of every run and the ratio of the sums.
    micro     ``conv1`` alone on one channels-last batch of 1,024, then its ReLU into a new buffer, and fused (median
              ms); the channel sums of one block of 128 samples of its output as a batched matrix-vector product
              (the STA's old way) and as ``act.sum((2, 3))`` (now), median ms and relative error against float64.
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
    events = prof.events()
    # only the thread that ran the operators: a lock another thread waited on (46 % of the compiled CI profile's
    # time on 2026-12-05 10:29, none on the main thread) is not the run's time
    main = Counter(e.thread for e in events if e.name.startswith("aten::")).most_common(1)[0][0]
    total, by = 0.0, Counter()
    for e in events:
        own = e.self_cpu_time_total
        if own <= 0 or (".py(" in e.name) or e.thread != main:  # Python frames: the interpreter's time, not an op's
            continue
        by[_label(e)] += own
        total += own
    return [{"where": k, "share": v / total} for k, v in by.most_common(top)], total / 1e6


def _ms(f, calls: int = 20) -> float:
    """Median milliseconds of one call of ``f`` over ``calls`` calls, after one call outside the timing."""
    f()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return 1e3 * sorted(times)[len(times) // 2]


def micro(model: object, batch: int, block: int) -> dict:
    """``conv1`` of ``model`` on one channels-last batch of uniform noise: alone, then its ReLU into a new buffer,
    and fused (ms); the channel sums of one block of its ReLU'd output the way the STA took them before
    (a batched matrix-vector product per sample) and now (``act.sum((2, 3))``), ms and relative error against
    float64."""
    import torch
    from wna_helpers.engine.speed import fused_conv_relu
    from wna_helpers.methods.sta import channel_sums

    conv = model.conv1.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
    x = torch.rand(batch, conv.in_channels, 28, 28, generator=torch.Generator().manual_seed(0))
    x = x.to(memory_format=torch.channels_last)
    fused = fused_conv_relu(conv)
    out: dict = {}
    with torch.inference_mode():
        out["conv_ms"] = _ms(lambda: conv(x))
        out["conv_then_relu_ms"] = _ms(lambda: torch.relu(conv(x)))
        if fused is not None:
            out["fused_ms"] = _ms(lambda: fused(x))
        act = torch.relu(conv(x[:block]))
        want = act.double().sum((0, 2, 3))
        b, k, h, w = act.shape

        def matvec() -> torch.Tensor:
            rows = act.permute(0, 2, 3, 1).reshape(b, h * w, k)
            return (act.new_ones(1, h * w) @ rows).squeeze(1).double().sum(0)
        for name, f in (("matvec", matvec), ("sum", lambda: channel_sums(act))):
            out[f"sums_{name}_ms"] = _ms(f, 50)
            out[f"sums_{name}_relerr"] = float(((f() - want).abs() / want.abs().clamp_min(1e-30)).max())
    out["channels"] = k
    return out


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
        row["micro"] = micro(wna.build_model(arch, seed=0).eval(), 1024, 128)
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
    lines += ["", "`conv1` on one channels-last batch of 1,024 (median ms of 20 calls), and the channel sums of one block of 128 "
              "samples of its ReLU'd output (median ms of 50 calls; relative error against float64):", "",
              "| model | channels | conv | conv, then ReLU | fused | sums: matrix-vector | sums: `act.sum((2, 3))` | "
              "error: matrix-vector | error: sum |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| `{r['arch']}` | {m['channels']} | {m['conv_ms']:.2f} | {m['conv_then_relu_ms']:.2f} | "
              f"{m.get('fused_ms', float('nan')):.2f} | {m['sums_matvec_ms']:.3f} | {m['sums_sum_ms']:.3f} | "
              f"{m['sums_matvec_relerr']:.1e} | {m['sums_sum_relerr']:.1e} |" for r in ab for m in [r["micro"]]]
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
