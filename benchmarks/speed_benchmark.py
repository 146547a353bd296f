"""The engine against what the hardware can do: forward-pass variants, CI and STA engines, memory.

For each architecture (untrained, ``build_model(arch, seed=0)``: speed does not depend on the
weights), every measurement below runs in a fresh subprocess (its own allocator settings and
peak RSS), in one run on one machine, so the ratios compare like with like:

    forward_eager      model(x) as built, glibc's default allocator (``WNA_MALLOPT=0``)
    forward_malloc     the same after ``wna.tune_allocator()`` (what the engine sets)
    forward_cl         + model and input channels-last
    forward_compiled   + ``torch.compile`` (warm-up reported separately, not timed)
    conv_alone         the tapped layer (``conv1``) alone, contiguous and channels-last, allocator tuned
    noise_alone        the engine's uniform noise alone (``Uniform().chunk``: seeded chunks of 4,096)
    wgrad_alone        ``conv1``'s weight-gradient kernel alone as the STA calls it: channels-last ReLU'd outputs of
                       noise made before timing, over the whole map with the layer's padding where that lines the
                       map up (``sta.full_map_padding``: net3), else at the positions the STA pools (no padding),
                       blocks of ``sta.BLOCK_SAMPLES`` samples, centred stimuli
    ci_engine          ``classification_images(model, n)``: the engine as shipped (defaults), at ``CI_N``
                       samples (10^6: the book's runs, which compile by themselves); when ``forward_compiled``
                       is measured too, it runs again right after (``forward_compiled_after``), and the CI ratios
                       divide by the mean of the two, which brackets the machine's drift over the long run
    ci_engine_compiled the same with ``compile=True``
    ci_one_process     in one process, ``ROUNDS`` rounds of the compiled forward (as ``forward_compiled``), the CI
                       engine with ``compile=True`` and the bare loop (``bare_loop``: the CI's own accumulators, its
                       class sums and 32-permutation statistics, fed the same noise and compiled forward by a plain
                       loop), alternating, n samples each; reported: the medians of the rounds' ratios (they do not
                       depend on how fast each process happened to run: the compiled forward of ``paper_cnn`` ran at
                       16,084 samples/s in one process and 19,279 and 19,897 in two others within the hour,
                       2026-12-05): CI / forward, bare / forward (the pace of the CI's own work, its statistics
                       included) and CI / bare (what the engine's orchestration costs)
    sta_one_process    in one process, ``STA_ROUNDS`` rounds of the STA as shipped, the bare loop (the STA's own
                       accumulator fed by a plain loop, its conv and ReLU as the engine runs them) and then
                       ``conv1`` alone in both layouts at each batch of ``SWEEP_BATCHES``, STA_N samples each;
                       reported: the medians of the rounds' ratios of the STA and of the bare loop to that round's
                       fastest conv alone, and of the STA to the bare loop (the separate processes of
                       ``sta_engine`` and ``conv_alone`` carry the machine's drift between them into their ratio:
                       ``paper_cnn``'s conv alone ran at 80,000-103,000 samples/s within minutes, 2026-12-06)
    ci_engine_nomalloc the engine with ``WNA_MALLOPT=0``
    sta_engine         ``spike_triggered_average(model, "conv1", n)``: every channel, pooled + centre, its
                       pooled sums through the convolution's weight-gradient kernel (as shipped)
    sta_engine_window  the same with the pooled sums of the window product it replaced (copied windows,
                       one batched matrix product per block of about 1,024 terms)
    train_plain        a plain PyTorch training loop (``train_benchmark.py``'s ``plain_eager``), batch 256
    train_wna          ``wna.train`` as shipped, the same work
    memory             the CI engine at two sizes (``--mem-sizes``) with ``compile=False``, so both sizes run
                       the same code; peak RSS of each, the smaller size a second time (two identical runs
                       differ by what the process does before the run settles), and, in the larger run, the
                       peak RSS when the smaller size's samples had streamed (growth within one process)

The forward variants and the conv alone cycle through a pool of uniform [0, 1] noise generated before timing, at
each batch of ``SWEEP_BATCHES`` in turn (unless ``--batch-size`` fixes one), each row the fastest (the others in
its ``rates_by_batch``); the engines generate their own noise and run at their own default batch (the STA's capped
at ``STAAccumulator.cpu_batch_cap``). Reported: samples/s, CPU user/sys seconds, peak RSS; ratios:
CI engine as shipped at 10^6 samples / fastest forward variant (target >= 0.85), STA engine / fastest
conv-alone (target >= 0.40), memory growth from the smaller size to the larger (target < 64 MB; judged
within one process, since two processes' peaks differ by up to 100 MB at the same size: the between-process
difference and the spread of two identical runs are reported beside it), training wna / plain (target >= 1.5
for paper_cnn). The STA and conv-alone measurements stream STA_N samples for every model: at the forward
passes' sizes (3 x 10^4 for alexnet_small) the conv alone ran for 0.1 s, too short to time.

    .venv/bin/python benchmarks/speed_benchmark.py            # about 67 minutes on 2 idle cores (AMD EPYC, 2026-12-06)
    .venv/bin/python benchmarks/speed_benchmark.py --quick    # a few minutes
    .venv/bin/python benchmarks/speed_benchmark.py --archs paper_cnn --device cuda
    .venv/bin/python benchmarks/speed_benchmark.py --update --kinds sta_engine,conv_alone   # re-measure some kinds

``--update`` re-measures only the kinds (and, unless ``--mem-sizes ''``, the memory runs) asked for, replaces
those rows of the saved JSON and recomputes every ratio; each row keeps the date of the run that measured it
(``run``), and a ratio always divides two rows of one run (the kinds it needs are re-measured together or not
at all: ``--update`` refuses a kind list that would split a ratio across runs). ``--update --kinds '' --mem-sizes
''`` measures nothing and recomputes the saved rows' ratios with this script.

Writes ``benchmarks/results/speed_benchmark[.quick].json`` and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Callable

from engine_benchmark import RESULTS, _cpu_name, _peak_rss_mb, _write_json, run_worker  # same folder: run as a script
from train_benchmark import worker as train_worker

ARCHS = ("paper_cnn", "lenet", "net3", "alexnet_small")
FORWARD = ("forward_eager", "forward_malloc", "forward_cl", "forward_compiled")
ENGINE = ("ci_engine", "ci_engine_compiled", "ci_engine_nomalloc", "sta_engine", "sta_engine_window")
TRAIN = ("train_plain", "train_wna")
#: The work the STA cannot avoid, each part timed alone: its noise and the weight-gradient call (with ``conv_alone_cl``,
#: the convolution, the three make the STA's ceiling)
STA_PARTS = ("noise_alone", "wgrad_alone")
ONE_PROCESS = "ci_one_process"
STA_ONE_PROCESS = "sta_one_process"
KINDS = FORWARD + ("conv_alone", "conv_alone_cl") + STA_PARTS + ENGINE + (ONE_PROCESS, STA_ONE_PROCESS) + TRAIN
#: Rounds of ``ci_one_process``.
ROUNDS = 5
#: Rounds of ``sta_one_process`` (each times six conv-alone variants beside the STA).
STA_ROUNDS = 3
#: ``forward_compiled`` measured again right after the long ``ci_engine`` run (not a kind of its own in ``--kinds``).
AFTER = "forward_compiled_after"
#: Samples of the as-shipped CI engine: the book's runs, long enough for the engine to compile by itself.
CI_N = 1_000_000
#: Optimizer steps of batch 256 per training measurement.
TRAIN_STEPS = {"paper_cnn": 60, "lenet": 60, "net3": 40, "alexnet_small": 20}
# samples per timed measurement: about 10 s of the slowest variant that matters on 2 CPU cores
DEFAULT_N = {"paper_cnn": 200_000, "lenet": 200_000, "net3": 100_000, "alexnet_small": 30_000}
QUICK_N = {"paper_cnn": 20_480, "lenet": 20_480, "net3": 8_192, "alexnet_small": 4_096}
#: Batches the forward passes and the conv alone are timed at in turn, each row the fastest (``--batch-size`` fixes
#: one): on a 2-core Intel Xeon ``conv1`` alone ran channels-last 1.17-2.17 times as fast at 256 as at 1,024 (the
#: saved rows' ``rates_by_batch``, 2026-12-06 06:22), so a fixed 1,024 was not what the hardware can do.
SWEEP_BATCHES = (1024, 256, 128)
#: Samples of the STA and conv-alone measurements (both fast; at least 1 s of the conv alone on 2 CPU cores).
STA_N = 200_000
STA_KINDS = ("conv_alone", "conv_alone_cl", "sta_engine", "sta_engine_window") + STA_PARTS + (STA_ONE_PROCESS,)
MARK = "@@SPEED_BENCHMARK@@"
#: Kinds whose ratios divide one by another: ``--update`` re-measures each group whole or not at all.
RATIO_GROUPS = (FORWARD + ("ci_engine", "ci_engine_compiled"), STA_KINDS, TRAIN)
TARGETS = {"ci_over_fastest_forward": 0.85, "sta_over_conv_alone": 0.40, "memory_growth_mb": 64.0,
           "train_wna_over_plain": 1.5}


# --------------------------------------------------------------------------------------------- worker
def _window_product(model_module: object) -> None:
    """Put back the STA's pooled sums as they were before the weight-gradient kernel (for comparison)."""
    import torch
    import torch.nn.functional as F
    from wna_helpers.methods import sta

    def window_sums(x, act, rf, first, count):
        b, p, k = act.shape
        ch = x.shape[1]
        (sh, sw), (jh, jw), (oh, ow) = rf.size, rf.jump, rf.offset
        nr, nc = count
        d = ch * sh * sw
        s_b, s_c, s_h, s_w = x.stride()
        base = x.storage_offset() + (oh + first[0] * jh) * s_h + (ow + first[1] * jw) * s_w
        m = max(1, min(b, -(-1024 // p)))
        total = torch.zeros(d + 1, k, dtype=torch.float64, device=x.device)
        start = 0
        while start < b:
            size = m if b - start >= m else b - start
            nb = (b - start) // size
            buf = x.new_empty(nb, d + 1, size * p)
            buf[:, d] = 1
            buf[:, :d].view(nb, ch, sh, sw, size, nr, nc).copy_(x.as_strided(
                (nb, ch, sh, sw, size, nr, nc), (size * s_b, s_c, s_h, s_w, s_b, jh * s_h, jw * s_w),
                base + start * s_b))
            total += torch.bmm(buf, act[start:start + nb * size].reshape(nb, size * p, k)).sum(0, dtype=torch.float64)
            start += nb * size
        return total

    def update(self, x, logits, taps, labels):
        a = F.relu(taps[self.layer].float())
        x = x.float()
        b, k = a.shape[:2]
        r, c = self.rows, self.cols
        act = a[:, :, r.start:r.stop, c.start:c.stop].permute(0, 2, 3, 1).reshape(b, -1, k)
        sums = window_sums(x, act, self.rf, (r.start, c.start), (len(r), len(c)))
        self.acc["pooled_num"] += sums[:-1].T
        self.acc["pooled_den"] += sums[-1]
        self.acc["act_sum"] += a.sum((0, 2, 3), dtype=torch.float64)
        (sh, sw), (jh, jw), (oh, ow) = self.rf.size, self.rf.jump, self.rf.offset
        ci, cj = self.center
        t0, l0 = oh + ci * jh, ow + cj * jw
        window = x[:, :, t0:t0 + sh, l0:l0 + sw].reshape(b, -1)
        ac = a[:, :, ci, cj]
        self.acc["center_num"] += ac.T @ window
        self.acc["center_den"] += ac.sum(0, dtype=torch.float64)

    sta.STAAccumulator.update = update


def _mark_peak(out: dict, mark: int, batch: int) -> Callable[[], None]:
    """Record in ``out["peak_rss_at_mark_mb"]`` the peak RSS once the engine has streamed ``mark`` samples (0: never),
    through the engine's per-batch :class:`~wna_helpers.engine.allocator.HeapWatch` step; returns the function that arms
    it: only runs started after that call count (the worker arms it after its warm-up)."""
    from wna_helpers.engine import kernel

    class Marking(kernel.HeapWatch):
        armed = False

        def __init__(self, *a, **k) -> None:
            super().__init__(*a, **k)
            self.counts = Marking.armed   # the run this watch belongs to started after arming

        def step(self, i: int) -> None:
            super().step(i)
            if mark and self.counts and "peak_rss_at_mark_mb" not in out and i * batch >= mark:
                out["peak_rss_at_mark_mb"] = _peak_rss_mb()
    kernel.HeapWatch = Marking
    return lambda: setattr(Marking, "armed", True)


def cycle(f: Callable, pool, n: int, batch: int, sync: Callable[[], None]) -> None:
    """``f`` on ``n`` samples, batches of ``batch`` taken in turn from the pre-drawn ``pool``, then ``sync()``."""
    done = 0
    while done < n:
        lo = done % (len(pool) - batch + 1) if len(pool) > batch else 0
        f(pool[lo:lo + batch])
        done += batch
    sync()


def bare_loop(forward: Callable | None, accumulators: list, n: int, batch: int, device, sync: Callable[[], None], *,
              taps: Callable | None = None) -> None:
    """The engine's own accumulators fed by a plain loop, no engine: seeded uniform chunks of ``DEFAULT_CHUNK``
    (the engine's noise), ``forward`` on batches of ``batch``, each batch's update and each chunk's end. With
    ``taps``, ``taps(x)`` gives the batch's taps (the STA's ReLU'd conv output) and there are no logits. What is
    left when the engine's orchestration (chunk bookkeeping, hooks, checkpoints, progress) is taken away: the
    run's own work, the limit the engine is measured against in ``ci_one_process`` and ``sta_one_process``."""
    import torch
    import wna_helpers as wna
    from wna_helpers.engine.accumulator import Chunk
    from wna_helpers.engine.options import DEFAULT_CHUNK

    stim = wna.Uniform()
    done = c = 0
    while done < n:
        x, _ = stim.chunk(c, seed=0, chunk_size=DEFAULT_CHUNK, input_shape=(1, 28, 28), device=device)
        x = x[:n - done]   # n samples, as the engine's runs
        parts = []
        for lo in range(0, len(x), batch):
            xb = x[lo:lo + batch]
            if taps is None:   # a short last batch padded, as the engine pads it: a compiled forward keeps its shape
                xin = xb if len(xb) == batch else torch.cat([xb, xb.new_zeros(batch - len(xb), *xb.shape[1:])])
                parts.append(forward(xin.to(memory_format=torch.channels_last)).float()[:len(xb)])
                for a in accumulators:
                    a.update(xb, parts[-1], {}, None)
            else:
                t = taps(xb)
                for a in accumulators:
                    a.update(xb, None, t, None)
        if taps is None:
            for a in accumulators:
                if a.wants_chunks:
                    a.end_chunk(Chunk(c, 0, x, torch.cat(parts), None))
        done, c = done + len(x), c + 1
    sync()


def _one_process(model, arch: str, n: int, device, batch: int, sync: Callable[[], None]) -> dict:
    """``ci_one_process``: the compiled forward, the compiled CI engine and its bare loop (:func:`bare_loop`)
    alternating in this process."""
    import statistics

    import torch
    import wna_helpers as wna

    fwd_model = wna.build_model(arch, seed=0).to(device).eval().to(memory_format=torch.channels_last)
    f = torch.compile(fwd_model, dynamic=False)
    gen = torch.Generator(device=device).manual_seed(0)
    pool = torch.rand(min(n, 8 * batch), 1, 28, 28, generator=gen, device=device).to(memory_format=torch.channels_last)

    def forward() -> None:
        cycle(f, pool, n, batch, sync)

    def ci() -> None:
        wna.classification_images(model, n, noise=wna.Uniform(), progress=False, batch_size=batch, compile=True)

    def bare() -> None:   # the CI's accumulators (its sums and statistics, as shipped) in a plain loop
        from wna_helpers.methods.ci import CIAccumulator
        from wna_helpers.methods.ci_stats import CIStatsAccumulator

        accs = [CIAccumulator(), CIStatsAccumulator()]
        for a in accs:
            a.setup(10, (1, 28, 28), device, {})
        bare_loop(f, accs, n, batch, device, sync)

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with torch.inference_mode():
        f(pool[:batch])
        wna.classification_images(model, batch, noise=wna.Uniform(), progress=False, batch_size=batch, compile=True)
    warm = time.perf_counter() - t0
    rates: dict[str, list[float]] = {"forward": [], "ci": [], "bare": []}
    with torch.inference_mode():
        for _ in range(ROUNDS):
            for name, run in (("forward", forward), ("ci", ci), ("bare", bare)):
                t = time.perf_counter()
                run()
                rates[name].append(n / (time.perf_counter() - t))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    ratio = statistics.median(c / fw for c, fw in zip(rates["ci"], rates["forward"]))
    return {"kind": ONE_PROCESS, "arch": arch, "n": n, "device": str(device), "batch_size": batch,
            "samples_per_s": statistics.median(rates["ci"]), "forward_samples_per_s": rates["forward"],
            "ci_samples_per_s": rates["ci"], "ci_over_forward": ratio, "bare_samples_per_s": rates["bare"],
            "bare_over_forward": statistics.median(b / fw for b, fw in zip(rates["bare"], rates["forward"])),
            "ci_over_bare": statistics.median(c / b for c, b in zip(rates["ci"], rates["bare"])), "warmup_seconds": warm,
            "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime, "peak_rss_mb": _peak_rss_mb(),
            "threads": torch.get_num_threads()}


def _sta_one_process(model, arch: str, n: int, device, batch: int, sync: Callable[[], None]) -> dict:
    """``sta_one_process``: the STA as shipped, its bare loop (:func:`bare_loop`) and ``conv1`` alone in each layout
    and batch, alternating in this process; each round's ratio divides by that round's fastest conv alone."""
    import statistics

    import torch
    import wna_helpers as wna

    gen = torch.Generator(device=device).manual_seed(0)
    batches = SWEEP_BATCHES if device.type == "cpu" and os.environ.get("WNA_BENCH_ENGINE_DEFAULT") == "1" else (batch,)
    convs = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        conv = wna.build_model(arch, seed=0).to(device).eval().to(memory_format=fmt).conv1
        pool = torch.rand(min(n, 8 * max(batches)), 1, 28, 28, generator=gen, device=device).to(memory_format=fmt)
        for b in batches:
            convs[f"{'cl' if fmt == torch.channels_last else 'contiguous'} {b}"] = (conv, pool, b)
    opts = {} if os.environ.get("WNA_BENCH_ENGINE_DEFAULT") == "1" else {"batch_size": batch}

    def sta(m: int) -> None:
        wna.spike_triggered_average(model, "conv1", m, noise=wna.Uniform(), progress=False, **opts)

    # the STA's accumulator in a plain loop, its batch as the engine caps it, the conv and its ReLU as the engine runs
    # them (oneDNN's fused call where it applies)
    from wna_helpers.engine.kernel import default_batch_size, probe_model
    from wna_helpers.engine.speed import fused_conv_relu
    from wna_helpers.methods.sta import STAAccumulator

    cl_conv = wna.build_model(arch, seed=0).to(device).eval().to(memory_format=torch.channels_last).conv1
    conv_relu = fused_conv_relu(cl_conv) or (lambda x: torch.relu(cl_conv(x)))
    rf = wna.receptive_field(model, "conv1")
    probe = probe_model(model, (1, 28, 28), device)
    bare_batch = opts.get("batch_size") or default_batch_size(device, probe[3], cap=STAAccumulator.cpu_batch_cap,
                                                              total_bytes=probe[4])

    def bare(m: int) -> None:
        acc = STAAccumulator("conv1", rf, (1, 28, 28))
        acc.owns_taps = True
        acc.setup(10, (1, 28, 28), device, {"conv1": conv_relu(torch.zeros(1, 1, 28, 28, device=device)).shape[1:]})
        bare_loop(None, [acc], m, bare_batch, device, sync, taps=lambda x: {"conv1": conv_relu(x)})

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with torch.inference_mode():
        sta(min(n, 4096))
        bare(min(n, 4096))
        for conv, pool, b in convs.values():
            conv(pool[:b])
    warm = time.perf_counter() - t0
    rates: dict[str, list[float]] = {"sta": [], "bare": [], **{k: [] for k in convs}}
    with torch.inference_mode():
        for _ in range(STA_ROUNDS):
            for name, run in (("sta", sta), ("bare", bare)):
                t = time.perf_counter()
                run(n)
                rates[name].append(n / (time.perf_counter() - t))
            for k, (conv, pool, b) in convs.items():
                t = time.perf_counter()
                cycle(conv, pool, n, b, sync)
                rates[k].append(n / (time.perf_counter() - t))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    fastest = [max(rates[k][i] for k in convs) for i in range(STA_ROUNDS)]
    return {"kind": STA_ONE_PROCESS, "arch": arch, "n": n, "device": str(device), "batch_size": batch,
            "samples_per_s": statistics.median(rates["sta"]), "rates": rates,
            "sta_over_conv_alone": statistics.median(s / c for s, c in zip(rates["sta"], fastest)),
            "bare_over_conv_alone": statistics.median(b / c for b, c in zip(rates["bare"], fastest)),
            "sta_over_bare": statistics.median(s / b for s, b in zip(rates["sta"], rates["bare"])),
            "warmup_seconds": warm, "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
            "peak_rss_mb": _peak_rss_mb(), "threads": torch.get_num_threads()}


def worker(kind: str, arch: str, n: int, device_name: str, batch: int) -> dict:
    import torch
    import wna_helpers as wna
    from wna_helpers.engine.speed import tune_allocator

    if kind in TRAIN:
        out = train_worker("plain_eager" if kind == "train_plain" else "wna_train", arch, n, 256)
        out.update(kind=kind, n=n * 256, user_s=0.0, sys_s=0.0, peak_rss_mb=_peak_rss_mb(),
                   allocator=wna.allocator_status())
        return out

    if kind not in ("forward_eager", "ci_engine_nomalloc"):
        tune_allocator()
    device = torch.device(device_name)
    model = wna.build_model(arch, seed=0).to(device).eval()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    if kind == ONE_PROCESS:
        return _one_process(model, arch, n, device, batch, sync)
    if kind == STA_ONE_PROCESS:
        return _sta_one_process(model, arch, n, device, batch, sync)
    out: dict = {}
    if kind.startswith("forward") or kind.startswith("conv_alone"):
        cl = kind in ("forward_cl", "forward_compiled", "conv_alone_cl")
        fmt = torch.channels_last if cl else torch.contiguous_format
        if cl:
            model = model.to(memory_format=torch.channels_last)
        gen = torch.Generator(device=device).manual_seed(0)
        pool = torch.rand(min(n, 8 * batch), 1, 28, 28, generator=gen, device=device).to(memory_format=fmt)
        f = model.conv1 if kind.startswith("conv_alone") else model
        with torch.inference_mode():
            if kind == "forward_compiled":
                f = torch.compile(model, dynamic=False)
                t0 = time.perf_counter()
                f(pool[:batch])
                sync()
                out["warmup_seconds"] = time.perf_counter() - t0
            for _ in range(2):
                f(pool[:batch])
            sync()
            if os.environ.get("WNA_BENCH_ENGINE_DEFAULT") == "1" and device.type == "cpu":   # each batch, the fastest
                rates = {}
                for b in SWEEP_BATCHES:
                    for _ in range(2):
                        f(pool[:b])
                    t0 = time.perf_counter()
                    cycle(f, pool, n, b, sync)
                    rates[b] = n / (time.perf_counter() - t0)
                batch = max(rates, key=rates.get)
                out["rates_by_batch"] = rates

            def run() -> None:
                cycle(f, pool, n, batch, sync)
    elif kind == "noise_alone":
        stim = wna.Uniform()

        def run() -> None:
            done = c = 0
            while done < n:
                stim.chunk(c, seed=0, chunk_size=4096, input_shape=(1, 28, 28), device=device)
                done, c = done + 4096, c + 1
            sync()
    elif kind == "wgrad_alone":
        from wna_helpers.methods.sta import BLOCK_SAMPLES, full_map_padding

        conv = model.conv1.to(memory_format=torch.channels_last)
        # the call the STA makes: over the whole map with the layer's padding where that lines the map up (net3),
        # else over the positions it pools, without the padding
        pad = full_map_padding(wna.receptive_field(model, "conv1"), (28, 28)) or (0, 0)
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.inference_mode():
            x = torch.rand(min(n, 8 * batch), 1, 28, 28, generator=gen, device=device)
            act = torch.relu(torch.nn.functional.conv2d(x.to(memory_format=torch.channels_last), conv.weight, conv.bias,
                                                        conv.stride, pad)).contiguous(memory_format=torch.channels_last)
            xc = (x - x.mean()).to(memory_format=torch.channels_last)
        stub = x.new_empty(conv.weight.shape)
        stride, padding = list(conv.stride), list(pad)

        def run() -> None:
            done = 0
            while done < n:
                lo = done % (len(x) - BLOCK_SAMPLES + 1)
                torch.ops.aten.convolution_backward(act[lo:lo + BLOCK_SAMPLES], xc[lo:lo + BLOCK_SAMPLES], stub, None,
                                                   stride, padding, [1, 1], False, [0, 0], 1, [False, True, False])
                done += BLOCK_SAMPLES
            sync()
    else:
        if os.environ.get("WNA_BENCH_ENGINE_DEFAULT") == "1":   # no --batch-size: the engine's own, as shipped
            from wna_helpers.engine.kernel import default_batch_size, probe_model
            from wna_helpers.methods.sta import STAAccumulator
            cap = STAAccumulator.cpu_batch_cap if kind.startswith("sta_engine") else None   # as the engine caps it
            probe = probe_model(model, (1, 28, 28), device)
            batch = default_batch_size(device, probe[3], cap=cap, total_bytes=probe[4])
        opts = {"progress": False, "batch_size": batch}
        if kind == "ci_engine_compiled":
            opts["compile"] = True
        if kind == "sta_engine_window":
            _window_product(None)
        arm = lambda: None  # noqa: E731
        if kind == "ci_engine_memory":
            opts["compile"] = False
            arm = _mark_peak(out, int(os.environ.get("WNA_BENCH_MEM_MARK", "0")), batch)
        if kind in ("sta_engine", "sta_engine_window"):
            def call(m: int) -> None:
                wna.spike_triggered_average(model, "conv1", m, noise=wna.Uniform(), **opts)
        else:
            def call(m: int) -> None:
                wna.classification_images(model, m, noise=wna.Uniform(), **opts)
        t0 = time.perf_counter()
        call(min(n, batch))  # warm-up (and compilation) outside the timing
        out["warmup_seconds"] = time.perf_counter() - t0
        arm()   # the memory mark counts the timed run only

        def run() -> None:
            call(n)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with torch.inference_mode():  # as the warm-up and the engine: no autograd bookkeeping
        run()
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(kind=kind, arch=arch, n=n, device=str(device), batch_size=batch, seconds=seconds,
               samples_per_s=n / seconds, user_s=r1.ru_utime - r0.ru_utime, sys_s=r1.ru_stime - r0.ru_stime,
               peak_rss_mb=_peak_rss_mb(), threads=torch.get_num_threads(),
               allocator=wna.allocator_status())
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# --------------------------------------------------------------------------------------------- parent
def spawn(kind: str, arch: str, n: int, device: str, batch: int, timeout: float, mark: int = 0,
          engine_default: bool = False) -> dict:
    """``kind`` measured in a fresh process; ``engine_default`` (no ``--batch-size``): the engine kinds at the engine's
    own batch for the model (``default_batch_size``), on a CPU the forward passes and the conv alone at the fastest of
    ``SWEEP_BATCHES``; else everything at ``batch``."""
    env = {**os.environ, "WNA_MALLOPT": "0" if kind in ("forward_eager", "ci_engine_nomalloc") else "1",
           "WNA_BENCH_MEM_MARK": str(mark), "WNA_BENCH_ENGINE_DEFAULT": "1" if engine_default else "0"}
    if kind == "train_plain":
        env["WNA_MALLOPT"] = "0"  # the plain loop as a user runs it
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, arch, str(n), "--device", device,
           "--batch-size", str(batch)]
    res = run_worker(cmd, MARK, timeout, env)
    return {"kind": kind, "arch": arch, "n": n, **res} if "error" in res else res


def ratios(rows: list[dict], arch: str, mem_sizes: tuple[int, int]) -> dict:
    got = {r["kind"]: r for r in rows if r["arch"] == arch and "error" not in r and r.get("role") != "memory"}
    rate = {k: v["samples_per_s"] for k, v in got.items()}
    out: dict = {}
    fwd = {k: rate[k] for k in FORWARD if k in rate}
    if "forward_compiled" in fwd and AFTER in rate:
        # the compiled forward before and after the long CI run: their mean brackets the machine's drift
        out["forward_compiled_after_over_before"] = rate[AFTER] / fwd["forward_compiled"]
        fwd["forward_compiled"] = (fwd["forward_compiled"] + rate[AFTER]) / 2
    if fwd:
        best = max(fwd, key=fwd.get)
        out["fastest_forward"] = best
        for k in ("ci_engine", "ci_engine_compiled"):
            if k in rate:
                out[f"{k}_over_fastest_forward"] = rate[k] / fwd[best]
        if "ci_engine" in rate and "forward_cl" in rate:
            out["ci_engine_over_forward_cl"] = rate["ci_engine"] / rate["forward_cl"]
    if "forward_eager" in rate and "forward_malloc" in rate:
        out["allocator_speedup"] = rate["forward_malloc"] / rate["forward_eager"]
    conv = {k: rate[k] for k in ("conv_alone", "conv_alone_cl") if k in rate}
    if conv and "sta_engine" in rate:
        best = max(conv, key=conv.get)
        out["fastest_conv_alone"] = best
        out["sta_over_conv_alone"] = rate["sta_engine"] / conv[best]
        if "conv_alone" in rate:
            out["sta_over_conv_alone_contiguous"] = rate["sta_engine"] / rate["conv_alone"]
        if "sta_engine_window" in rate:
            out["sta_window_over_conv_alone"] = rate["sta_engine_window"] / conv[best]
        if all(k in rate for k in STA_PARTS):
            # the rate of doing the three parts one after the other: noise, convolution, weight gradient
            ceiling = 1.0 / (1.0 / conv[best] + 1.0 / rate["noise_alone"] + 1.0 / rate["wgrad_alone"])
            out["sta_ceiling"] = ceiling
            out["sta_over_ceiling"] = rate["sta_engine"] / ceiling
            out["sta_ceiling_over_conv_alone"] = ceiling / conv[best]
    if ONE_PROCESS in got:
        out["ci_over_forward_one_process"] = got[ONE_PROCESS]["ci_over_forward"]
        for k, key in (("bare_over_forward", "ci_bare_over_forward"), ("ci_over_bare", "ci_over_bare")):
            if k in got[ONE_PROCESS]:   # rows from before the bare loop have neither
                out[key] = got[ONE_PROCESS][k]
    if STA_ONE_PROCESS in got:
        out["sta_over_conv_alone_one_process"] = got[STA_ONE_PROCESS]["sta_over_conv_alone"]
        for k, key in (("bare_over_conv_alone", "sta_bare_over_conv_alone"), ("sta_over_bare", "sta_over_bare")):
            if k in got[STA_ONE_PROCESS]:
                out[key] = got[STA_ONE_PROCESS][k]
    if "train_plain" in rate and "train_wna" in rate:
        out["train_wna_over_plain"] = rate["train_wna"] / rate["train_plain"]
    mem = [r for r in rows if r["arch"] == arch and r.get("role") == "memory" and "error" not in r]
    peak = {r["n"]: r["peak_rss_mb"] for r in mem}
    if len(mem_sizes) == 2 and all(s in peak for s in mem_sizes):
        small = [r["peak_rss_mb"] for r in mem if r["n"] == mem_sizes[0]]
        out["memory_growth_between_mb"] = peak[mem_sizes[1]] - small[0]
        if len(small) > 1:
            out["memory_repeat_spread_mb"] = max(small) - min(small)
        big = [r for r in mem if r["n"] == mem_sizes[1] and "peak_rss_at_mark_mb" in r]
        if big:
            out["memory_growth_mb"] = big[0]["peak_rss_mb"] - big[0]["peak_rss_at_mark_mb"]
    return out


def _n(v: float) -> str:
    return f"{v:,.0f}"


def tables(rows: list[dict], summary: dict, meta: dict) -> str:
    lines = [f"speed_benchmark: {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, "
             f"device {meta['device']}, batch {meta['batch_size']}; load average {meta['load_start']} -> "
             f"{meta['load_end']}; {meta['wall_seconds'] / 60:.1f} min"
             + "".join(f"; re-measured {u['date']} ({u['cpu']}, load average {u['load_start']} -> {u.get('load_end')}, "
                       f"{u.get('wall_seconds', 0) / 60:.1f} min): "
                       + ("the rows marked with that date" if any(r.get("run") == u["date"] for r in rows)
                          else "every row of it measured again since")
                       for u in meta.get("updates", [])), "",
             "| model | kind | n | samples/s | user s | sys s | peak RSS (MB) | note |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['kind']} | {_n(r['n'])} | error | | | | {r['error'][:80]} |")
            continue
        note = f"warm-up {r['warmup_seconds']:.1f} s" if r.get("warmup_seconds", 0) > 1 else ""
        if r.get("role") == "memory":
            note = "memory size" + (f", {r['peak_rss_at_mark_mb']:.0f} MB at n = {meta['mem_sizes'][0]:,}"
                                    if "peak_rss_at_mark_mb" in r else "")
        if meta.get("updates") and r.get("run") != meta["date"]:
            note = f"{note}; {r.get('run')}" if note else str(r.get("run"))
        lines.append(f"| {r['arch']} | {r['kind']} | {_n(r['n'])} | {_n(r['samples_per_s'])} | {r['user_s']:.1f} | "
                     f"{r['sys_s']:.1f} | {r['peak_rss_mb']:.0f} | {note} |")
    lines += ["", "| model | CI engine (10^6, as shipped) / fastest forward | compiled CI engine / fastest forward | "
              "compiled forward after / before the CI run | compiled CI engine / compiled forward, one process | "
              "CI engine / channels-last forward | STA / fastest conv alone | STA / fastest conv alone, one process | "
              "old window-product STA / fastest conv alone | STA / contiguous conv alone | STA's ceiling / fastest conv alone | STA / its ceiling | "
              "allocator speed-up | training wna / plain | "
              "memory growth in one run (MB) | between two runs (MB) | two identical runs differ by (MB) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(d: dict, k: str, fmt: str = "{:.2f}") -> str:
        return fmt.format(d[k]) if k in d else "n/a"
    for arch, s in summary.items():
        lines.append(f"| {arch} | {f(s, 'ci_engine_over_fastest_forward')} ({s.get('fastest_forward', '')}) | "
                     f"{f(s, 'ci_engine_compiled_over_fastest_forward')} | "
                     f"{f(s, 'forward_compiled_after_over_before')} | {f(s, 'ci_over_forward_one_process')} | "
                     f"{f(s, 'ci_engine_over_forward_cl')} | "
                     f"{f(s, 'sta_over_conv_alone')} | {f(s, 'sta_over_conv_alone_one_process')} | "
                     f"{f(s, 'sta_window_over_conv_alone')} | "
                     f"{f(s, 'sta_over_conv_alone_contiguous')} | {f(s, 'sta_ceiling_over_conv_alone')} | "
                     f"{f(s, 'sta_over_ceiling')} | {f(s, 'allocator_speedup')} | "
                     f"{f(s, 'train_wna_over_plain')} | {f(s, 'memory_growth_mb', '{:.0f}')} | "
                     f"{f(s, 'memory_growth_between_mb', '{:.0f}')} | {f(s, 'memory_repeat_spread_mb', '{:.0f}')} |")
    sizes = meta["mem_sizes"]
    memory = (f"; memory growth < {TARGETS['memory_growth_mb']:.0f} MB from n = {sizes[0]:,} to {sizes[1]:,} (peak RSS "
              f"of one run of {sizes[1]:,} samples at its end against after its first {sizes[0]:,})"
              if len(sizes) == 2 else "")
    if any("sta_ceiling" in s for s in summary.values()):
        lines.append("\nThe STA's ceiling: noise alone, the fastest conv alone and the weight-gradient call alone one after "
                     "the other (1 / (1 / each rate summed)), the work the STA cannot avoid.")
    if any("forward_compiled_after_over_before" in s for s in summary.values()):
        lines.append("\nThe compiled forward runs right before and right after the long CI run; the CI ratios divide by "
                     "the mean of the two (the column of their ratio shows how far the machine drifted meanwhile).")
    if any("ci_over_forward_one_process" in s for s in summary.values()):
        lines.append(f"\nOne process: the compiled forward and the CI engine with `compile=True`, alternating {ROUNDS} "
                     "times in one process; the median of the rounds' ratios.")
    if any("sta_over_conv_alone_one_process" in s for s in summary.values()):
        lines.append(f"\nSTA, one process: the STA as shipped and `conv1` alone (both layouts, each batch), alternating "
                     f"{STA_ROUNDS} times in one process; the median of the rounds' ratios to that round's fastest "
                     "conv alone.")
    limits = ("ci_bare_over_forward", "ci_over_bare", "sta_bare_over_conv_alone", "sta_over_bare")
    if any(k in s for s in summary.values() for k in limits):
        lines += ["\nThe limit, one process: the bare loop (the engine's own accumulators fed the same noise and forward by "
                  "a plain loop) beside the engine in the same rounds; the medians of the rounds' ratios.", "",
                  "| model | CI bare loop / compiled forward | CI engine / CI bare loop | STA bare loop / fastest conv "
                  "alone | STA / STA bare loop |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {arch} | " + " | ".join(f(s, k) for k in limits) + " |" for arch, s in summary.items()]
    lines.append(f"\nTargets: CI engine >= {TARGETS['ci_over_fastest_forward']} x fastest forward; STA >= "
                 f"{TARGETS['sta_over_conv_alone']} x conv alone{memory}; training >= "
                 f"{TARGETS['train_wna_over_plain']} x the plain loop (paper_cnn).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "ARCH", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="every kind at this batch; default: the forward passes at "
                    "1,024 (CPU) or 32,768 (CUDA), the engine at its own default for each model (a row's batch_size)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every n by this")
    ap.add_argument("--mem-sizes", default="1e5,1e6", help="two n for the peak-memory runs ('' for none)")
    ap.add_argument("--quick", action="store_true", help="small n, memory at 1e4 and 5e4")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=None)
    ap.add_argument("--update", action="store_true", help="re-measure only these kinds in the saved JSON")
    args = ap.parse_args(argv)
    batch = args.batch_size or (32_768 if args.device.startswith("cuda") else 1024)
    if args.worker:
        kind, arch, n = args.worker
        print(MARK + json.dumps(worker(kind, arch, int(float(n)), args.device, batch)), flush=True)
        return 0
    import torch
    archs = [a for a in args.archs.split(",") if a]
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        ap.error(f"unknown kinds {unknown}; known: {list(KINDS)}")
    sizes = QUICK_N if args.quick else DEFAULT_N
    mem = "1e4,5e4" if args.quick and args.mem_sizes == "1e5,1e6" else args.mem_sizes
    mem_sizes = tuple(int(float(s)) for s in mem.split(",") if s.strip())
    if mem_sizes and len(mem_sizes) != 2:
        ap.error("--mem-sizes takes two sizes")
    meta = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": args.device,
            "batch_size": batch, "engine_batch": "fixed" if args.batch_size else "engine default",
            "load_start": round(os.getloadavg()[0], 2), "mem_sizes": list(mem_sizes),
            "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:]}
    out = Path(args.out) if args.out else RESULTS / ("speed_benchmark.quick.json" if args.quick else
                                                     "speed_benchmark.json")
    kept: list[dict] = []
    if args.update:
        split = [g for g in RATIO_GROUPS if 0 < len(set(g) & set(kinds)) < len(g)]
        if split:
            ap.error(f"--update with {sorted(set(kinds))} would divide rows of two runs; re-measure each group "
                     f"whole: {split}")
        old = json.loads(out.read_text())
        if old["meta"].get("device") != args.device or old["meta"].get("batch_size") != batch:
            ap.error(f"{out} was measured on {old['meta'].get('device')} at batch {old['meta'].get('batch_size')}")
        redo = {(a, k) for a in archs for k in kinds + ([AFTER] if "forward_compiled" in kinds else [])}
        kept = [r for r in old["rows"] if (r.get("arch"), r.get("kind")) not in redo
                and not (mem_sizes and r.get("role") == "memory" and r.get("arch") in archs)]
        for r in kept:
            r.setdefault("run", old["meta"]["date"])
        meta = {**old["meta"], "updates": old["meta"].get("updates", []) + (
            [{k: meta[k] for k in ("date", "cpu", "threads", "torch", "load_start", "argv")}] if kinds or mem_sizes
            else [])}   # nothing to measure: the saved rows' ratios recomputed by this script
        meta["mem_sizes"] = list(mem_sizes) or old["meta"].get("mem_sizes", [])
    t0 = time.perf_counter()
    rows: list[dict] = []
    for arch in archs:
        n = max(batch, int(sizes.get(arch, 50_000) * args.scale))
        for kind in kinds:
            m = n
            if kind in STA_KINDS:
                m = max(batch, int((sizes.get(arch, 50_000) if args.quick else STA_N) * args.scale))
            if kind == "ci_engine" and not args.quick:
                m = int(CI_N * args.scale)
            if kind in TRAIN:
                m = max(2, int(TRAIN_STEPS.get(arch, 20) * (0.25 if args.quick else args.scale)))
            r = spawn(kind, arch, m, args.device, batch, args.timeout, engine_default=args.batch_size is None)
            r["run"] = meta["date"] if not args.update else meta["updates"][-1]["date"]
            new = [r]
            if kind == "ci_engine" and "forward_compiled" in kinds:   # the bracket's second half
                new.append({**spawn("forward_compiled", arch, n, args.device, batch, args.timeout,
                                    engine_default=args.batch_size is None), "kind": AFTER, "run": r["run"]})
            for r in new:
                rows.append(r)
                print(f"{arch:14s} {r['kind']:22s} " + (r["error"] if "error" in r else
                      f"{r['samples_per_s']:10,.0f} samples/s  sys {r['sys_s']:5.1f} s  RSS {r['peak_rss_mb']:6.0f} MB"),
                      flush=True)
        for m in (mem_sizes[0], mem_sizes[1], mem_sizes[0]) if mem_sizes else ():
            r = spawn("ci_engine_memory", arch, m, args.device, batch, args.timeout,
                      mark=mem_sizes[0] if m == mem_sizes[1] else 0, engine_default=args.batch_size is None)
            r["role"] = "memory"
            r["run"] = meta["date"] if not args.update else meta["updates"][-1]["date"]
            rows.append(r)
            at = f", {r['peak_rss_at_mark_mb']:.0f} MB at n={mem_sizes[0]:,}" if "peak_rss_at_mark_mb" in r else ""
            print(f"{arch:14s} memory n={m:<12,} " + (r.get("error") or f"peak RSS {r['peak_rss_mb']:.0f} MB{at}"),
                  flush=True)
    if args.update:
        if kinds or mem_sizes:
            meta["updates"][-1].update(wall_seconds=time.perf_counter() - t0, load_end=round(os.getloadavg()[0], 2))
        rows = kept + rows
        archs = list(dict.fromkeys([r["arch"] for r in rows]))
    else:
        meta["wall_seconds"] = time.perf_counter() - t0
        meta["load_end"] = round(os.getloadavg()[0], 2)
    summary = {a: ratios(rows, a, tuple(meta["mem_sizes"])) for a in archs}
    text = tables(rows, summary, meta)
    print("\n" + text)
    _write_json(out, {"meta": meta, "targets": TARGETS, "rows": rows, "summary": summary, "markdown": text})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
