"""Streaming engine vs. the paper's reference algorithm vs. the bare forward pass.

Usage (from the repository root)::

    python benchmarks/engine_benchmark.py --quick          # about a minute on an idle 2-core machine
    python benchmarks/engine_benchmark.py                  # full: n = 1e5, 1e6 (all); 1e7 (engine only)
    python benchmarks/engine_benchmark.py --device cpu,cuda --trained

Model: ``paper_cnn`` (``build_model("paper_cnn", seed=0)``, untrained unless ``--trained``).
For each device, each n and each kind below, the script re-invokes itself in a fresh
subprocess (``--worker KIND N``), so every peak-RSS figure (``ru_maxrss``) belongs to one
measurement alone. Each worker builds the model, warms up once (one batch), then times one
run with ``time.perf_counter``.

Kinds:
    forward        model(x) alone on noise generated before timing (a pool of
                   ``--forward-pool`` batches, cycled), run the way the engine runs it
                   (allocator tuned, channels-last: ``wna_helpers.speed``): the eager limit.
                   ``speed_benchmark.py`` also compares with the compiled forward.
    ci_engine      ``wna_helpers.classification_images(model, n, batch_size=B)``.
    ci_reference   the paper's algorithm: per batch ``torch.randn`` on the host, classify,
                   append every sample's noise to a per-class Python list (a loop over the
                   samples of the batch), stack and average each class at the end.
    sta_engine     ``wna_helpers.spike_triggered_average(model, "conv1", n, batch_size=B)``:
                   20 channels, pooled over the 24x24 positions, plus the centre unit.
    sta_reference  per batch the conv1 activation (ReLU) on host noise, then a per-sample
                   Python loop accumulating activation x 5x5 input patch for the centre unit of
                   all 20 channels (one position).

Reported: samples/s, unit-samples/s for the STAs, peak RSS, and the ratios (engine/forward,
reference memory growth per sample, engine memory flatness, STA engine/reference). Prints
Markdown tables and writes JSON to ``benchmarks/results/engine_benchmark.json`` (atomically;
``engine_benchmark.quick.json`` with ``--quick``).
Threads: torch's default (``torch.get_num_threads()``, recorded).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARCH, LAYER = "paper_cnn", "conv1"
INPUT_SHAPE = (1, 28, 28)
KINDS = ("forward", "ci_engine", "ci_reference", "sta_engine", "sta_reference")
ENGINE_KINDS = ("ci_engine", "sta_engine")
MARK = "@@ENGINE_BENCHMARK_RESULT@@"
FULL_SIZES, FULL_ENGINE_SIZES = (100_000, 1_000_000), (10_000_000,)
QUICK_SIZES, QUICK_ENGINE_SIZES = (10_000, 50_000), ()
RESULTS = Path(__file__).resolve().parent / "results"
FLAT_MB = 64.0  # engine memory counts as flat when its peak RSS grows by at most this much

TARGETS = {"ci_engine_over_forward": 0.85, "sta_engine_over_reference": 100.0}


# --------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------

def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (ru_maxrss: KB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def _load_model(device, trained: bool):
    import wna_helpers as w
    if trained:
        model, _ = w.get_trained_model(ARCH, "mnist", device=device, progress=False)
    else:
        model = w.build_model(ARCH, seed=0)
    return model.to(device).eval()


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Deadline for the loops this script controls (``--max-seconds``); None = no limit."""

    def __init__(self, max_seconds: float | None) -> None:
        self.end = None if max_seconds is None else time.perf_counter() + max_seconds

    def over(self) -> bool:
        return self.end is not None and time.perf_counter() > self.end


def run_forward(model, n, B, device, seed, clock, pool_batches):
    """model(x) alone; the noise pool is generated before timing starts (see worker)."""
    import torch
    pool = run_forward.pool
    pool_n = len(pool)
    done, k, t0 = 0, 0, time.perf_counter()
    with torch.inference_mode():
        while done < n and not clock.over():
            b = min(B, n - done)
            lo = (k * B) % pool_n
            if lo + b > pool_n:
                lo = 0
            model(pool[lo:lo + b])
            done, k = done + b, k + 1
    _sync(device)
    return {"n_done": done, "loop_seconds": time.perf_counter() - t0}, None


def run_ci_engine(model, n, B, device, seed, clock, pool_batches):
    import wna_helpers as w
    t0 = time.perf_counter()
    ci = w.classification_images(model, n, batch_size=B, seed=seed, progress=False)
    info = {"n_done": n, "loop_seconds": time.perf_counter() - t0}
    return info, {"counts": ci.counts.numpy(), "images": ci.images.reshape(ci.num_classes, -1).numpy()}


def run_ci_reference(model, n, B, device, seed, clock, pool_batches):
    """The paper's classification images: keep every noise sample in a per-class list, average at the end."""
    import torch
    torch.manual_seed(seed)
    num_classes = model.num_classes
    lists: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    done, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        while done < n and not clock.over():
            b = min(B, n - done)
            x = torch.randn(b, *INPUT_SHAPE)                      # noise on the host
            pred = model(x.to(device)).argmax(1).cpu().numpy()    # classify
            xn = x.numpy()
            for i in range(b):                                    # per-sample append, as in the paper's code
                lists[pred[i]].append(xn[i])
            done += b
    t1 = time.perf_counter()
    stored_mb = _peak_rss_mb()
    counts = np.array([len(lst) for lst in lists], dtype=np.int64)
    images = np.full((num_classes, math.prod(INPUT_SHAPE)), np.nan)
    for c in range(num_classes):                                  # concatenate and average
        if lists[c]:
            arr = np.stack(lists[c])
            images[c] = arr.mean(axis=0).reshape(-1)
            del arr
    t2 = time.perf_counter()
    info = {"n_done": done, "loop_seconds": t1 - t0, "finalize_seconds": t2 - t1,
            "stored_rss_mb": stored_mb}
    return info, {"counts": counts, "images": images}


def run_sta_engine(model, n, B, device, seed, clock, pool_batches):
    import wna_helpers as w
    t0 = time.perf_counter()
    sta = w.spike_triggered_average(model, LAYER, n, batch_size=B, seed=seed, progress=False)
    k = sta.center.shape[0]
    info = {"n_done": n, "loop_seconds": time.perf_counter() - t0,
            "units": k * sta.positions, "unit_note": f"{k} channels x {sta.positions} positions pooled (+ centre)"}
    return info, {"center": sta.center.reshape(k, -1).numpy(), "pooled": sta.pooled.reshape(k, -1).numpy()}


def run_sta_reference(model, n, B, device, seed, clock, pool_batches):
    """Per-sample STA loop for the centre unit of every conv1 channel (one position).

    ``conv1`` is the first layer of ``paper_cnn``, so the receptive field of output unit
    ``(i, j)`` is the kernel-sized input window at ``(i*stride - pad, j*stride - pad)``.
    With ``--sta-ref-forward layer`` (default) only conv1 + ReLU is computed per batch (as a
    Keras sub-model to the layer would); ``full`` runs the whole model and taps conv1.
    """
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    conv = model.get_submodule(LAYER)
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if isinstance(conv.padding, str) or (ph, pw) != (0, 0):
        raise ValueError("the reference STA handles an unpadded first conv layer only")
    full = run_sta_reference.forward == "full"
    captured = {}
    hook = conv.register_forward_hook(lambda m, i, o: captured.__setitem__("a", o)) if full else None
    k = conv.out_channels
    num = np.zeros((k, INPUT_SHAPE[0] * kh * kw))
    den = np.zeros(k)
    ci = cj = None
    done, t0 = 0, time.perf_counter()
    try:
        with torch.inference_mode():
            while done < n and not clock.over():
                b = min(B, n - done)
                x = torch.randn(b, *INPUT_SHAPE)                  # noise on the host
                xd = x.to(device)
                if full:
                    model(xd)
                    a = F.relu(captured.pop("a"))
                else:
                    a = F.relu(conv(xd))
                if ci is None:
                    ci, cj = a.shape[2] // 2, a.shape[3] // 2
                    top, left = ci * sh, cj * sw
                act = a[:, :, ci, cj].cpu().numpy()                                      # (b, K)
                patch = x[:, :, top:top + kh, left:left + kw].reshape(b, -1).numpy()    # (b, C*kh*kw)
                for i in range(b):                                # per-sample accumulation
                    num += np.outer(act[i], patch[i])
                    den += act[i]
                done += b
    finally:
        if hook is not None:
            hook.remove()
    with np.errstate(invalid="ignore", divide="ignore"):
        center = num / den[:, None]
    info = {"n_done": done, "loop_seconds": time.perf_counter() - t0, "units": k,
            "unit_note": f"{k} channels x 1 position (centre {ci},{cj})", "sta_forward": run_sta_reference.forward}
    return info, {"center": center}


RUNNERS = {"forward": run_forward, "ci_engine": run_ci_engine, "ci_reference": run_ci_reference,
           "sta_engine": run_sta_engine, "sta_reference": run_sta_reference}


def worker(args) -> dict:
    kind, n = args.worker[0], _parse_n(args.worker[1])
    import torch
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = _load_model(device, args.trained)
    B = args.batch_size
    run = RUNNERS[kind]
    run_sta_reference.forward = args.sta_ref_forward
    if kind == "forward":  # pre-generated noise, before timing (and before the warm-up)
        from wna_helpers.engine.speed import choose_channels_last, tune_allocator
        tune_allocator()  # as the engine does: the forward pass at its best, not a handicapped one
        fmt = torch.channels_last if choose_channels_last(model, INPUT_SHAPE, device) else torch.contiguous_format
        model = model.to(memory_format=fmt)
        gen = torch.Generator(device=device).manual_seed(args.seed)
        pool_n = min(n, args.forward_pool * B)
        run_forward.pool = torch.randn(pool_n, *INPUT_SHAPE, generator=gen, device=device).to(memory_format=fmt)
    run(model, min(n, B), B, device, args.seed, _Clock(None), args.forward_pool)   # warm-up, untimed
    gc.collect()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _peak_rss_mb()
    t0 = time.perf_counter()
    info, arrays = run(model, n, B, device, args.seed, _Clock(args.max_seconds), args.forward_pool)
    _sync(device)
    seconds = time.perf_counter() - t0
    out = {"kind": kind, "n": n, "device": str(device), "batch_size": B, "seconds": seconds,
           "samples_per_s": info["n_done"] / seconds, "peak_rss_mb": _peak_rss_mb(),
           "rss_before_mb": rss_before, "threads": torch.get_num_threads(),
           "truncated": info["n_done"] < n, **info}
    if "units" in info:
        out["unit_samples_per_s"] = out["samples_per_s"] * info["units"]
    if kind == "forward":
        out["pool_samples"] = len(run_forward.pool)
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if args.dump and arrays is not None:
        np.savez(args.dump, **arrays)
    return out


# --------------------------------------------------------------------------------------------
# parent side
# --------------------------------------------------------------------------------------------

def _parse_n(s: str) -> int:
    v = float(s)
    if not (v >= 1 and v == int(v)):
        raise argparse.ArgumentTypeError(f"not a positive integer: {s!r}")
    return int(v)


def _parse_sizes(s: str) -> tuple[int, ...]:
    return tuple(_parse_n(p) for p in s.split(",") if p.strip()) if s.strip() else ()


def _spawn(args, kind: str, n: int, device: str, dump: str | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, str(n), "--device", device,
           "--batch-size", str(_batch_size(args, device)), "--seed", str(args.seed),
           "--forward-pool", str(args.forward_pool), "--sta-ref-forward", args.sta_ref_forward]
    if args.trained:
        cmd.append("--trained")
    if args.max_seconds is not None and kind in ("forward", "ci_reference", "sta_reference"):
        cmd += ["--max-seconds", str(args.max_seconds)]
    if dump:
        cmd += ["--dump", dump]
    t0 = time.perf_counter()
    res = run_worker(cmd, MARK, args.timeout)
    if "error" in res:
        return {"kind": kind, "n": n, "device": device, **res}
    res["process_seconds"] = time.perf_counter() - t0
    return res


def run_worker(cmd: list[str], mark: str, timeout: float, env: dict | None = None) -> dict:
    """Run a worker subprocess; its result is the JSON on its last stdout line starting with ``mark``,
    else ``{"error": ...}`` (timeout, or exit status and the last lines it printed)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(mark)]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return {"error": f"rc={p.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len(mark):])


def _batch_size(args, device: str) -> int:
    if args.batch_size is not None:
        return args.batch_size
    return 32_768 if device.startswith("cuda") else 1024  # the engine's largest (wna_helpers.engine.kernel.default_batch_size)


def _find(rows, device, kind, n=None):
    hits = [r for r in rows if r["device"] == device and r["kind"] == kind and "error" not in r
            and (n is None or r["n"] == n)]
    return hits


def _pearson(a, b) -> float:
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _agreement(dumps: dict, device: str, n: int) -> dict:
    """Engine vs reference results at the same n (different noise streams, so statistical agreement)."""
    out: dict = {}
    e, r = dumps.get((device, "ci_engine", n)), dumps.get((device, "ci_reference", n))
    if e is not None and r is not None:
        ce, cr = e["counts"].astype(float), r["counts"].astype(float)
        ok = (ce >= 100) & (cr >= 100)
        # pixel-wise z of the difference of two independent class means (noise std 1):
        # mean z^2 is about 1 when both implement the same estimator
        z2 = [np.mean((e["images"][c] - r["images"][c]) ** 2 / (1 / ce[c] + 1 / cr[c])) for c in np.flatnonzero(ok)]
        out["ci"] = {"n": n, "max_abs_diff_class_share": float(np.max(np.abs(ce / ce.sum() - cr / cr.sum()))),
                     "classes_compared": int(ok.sum()),
                     "mean_z2_of_image_difference": float(np.mean(z2)) if z2 else None}
    e, r = dumps.get((device, "sta_engine", n)), dumps.get((device, "sta_reference", n))
    if e is not None and r is not None:
        cors = [_pearson(a, b) for a, b in zip(e["center"], r["center"]) if np.all(np.isfinite(a)) and np.all(np.isfinite(b))]
        out["sta"] = {"n": n, "centre_sta_pearson_mean": float(np.mean(cors)) if cors else None,
                      "centre_sta_pearson_min": float(np.min(cors)) if cors else None, "channels": len(cors)}
    return out


def _ratios(rows, device, sizes, dumps) -> dict:
    R: dict = {}
    shared = [n for n in sizes if _find(rows, device, "forward", n) and _find(rows, device, "ci_engine", n)]
    if shared:
        per_n = {}
        for n in shared:
            f = _find(rows, device, "forward", n)[0]["samples_per_s"]
            per_n[n] = {"ci_engine_over_forward": _find(rows, device, "ci_engine", n)[0]["samples_per_s"] / f}
            if _find(rows, device, "sta_engine", n):
                per_n[n]["sta_engine_over_forward"] = _find(rows, device, "sta_engine", n)[0]["samples_per_s"] / f
        R["engine_over_forward"] = per_n
        R["ci_engine_over_forward"] = per_n[max(shared)]["ci_engine_over_forward"]
    ref = sorted(_find(rows, device, "ci_reference"), key=lambda r: r["n_done"])
    if len(ref) >= 2:
        a, b = ref[0], ref[-1]
        dn = b["n_done"] - a["n_done"]
        if dn > 0:
            R["ci_reference_mem_growth_kb_per_sample"] = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 2**20 / dn / 1000
            R["ci_reference_stored_growth_kb_per_sample"] = \
                (b["stored_rss_mb"] - a["stored_rss_mb"]) * 2**20 / dn / 1000
            R["ci_reference_mem_growth_between"] = [a["n_done"], b["n_done"]]
    for kind in ENGINE_KINDS:
        eng = sorted(_find(rows, device, kind), key=lambda r: r["n"])
        if len(eng) >= 2:
            a, b = eng[0], eng[-1]
            d = b["peak_rss_mb"] - a["peak_rss_mb"]
            R[f"{kind}_mem"] = {"n": [a["n"], b["n"]], "peak_rss_mb": [a["peak_rss_mb"], b["peak_rss_mb"]],
                                "growth_mb": d, "growth_bytes_per_sample": d * 2**20 / (b["n"] - a["n"]),
                                "flat": d <= FLAT_MB}
    se, sr = _find(rows, device, "sta_engine"), _find(rows, device, "sta_reference")
    if se and sr:
        common = sorted({r["n"] for r in se} & {r["n"] for r in sr})
        e = [r for r in se if r["n"] == common[-1]][0] if common else max(se, key=lambda r: r["n"])
        r = [x for x in sr if x["n"] == common[-1]][0] if common else max(sr, key=lambda x: x["n"])
        R["sta_engine_over_reference"] = e["samples_per_s"] / r["samples_per_s"]
        R["sta_engine_over_reference_unit_samples"] = e["unit_samples_per_s"] / r["unit_samples_per_s"]
        R["sta_compared_at_n"] = {"engine": e["n"], "reference": r["n_done"]}
    ce, cr = _find(rows, device, "ci_engine"), _find(rows, device, "ci_reference")
    common = sorted({r["n"] for r in ce} & {r["n"] for r in cr})
    if common:
        n = common[-1]
        R["ci_engine_over_reference"] = _find(rows, device, "ci_engine", n)[0]["samples_per_s"] / \
            _find(rows, device, "ci_reference", n)[0]["samples_per_s"]
    all_n = sorted({r["n"] for r in rows if r["device"] == device})
    for n in reversed(all_n):
        ag = _agreement(dumps, device, n)
        if ag:
            R["agreement"] = ag
            break
    return R


def _fmt_n(n: int) -> str:
    """1e5, 2e4, 5e4 for round sizes, else 12,345."""
    m, e = n, 0
    while m % 10 == 0 and m > 0:
        m, e = m // 10, e + 1
    return f"{m}e{e}" if e >= 3 and m < 100 else f"{n:,}"


def _table(rows, ratios_by_device, meta) -> str:
    lines = [f"Engine benchmark: `{ARCH}`{' (trained)' if meta['trained'] else ' (untrained)'}, "
             f"torch {meta['torch']}, {meta['threads']} threads, {meta['cpu']}; "
             f"load average {meta['loadavg_start'][0]:.2f} at start, {meta['loadavg_end'][0]:.2f} at end.", "",
             "| device | kind | n | seconds | samples/s | unit-samples/s | peak RSS MB | peak RSS after warm-up MB | note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['device']} | {r['kind']} | {_fmt_n(r['n'])} | - | - | - | - | - | ERROR {r['error'][:120]} |")
            continue
        note = []
        if r.get("truncated"):
            note.append(f"stopped by --max-seconds after {r['n_done']} samples")
        if r.get("measured_n_note"):
            note.append(r["measured_n_note"])
        if r["kind"] == "forward":
            note.append(f"noise pre-generated ({r['pool_samples']} samples, cycled)")
        if r["kind"] == "ci_reference":
            note.append(f"lists {r['stored_rss_mb']:.0f} MB before stacking; stack+mean {r['finalize_seconds']:.1f}s")
        if "unit_note" in r:
            note.append(r["unit_note"])
        if "cuda_peak_mb" in r:
            note.append(f"CUDA peak {r['cuda_peak_mb']:.0f} MB")
        us = f"{r['unit_samples_per_s']:.3g}" if "unit_samples_per_s" in r else "-"
        lines.append(f"| {r['device']} | {r['kind']} | {_fmt_n(r['n'])} | {r['seconds']:.1f} | "
                     f"{r['samples_per_s']:,.0f} | {us} | {r['peak_rss_mb']:,.0f} | {r['rss_before_mb']:,.0f} | "
                     f"{'; '.join(note)} |")
    lines += ["", "| device | ratio | value | target |", "|---|---|---:|---|"]

    def add(dev, name, val, target=""):
        lines.append(f"| {dev} | {name} | {val} | {target} |")

    for dev, R in ratios_by_device.items():
        for n, d in R.get("engine_over_forward", {}).items():
            t = TARGETS["ci_engine_over_forward"]
            v = d["ci_engine_over_forward"]
            add(dev, f"CI engine / forward-only samples/s (n={_fmt_n(n)})", f"{v:.3f}",
                f">= {t} {'PASS' if v >= t else 'MISS'}")
            if "sta_engine_over_forward" in d:
                add(dev, f"STA engine / forward-only samples/s (n={_fmt_n(n)})", f"{d['sta_engine_over_forward']:.3f}")
        if "ci_reference_mem_growth_kb_per_sample" in R:
            a, b = R["ci_reference_mem_growth_between"]
            caveat = "" if (b - a) * 3136 >= 300e6 else \
                " [unreliable: under ~1e5 extra samples the forward pass's ~50-100 MB of temporaries dominate]"
            add(dev, f"CI reference peak-RSS growth per sample, n={_fmt_n(a)}..{_fmt_n(b)} (KB = 1000 B){caveat}",
                f"{R['ci_reference_mem_growth_kb_per_sample']:.2f}", "~3.1 (one 1x28x28 float32 = 3.136 KB)")
            add(dev, "CI reference RSS growth per sample with the lists filled, before stacking (KB)",
                f"{R['ci_reference_stored_growth_kb_per_sample']:.2f}")
        for kind in ENGINE_KINDS:
            if f"{kind}_mem" in R:
                m = R[f"{kind}_mem"]
                add(dev, f"{kind} peak-RSS growth n={_fmt_n(m['n'][0])}..{_fmt_n(m['n'][1])} (MB; B/sample)",
                    f"{m['growth_mb']:+.1f}; {m['growth_bytes_per_sample']:+.2f}",
                    f"flat (<= {FLAT_MB:.0f} MB) {'PASS' if m['flat'] else 'MISS'}")
        if "sta_engine_over_reference" in R:
            t = TARGETS["sta_engine_over_reference"]
            v, u = R["sta_engine_over_reference"], R["sta_engine_over_reference_unit_samples"]
            at = R["sta_compared_at_n"]
            where = f"engine n={_fmt_n(at['engine'])}, reference n={_fmt_n(at['reference'])}"
            add(dev, f"STA engine / reference samples/s ({where})", f"{v:.2f}", f">= {t:g} {'PASS' if v >= t else 'MISS'}")
            add(dev, "STA engine / reference unit-samples/s", f"{u:,.0f}", f">= {t:g} {'PASS' if u >= t else 'MISS'}")
        if "ci_engine_over_reference" in R:
            add(dev, "CI engine / reference samples/s", f"{R['ci_engine_over_reference']:.2f}")
        ag = R.get("agreement", {})
        if "ci" in ag and ag["ci"]["mean_z2_of_image_difference"] is not None:
            add(dev, f"check: CI engine vs reference, mean z^2 of image difference (n={_fmt_n(ag['ci']['n'])}, "
                     f"{ag['ci']['classes_compared']} classes)", f"{ag['ci']['mean_z2_of_image_difference']:.3f}",
                "~1 if same estimator")
            add(dev, "check: CI engine vs reference, max |class share difference|",
                f"{ag['ci']['max_abs_diff_class_share']:.4f}", "~0 (sampling error)")
        if "sta" in ag and ag["sta"]["centre_sta_pearson_mean"] is not None:
            add(dev, f"check: centre STA engine vs reference, Pearson mean/min over {ag['sta']['channels']} channels "
                     f"(n={_fmt_n(ag['sta']['n'])})",
                f"{ag['sta']['centre_sta_pearson_mean']:.3f} / {ag['sta']['centre_sta_pearson_min']:.3f}", "-> 1 as n grows")
    return "\n".join(lines)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, default=str)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cpu_name() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {','.join(map(_fmt_n, QUICK_SIZES))}, no engine-only sizes")
    ap.add_argument("--sizes", type=_parse_sizes, default=None,
                    help=f"n for every kind, comma-separated (default {','.join(map(_fmt_n, FULL_SIZES))})")
    ap.add_argument("--engine-sizes", type=_parse_sizes, default=None,
                    help=f"extra n for the engine kinds alone (default {','.join(map(_fmt_n, FULL_ENGINE_SIZES))}; "
                         f"'' for none)")
    ap.add_argument("--sta-ref-n", type=_parse_n, default=None,
                    help="run sta_reference at this n instead of each --sizes n (samples/s is a rate; "
                         "the table says so); default: the same n")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"subset of {','.join(KINDS)}")
    ap.add_argument("--device", default=None, help="comma-separated devices; default cpu, plus cuda if available")
    ap.add_argument("--batch-size", type=int, default=None, help="default 1024 on CPU, 32768 on CUDA (the engine's)")
    ap.add_argument("--trained", action="store_true",
                    help="use get_trained_model('paper_cnn', 'mnist') (trains and caches it first if needed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--forward-pool", type=int, default=16, help="batches of pre-generated noise for 'forward'")
    ap.add_argument("--sta-ref-forward", choices=("layer", "full"), default="layer",
                    help="reference STA computes conv1 alone (default) or the whole model per batch")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="stop the forward/reference loops after this many seconds and report the rate over the "
                         "samples done (memory then belongs to the samples done); default no limit")
    ap.add_argument("--timeout", type=float, default=None, help="kill a worker after this many seconds")
    ap.add_argument("--out", default=None,
                    help="JSON path; default benchmarks/results/engine_benchmark.json "
                         "(engine_benchmark.quick.json with --quick, so a quick try never replaces a full run)")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--dump", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        if args.worker[0] not in KINDS:
            ap.error(f"unknown kind {args.worker[0]!r}")
        print(MARK + json.dumps(worker(args), default=float), flush=True)
        return 0

    import torch
    sizes = args.sizes if args.sizes is not None else (QUICK_SIZES if args.quick else FULL_SIZES)
    engine_sizes = args.engine_sizes if args.engine_sizes is not None else \
        (QUICK_ENGINE_SIZES if args.quick else FULL_ENGINE_SIZES)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown kinds {bad}; allowed: {list(KINDS)}")
    devices = [d.strip() for d in args.device.split(",")] if args.device else \
        (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for d in devices:
        if d.startswith("cuda") and not torch.cuda.is_available():
            ap.error("--device cuda but CUDA is not available")
    if args.trained:  # make sure the checkpoint exists before the workers load it
        import wna_helpers as w
        w.get_trained_model(ARCH, "mnist", device="cpu", progress=True)

    plan = []
    for dev in devices:
        for n in sizes:
            for kind in kinds:
                if kind == "sta_reference" and args.sta_ref_n is not None:
                    continue
                plan.append((dev, kind, n))
        if "sta_reference" in kinds and args.sta_ref_n is not None:
            plan.append((dev, "sta_reference", args.sta_ref_n))
        for n in engine_sizes:
            for kind in ENGINE_KINDS:
                if kind in kinds and n not in sizes:
                    plan.append((dev, kind, n))

    meta = {"arch": ARCH, "layer": LAYER, "trained": args.trained, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu": _cpu_name(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "devices": devices, "sizes": list(sizes), "engine_sizes": list(engine_sizes),
            "sta_ref_n": args.sta_ref_n, "sta_ref_forward": args.sta_ref_forward, "seed": args.seed,
            "batch_size": {d: _batch_size(args, d) for d in devices}, "forward_pool_batches": args.forward_pool,
            "max_seconds": args.max_seconds, "quick": args.quick, "loadavg_start": os.getloadavg(),
            "command": [os.path.basename(sys.executable), *sys.argv]}
    rows, dumps = [], {}
    total = sum(n for _, _, n in plan)
    print(f"{len(plan)} measurements, {total:,} samples in all (the engine-only sizes dominate a full run)",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="engine_benchmark.") as tmp:
        for i, (dev, kind, n) in enumerate(plan, 1):
            print(f"[{i}/{len(plan)}] {dev} {kind} n={_fmt_n(n)} ...", end=" ", file=sys.stderr, flush=True)
            dump = None if kind == "forward" else os.path.join(tmp, f"{dev.replace(':', '_')}_{kind}_{n}.npz")
            r = _spawn(args, kind, n, dev, dump)
            if kind == "sta_reference" and args.sta_ref_n is not None:
                r["measured_n_note"] = f"measured at n={_fmt_n(n)} (--sta-ref-n), not at each size"
            rows.append(r)
            if "error" in r:
                print(f"ERROR {r['error']}", file=sys.stderr, flush=True)
            else:
                print(f"{r['samples_per_s']:,.0f} samples/s, peak RSS {r['peak_rss_mb']:,.0f} MB, "
                      f"{r['seconds']:.1f}s", file=sys.stderr, flush=True)
                if dump and os.path.exists(dump):
                    with np.load(dump) as z:
                        dumps[(dev, kind, n)] = {k: z[k] for k in z.files}
    meta["loadavg_end"] = os.getloadavg()
    ratios = {dev: _ratios(rows, dev, sizes, dumps) for dev in devices}
    table = _table(rows, ratios, meta)
    print(table)
    out = Path(args.out) if args.out else \
        RESULTS / ("engine_benchmark.quick.json" if args.quick else "engine_benchmark.json")
    _write_json(out, {"meta": meta, "targets": TARGETS, "measurements": rows,
                      "ratios": {d: {str(k): v for k, v in R.items()} for d, R in ratios.items()},
                      "table_markdown": table})
    print(f"\nwrote {out}", file=sys.stderr)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
