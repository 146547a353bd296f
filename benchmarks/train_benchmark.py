"""Training at the hardware's pace: ``wna.train`` against a plain PyTorch loop doing the same work.

For each architecture (untrained, seeded; speed does not depend on the weights or the data, so the
images are uniform noise with random labels), every variant runs in a fresh subprocess, in one run on
one machine, twice (rounds interleaved), timing ``--steps`` optimizer steps of batch ``--batch`` after a
warm-up of a few steps:

    plain_eager     the loop a user writes: Adam, cross-entropy, shuffled batches, contiguous tensors,
                    glibc's default allocator
    plain_malloc    + the allocator tuned as the engine tunes it (``wna.tune_allocator()``)
    plain_cl        + model and batches channels-last
    plain_compiled  + ``torch.compile(model)`` (the compilation is warm-up, not timed)
    wna_train       ``wna.train`` as shipped (allocator tuned, channels-last for convolutional models,
                    Adam fused, no wait for the device at each step, each ReLU-then-max-pool pair run pool first)
    wna_train_own_order  the same with the model's layers in their own order (a no-op forward hook on the model
                    turns ``pool_before_relu`` off): the control for pooling first, not run unless asked for

Reported: samples/s of each variant (the better of the two rounds), and wna_train / plain_eager
(target >= 1.5 for paper_cnn).

    .venv/bin/python benchmarks/train_benchmark.py                     # the four CNNs, about 10 minutes
    .venv/bin/python benchmarks/train_benchmark.py --archs paper_cnn --steps 40

Writes ``benchmarks/results/train_benchmark.json`` (with its own Markdown table) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from engine_benchmark import RESULTS, _cpu_name, _write_json, run_worker  # same folder: run as a script

ARCHS = ("paper_cnn", "lenet", "net3", "alexnet_small")
KINDS = ("plain_eager", "plain_malloc", "plain_cl", "plain_compiled", "wna_train")
#: Kinds run only when ``--kinds`` names them.
EXTRA_KINDS = ("wna_train_own_order",)
MARK = "@@TRAIN_BENCHMARK@@"
TARGET = 1.5
WARMUP = 3


def worker(kind: str, arch: str, steps: int, batch: int) -> dict:
    import torch
    import torch.nn.functional as F

    import wna_helpers as wna

    n = (steps + WARMUP) * batch
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(n, 1, 28, 28, generator=gen), torch.randint(10, (n,), generator=gen)
    model = wna.build_model(arch, seed=0)
    out: dict = {"kind": kind, "arch": arch, "steps": steps, "batch_size": batch, "threads": torch.get_num_threads()}
    if kind in ("wna_train", "wna_train_own_order"):
        if kind == "wna_train_own_order":
            model.register_forward_hook(lambda m, i, o: None)   # a hooked model is never reordered
        data = wna.Dataset(images, labels, tuple(str(i) for i in range(10)), "noise", "train")
        warm = wna.Dataset(images[:WARMUP * batch], labels[:WARMUP * batch], data.classes, "noise", "train")
        wna.train(model, warm, epochs=1, batch_size=batch, progress=False)       # warm-up (and the allocator)
        data = wna.Dataset(images[:steps * batch], labels[:steps * batch], data.classes, "noise", "train")
        t0 = time.perf_counter()
        wna.train(model, data, epochs=1, batch_size=batch, progress=False)
        seconds = time.perf_counter() - t0
    else:
        if kind != "plain_eager":
            wna.tune_allocator()
        layout = torch.channels_last if kind in ("plain_cl", "plain_compiled") else torch.contiguous_format
        model = model.to(memory_format=layout).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        forward = torch.compile(model) if kind == "plain_compiled" else model
        order = torch.randperm(n, generator=gen)

        def step(i: int) -> None:
            idx = order[i * batch:(i + 1) * batch]
            x, y = images[idx].contiguous(memory_format=layout), labels[idx]
            loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        t0 = time.perf_counter()
        for i in range(WARMUP):
            step(i)
        out["warmup_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(WARMUP, WARMUP + steps):
            step(i)
        seconds = time.perf_counter() - t0
    out.update(seconds=seconds, samples_per_s=steps * batch / seconds)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=256, help="the paper's batch size (default 256)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "train_benchmark.json"), help="where the JSON goes")
    ap.add_argument("--worker", nargs=4, metavar=("KIND", "ARCH", "STEPS", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, arch, steps, batch = args.worker
        print(MARK + json.dumps(worker(kind, arch, int(steps), int(batch))), flush=True)
        return 0
    archs, kinds = args.archs.split(","), args.kinds.split(",")
    if set(kinds) - set(KINDS + EXTRA_KINDS):
        ap.error(f"unknown kinds {sorted(set(kinds) - set(KINDS + EXTRA_KINDS))}; known: {list(KINDS + EXTRA_KINDS)}")
    start, rows = time.time(), []
    env = {**os.environ, "WNA_MALLOPT": "1"}  # the variants decide themselves whether to tune the allocator
    for r in range(args.rounds):
        for arch in archs:
            for kind in kinds:
                res = run_worker([sys.executable, __file__, "--worker", kind, arch, str(args.steps), str(args.batch)],
                                 MARK, timeout=1800, env=env)
                res.update(kind=kind, arch=arch, round=r)
                rows.append(res)
                print(f"{arch:14s} {kind:15s} round {r}: {res.get('samples_per_s', float('nan')):8.0f} samples/s "
                      f"{res.get('error', '')}", flush=True)
    best = {(a, k): max((x.get("samples_per_s", 0.0) for x in rows if x["arch"] == a and x["kind"] == k), default=0.0)
            for a in archs for k in kinds}
    lines = ["| model | " + " | ".join(kinds) + " | wna_train / plain_eager |", "|---|" + "---:|" * (len(kinds) + 1)]
    for a in archs:
        ratio = best[a, "wna_train"] / best[a, "plain_eager"] if best.get((a, "plain_eager")) and \
            best.get((a, "wna_train")) else float("nan")
        lines.append(f"| `{a}` | " + " | ".join(f"{best[a, k]:,.0f}" for k in kinds) + f" | {ratio:.2f} |")
    meta = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "steps": args.steps, "batch_size": args.batch, "rounds": args.rounds,
            "wall_seconds": time.time() - start}
    table = (f"train_benchmark: {meta['cpu']}, {meta['cpus']} CPUs, batch {args.batch}, {args.steps} steps, best of "
             f"{args.rounds} rounds (samples/s); target wna_train >= {TARGET} x plain_eager for paper_cnn\n\n"
             + "\n".join(lines))
    _write_json(Path(args.out), {"meta": meta, "target": TARGET, "rows": rows,
                                                   "best": {f"{a}/{k}": v for (a, k), v in best.items()},
                                                   "markdown": table})
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
