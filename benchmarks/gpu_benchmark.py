"""The engine on a GPU, in one process: forward-pass variants, the CI engine up to 10^8 samples, bf16 against float32,
the STA against its convolution alone, and training.

Every section runs in this one process (CUDA starts once), times its loops between ``torch.cuda.synchronize``
calls after a warm-up, and resets the allocator's peak before each engine run, so ``cuda_peak_mb`` is that run's
own. Sections (``--sections``, in this order):

    env       torch, CUDA, cuDNN, the GPU, and the float32 settings that change rounding (TF32 for convolutions
              and matrix products: PyTorch's defaults, which the engine leaves as they are)
    forward   ``paper_cnn``'s forward pass alone on a pool of uniform [0, 1] noise made before timing: contiguous
              and channels-last, each in float32 and under bf16 autocast; float32 with TF32 off; the noise
              generation alone; with ``--graphs``, also replayed as CUDA graphs
    ci        ``classification_images(model, n, noise=Uniform())`` as shipped at 10^6, 10^7 and 10^8 samples, with
              bf16 autocast, without the null permutations, with larger chunks, channels-last, with the
              permutations drawn one ``randperm`` each (where the time goes); samples/s, the GPU's peak memory
    agree     bf16 (and TF32) against strict float32 on the same noise (same seed), for the untrained network and
              one trained on MNIST: the share of samples whose predicted class changes (one forward pass over
              10^6 samples), and the CI engine's counts and images at ``AGREE_N``; verdict rule below
    sta       ``spike_triggered_average(model, "conv1", n)`` against ``conv1`` alone (contiguous and channels-last),
              and the first-layer known answer (the STA's correlation with the filter)
    train     ``wna.train`` of ``paper_cnn`` on random images: samples/s, against a plain PyTorch loop on the GPU
    compiled  ``torch.compile`` of the channels-last forward, and the CI engine with ``compile=True`` (last: a first
              compile costs tens of seconds)

Verdict rule for bf16 (written before any GPU number was seen; ``verdict``): bf16 agrees with float32 when every
class with at least 10^4 samples has CI images correlated at >= 0.999 and every class count moved by less than
its binomial standard error sqrt(n p (1 - p)) (the same noise is used, so a count moves only where the predicted
class flips; less than one standard error means the rounding moves it less than drawing new noise would).

    python benchmarks/gpu_benchmark.py                      # every section; about 4 minutes on an H200
    python benchmarks/gpu_benchmark.py --sections env,forward --scale 0.1

Writes ``benchmarks/results/gpu_benchmark.json`` (``--out``) after every section, so a run cut short keeps what it
measured, and prints a Markdown table. Needs CUDA (``--device cpu`` runs the same code, slowly, to test it).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from engine_benchmark import RESULTS, _cpu_name, _peak_rss_mb, _write_json  # same folder: run as a script

SECTIONS = ("env", "forward", "ci", "agree", "sta", "train", "compiled")
#: samples per timed forward-pass loop, per CI size, and of the bf16 comparison and the STA (times ``--scale``)
FWD_N = 20_000_000
CI_SIZES = (1_000_000, 10_000_000, 100_000_000)
VARIANT_N = 10_000_000
AGREE_N = 10_000_000
FLIP_N = 1_000_000
STA_N = 10_000_000
TRAIN_STEPS = 400
TARGETS = {"ci_samples_per_s_1e8": 1e7, "ci_over_fastest_forward": 0.8, "bf16_min_corr": 0.999}


def verdict(counts_ref: list[int], counts: list[int], corrs: list[float | None]) -> dict:
    """The bf16 (or TF32) run against the strict float32 one on the same noise; rule in the module docstring."""
    n = sum(counts_ref)
    se = [math.sqrt(n * (c / n) * (1 - c / n)) for c in counts_ref]
    moved = [abs(a - b) for a, b in zip(counts, counts_ref)]
    big = [r for c, r in zip(counts_ref, corrs) if c >= 10_000 and r is not None]
    within = all(m < s or m == 0 for m, s in zip(moved, se))
    min_corr = min(big) if big else None
    return {"n": n, "moved": moved, "standard_errors": [round(s, 1) for s in se], "counts_within_se": within,
            "min_corr_classes_1e4": min_corr, "classes_judged": len(big),
            "agrees": bool(within and min_corr is not None and min_corr >= TARGETS["bf16_min_corr"])}


class Bench:
    def __init__(self, device: str, scale: float, out: Path, budget: float, graphs: bool = False) -> None:
        import torch
        self.torch, self.graphs = torch, graphs
        self.device = torch.device(device)
        self.scale, self.out, self.budget = scale, out, budget
        self.t_start = time.perf_counter()
        self.result: dict = {"meta": {"date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:], "scale": scale},
                             "targets": TARGETS, "sections": {}, "errors": {}}

    # ---------------------------------------------------------------- helpers
    def n(self, base: int) -> int:
        return max(4096, int(base * self.scale))

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t_start)

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float | None:
        return self.torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None

    def save(self) -> None:
        self.result["meta"]["seconds"] = round(time.perf_counter() - self.t_start, 1)
        _write_json(self.out, self.result)

    def model(self, arch: str = "paper_cnn"):
        import wna_helpers as wna
        return wna.build_model(arch, seed=0).to(self.device).eval()

    def timed_loop(self, f: Callable, pool, n: int, batch: int) -> dict:
        torch = self.torch
        with torch.inference_mode():
            for _ in range(3):
                f(pool[:batch])
            self.sync()
            t0 = time.perf_counter()
            done = 0
            while done < n:
                lo = (done // batch) % (len(pool) // batch) * batch
                f(pool[lo:lo + batch])
                done += batch
            self.sync()
        s = time.perf_counter() - t0
        return {"n": done, "seconds": round(s, 3), "samples_per_s": done / s}

    # ---------------------------------------------------------------- sections
    def env(self) -> dict:
        torch = self.torch
        d: dict = {"torch": torch.__version__, "python": platform.python_version(), "cpu": _cpu_name(),
                   "cpus": os.cpu_count(), "device": str(self.device),
                   "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                   "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                   "float32_matmul_precision": torch.get_float32_matmul_precision()}
        if self.device.type == "cuda":
            p = torch.cuda.get_device_properties(self.device)
            d.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 1e9, 1), sms=p.multi_processor_count,
                     cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        return d

    def forward(self) -> dict:
        torch = self.torch
        batch = 32_768 if self.device.type == "cuda" else 1024
        n = self.n(FWD_N)
        gen = torch.Generator(device=self.device).manual_seed(0)
        pool = torch.rand(8 * batch, 1, 28, 28, generator=gen, device=self.device)
        pool_cl = pool.to(memory_format=torch.channels_last)
        rows: dict = {}
        base = self.model()
        cl = self.model().to(memory_format=torch.channels_last)

        def bf16(f):
            def g(x):
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    return f(x)
            return g

        def graphed(f, example):
            if self.device.type != "cuda":
                return f
            static = example.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s), torch.inference_mode():
                for _ in range(3):
                    f(static)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g), torch.inference_mode():
                out = f(static)

            def run(x):
                static.copy_(x)
                g.replay()
                return out
            return run

        rows["fp32_contiguous"] = self.timed_loop(base, pool, n, batch)
        rows["fp32_cl"] = self.timed_loop(cl, pool_cl, n, batch)
        rows["bf16_contiguous"] = self.timed_loop(bf16(base), pool, n, batch)
        rows["bf16_cl"] = self.timed_loop(bf16(cl), pool_cl, n, batch)
        if self.graphs:
            rows["fp32_graph"] = self.timed_loop(graphed(base, pool[:batch]), pool, n, batch)
            rows["fp32_cl_graph"] = self.timed_loop(graphed(cl, pool_cl[:batch]), pool_cl, n, batch)
            rows["bf16_cl_graph"] = self.timed_loop(graphed(bf16(cl), pool_cl[:batch]), pool_cl, n, batch)
        old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            rows["fp32_strict_cl"] = self.timed_loop(cl, pool_cl, n, batch)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
        # the noise alone, as the engine draws it (a seeded generator per chunk of 4,096)
        from wna_helpers.engine.stimuli import Uniform
        u = Uniform()
        self.sync()
        t0 = time.perf_counter()
        chunks = n // 4096
        for c in range(chunks):
            u.chunk(c, seed=0, chunk_size=4096, input_shape=(1, 28, 28), device=self.device)
        self.sync()
        s = time.perf_counter() - t0
        rows["noise_chunks_4096"] = {"n": chunks * 4096, "seconds": round(s, 3), "samples_per_s": chunks * 4096 / s}
        rates = {k: v["samples_per_s"] for k, v in rows.items() if "samples_per_s" in v and k != "noise_chunks_4096"}
        fp32 = {k: v for k, v in rates.items() if k.startswith("fp32") and "strict" not in k}
        return {"batch_size": batch, "rows": rows,
                "fastest_fp32": max(fp32, key=fp32.get), "fastest_fp32_rate": max(fp32.values()),
                "fastest_bf16": max((k for k in rates if k.startswith("bf16")), key=rates.get),
                "fastest_bf16_rate": max(v for k, v in rates.items() if k.startswith("bf16"))}

    def ci_run(self, model, n: int, **kw) -> dict:
        import wna_helpers as wna
        self.reset_peak()
        self.sync()
        t0 = time.perf_counter()
        ci = wna.classification_images(model, n, noise=wna.Uniform(), progress=False, **kw)
        self.sync()
        s = time.perf_counter() - t0
        return {"n": n, "seconds": round(s, 2), "samples_per_s": n / s, "cuda_peak_mb": self.peak_mb(),
                "peak_rss_mb": round(_peak_rss_mb()), "counts": [int(c) for c in ci.counts],
                **{k: str(v) for k, v in kw.items()}}

    def ci(self) -> dict:
        torch = self.torch
        model = self.model()
        self.ci_run(model, self.n(10 ** 5))   # warm-up: cuDNN's algorithm choice, the allocator's pool
        rows: dict = {}
        for n in CI_SIZES:
            n = self.n(n)
            last = rows.get(f"shipped_{self.n(CI_SIZES[0])}")
            if last and n / last["samples_per_s"] > self.left() - 60:
                rows[f"shipped_{n}"] = {"skipped": f"predicted {n / last['samples_per_s']:.0f} s, "
                                                   f"{self.left():.0f} s of the budget left"}
                continue
            rows[f"shipped_{n}"] = self.ci_run(model, n)
            self.save_partial("ci", rows)
        v = self.n(VARIANT_N)
        variants = {"bf16": {"autocast": torch.bfloat16},
                    "no_permutations": {"null_permutations": 0},
                    "chunk_32768": {"chunk_size": 32_768},
                    "channels_last": {"channels_last": True},
                    "bf16_chunk_32768": {"autocast": torch.bfloat16, "chunk_size": 32_768}}
        from wna_helpers.methods import ci_stats
        shipped = ci_stats.draw_permutations
        variants["randperm_loop"] = {}   # the permutations one randperm call each, as before (CPU's way)
        for name, kw in variants.items():
            if self.device.type != "cuda" and "autocast" in kw:
                continue
            if name == "randperm_loop":
                ci_stats.draw_permutations = lambda k, n, gen: self.torch.stack(  # noqa: E731
                    [self.torch.randperm(n, generator=gen, device=gen.device) for _ in range(k)])
            try:
                rows[f"{name}_{v}"] = self.ci_run(model, v, **kw)
            except Exception as exc:  # noqa: BLE001
                rows[f"{name}_{v}"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            finally:
                ci_stats.draw_permutations = shipped
            self.save_partial("ci", rows)
        big = self.n(CI_SIZES[-1])
        if self.device.type == "cuda" and "samples_per_s" in rows.get(f"bf16_{v}", {}) \
                and big / rows[f"bf16_{v}"]["samples_per_s"] < self.left() - 60:
            rows[f"bf16_{big}"] = self.ci_run(model, big, autocast=torch.bfloat16)
        return {"rows": rows}

    def save_partial(self, name: str, rows: dict) -> None:
        self.result["sections"][name] = {"rows": rows, "partial": True}
        self.save()

    def agree(self) -> dict:
        import wna_helpers as wna
        torch = self.torch
        out: dict = {}
        models = {"untrained": self.model()}
        try:
            t0 = time.perf_counter()
            trained, _ = wna.get_trained_model("paper_cnn", "mnist", progress=False, device=self.device)
            out["trained_seconds"] = round(time.perf_counter() - t0, 1)
            models["trained_mnist"] = trained.eval()
        except Exception as exc:  # noqa: BLE001 -- no data here: the untrained network alone
            out["trained_error"] = f"{type(exc).__name__}: {exc}"[:300]
        n = self.n(AGREE_N)
        gen = torch.Generator(device=self.device).manual_seed(1)
        x = torch.rand(self.n(FLIP_N), 1, 28, 28, generator=gen, device=self.device)
        for name, model in models.items():
            res: dict = {}

            def preds(strict: bool, bf: bool):
                old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                if strict:
                    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
                try:
                    with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf):
                        return torch.cat([model(x[i:i + 32_768]).float().argmax(1) for i in range(0, len(x), 32_768)])
                finally:
                    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
            ref = preds(True, False)
            res["flip_share_tf32"] = float((preds(False, False) != ref).float().mean())
            if self.device.type == "cuda":
                res["flip_share_bf16"] = float((preds(False, True) != ref).float().mean())

            def ci(strict: bool, **kw):
                old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                if strict:
                    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
                try:
                    return wna.classification_images(model, n, noise=wna.Uniform(), progress=False,
                                                     null_permutations=0, **kw)
                finally:
                    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
            strict = ci(True)
            runs = {"tf32": ci(False)}
            if self.device.type == "cuda":
                runs["bf16"] = ci(False, autocast=torch.bfloat16)
            res["counts_fp32_strict"] = [int(c) for c in strict.counts]
            for k, r in runs.items():
                corrs = [wna.pearson(r.images[c], strict.images[c]) if int(strict.counts[c]) > 1 and
                         int(r.counts[c]) > 1 else None for c in range(len(strict.counts))]
                res[k] = {"counts": [int(c) for c in r.counts], "corrs": corrs,
                          **verdict(res["counts_fp32_strict"], [int(c) for c in r.counts], corrs)}
            out[name] = res
            self.save_partial("agree", out)
        return out

    def compiled(self) -> dict:
        """``torch.compile`` last (its first compile costs tens of seconds): the forward alone and the CI engine."""
        torch = self.torch
        batch = 32_768 if self.device.type == "cuda" else 1024
        gen = torch.Generator(device=self.device).manual_seed(0)
        pool = torch.rand(8 * batch, 1, 28, 28, generator=gen, device=self.device).to(memory_format=torch.channels_last)
        cl = self.model().to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        c = torch.compile(cl, dynamic=False)
        with torch.inference_mode():
            c(pool[:batch])
        self.sync()
        warm = time.perf_counter() - t0
        rows = {"forward_fp32_compiled": {**self.timed_loop(c, pool, self.n(FWD_N), batch),
                                          "warmup_seconds": round(warm, 1)}}
        self.save_partial("compiled", rows)
        v = self.n(VARIANT_N)
        t0 = time.perf_counter()
        rows[f"ci_compiled_{v}"] = {**self.ci_run(self.model(), v, compile=True),
                                    "with_its_compile_seconds": round(time.perf_counter() - t0, 1)}
        return {"rows": rows}

    def sta(self) -> dict:
        import wna_helpers as wna
        torch = self.torch
        batch = 32_768 if self.device.type == "cuda" else 1024
        n = self.n(STA_N)
        model = self.model()
        gen = torch.Generator(device=self.device).manual_seed(0)
        pool = torch.rand(8 * batch, 1, 28, 28, generator=gen, device=self.device)
        rows = {"conv1_contiguous": self.timed_loop(model.conv1, pool, n, batch)}
        conv_cl = self.model().to(memory_format=torch.channels_last).conv1
        rows["conv1_cl"] = self.timed_loop(conv_cl, pool.to(memory_format=torch.channels_last), n, batch)
        wna.spike_triggered_average(model, "conv1", self.n(10 ** 5), noise=wna.Uniform(), progress=False)
        self.reset_peak()
        self.sync()
        t0 = time.perf_counter()
        sta = wna.spike_triggered_average(model, "conv1", n, noise=wna.Uniform(), progress=False)
        self.sync()
        s = time.perf_counter() - t0
        rows["sta_engine"] = {"n": n, "seconds": round(s, 2), "samples_per_s": n / s, "cuda_peak_mb": self.peak_mb()}
        best = max(rows["conv1_contiguous"]["samples_per_s"], rows["conv1_cl"]["samples_per_s"])
        gauss = wna.spike_triggered_average(model, "conv1", self.n(10 ** 6), progress=False)
        return {"rows": rows, "sta_over_conv_alone": rows["sta_engine"]["samples_per_s"] / best,
                "filter_corr_uniform_pooled": float(wna.filter_correlation(sta.pooled, model.conv1.weight.cpu()).mean()),
                "filter_corr_gaussian_pooled": float(wna.filter_correlation(gauss.pooled,
                                                                            model.conv1.weight.cpu()).mean()),
                "filter_corr_gaussian_center": float(wna.filter_correlation(gauss.center,
                                                                            model.conv1.weight.cpu()).mean())}

    def train(self) -> dict:
        import torch.nn.functional as F

        import wna_helpers as wna
        torch = self.torch
        batch, steps = 256, max(20, int(TRAIN_STEPS * min(1.0, self.scale * 10)))
        gen = torch.Generator().manual_seed(0)
        images, labels = torch.rand(steps * batch, 1, 28, 28, generator=gen), torch.randint(10, (steps * batch,),
                                                                                            generator=gen)
        data = wna.Dataset(images, labels, tuple(str(i) for i in range(10)), "noise", "train")
        out: dict = {}
        model = self.model().train()
        wna.train(model, wna.Dataset(images[:5 * batch], labels[:5 * batch], data.classes, "noise", "train"),
                  epochs=1, batch_size=batch, progress=False, device=self.device)
        self.sync()
        t0 = time.perf_counter()
        wna.train(model, data, epochs=1, batch_size=batch, progress=False, device=self.device)
        self.sync()
        s = time.perf_counter() - t0
        out["wna_train"] = {"steps": steps, "batch_size": batch, "seconds": round(s, 2), "samples_per_s": steps * batch / s}
        model = self.model().train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        perm = torch.randperm(len(images), generator=gen)

        def step(i: int) -> None:
            idx = perm[i * batch:(i + 1) * batch]
            x, y = images[idx].to(self.device), labels[idx].to(self.device)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        for i in range(5):
            step(i)
        self.sync()
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        self.sync()
        s = time.perf_counter() - t0
        out["plain_loop"] = {"steps": steps, "batch_size": batch, "seconds": round(s, 2),
                             "samples_per_s": steps * batch / s}
        out["wna_over_plain"] = out["wna_train"]["samples_per_s"] / out["plain_loop"]["samples_per_s"]
        return out

    def run(self, sections: list[str]) -> None:
        for name in sections:
            if self.left() < 30:
                self.result["errors"][name] = f"skipped: {self.left():.0f} s of the budget left"
                continue
            t0 = time.perf_counter()
            print(f"== {name} ({self.left():.0f} s left)", flush=True)
            try:
                got = getattr(self, name)()
                got["section_seconds"] = round(time.perf_counter() - t0, 1)
                self.result["sections"][name] = got
            except Exception:  # noqa: BLE001 -- one broken section must not lose the others
                self.result["errors"][name] = traceback.format_exc()[-3000:]
                print(self.result["errors"][name], flush=True)
            self.save()
            print(json.dumps(self.result["sections"].get(name, {}), default=str)[:3000], flush=True)


def table(result: dict) -> str:
    """The headline numbers as Markdown."""
    s = result["sections"]
    lines = [f"gpu_benchmark {result['meta']['date']}: {s.get('env', {}).get('gpu', 'no GPU')}, torch "
             f"{s.get('env', {}).get('torch')}", "", "| what | n | samples/s | GPU peak (MB) | note |", "|---|---:|---:|---:|---|"]
    for sec in ("forward", "ci", "sta", "compiled"):
        for k, r in s.get(sec, {}).get("rows", {}).items():
            if "samples_per_s" in r:
                note = f"warm-up {r['warmup_seconds']} s" if "warmup_seconds" in r else ""
                peak = f"{r['cuda_peak_mb']:.0f}" if r.get("cuda_peak_mb") is not None else ""
                lines.append(f"| {sec}: {k} | {r['n']:,} | {r['samples_per_s']:,.0f} | {peak} | {note} |")
            else:
                lines.append(f"| {sec}: {k} | | | | {r.get('error') or r.get('skipped')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every n by this")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds: later sections and sizes are skipped")
    ap.add_argument("--out", default=str(RESULTS / "gpu_benchmark.json"))
    ap.add_argument("--graphs", action="store_true", help="also the forward passes replayed as CUDA graphs")
    args = ap.parse_args(argv)
    sections = [x for x in args.sections.split(",") if x]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    import torch
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("no CUDA device here; --device cpu runs the same code on the CPU (slowly, to test it)")
    b = Bench(args.device, args.scale, Path(args.out), args.budget, graphs=args.graphs)
    b.run(sections)
    text = table(b.result)
    b.result["markdown"] = text
    b.save()
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
