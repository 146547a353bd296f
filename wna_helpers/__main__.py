"""Command line for long white-noise runs outside notebooks.

Examples::

    python -m wna_helpers ci --arch paper_cnn --dataset mnist --n-samples 1000000 --out ci.pt
    python -m wna_helpers sta --arch paper_cnn --layer conv1 --n-samples 200000 --out sta.pt
    torchrun --nproc_per_node=2 -m wna_helpers ci --arch paper_cnn --untrained --n-samples 100000 --out ci.pt
    python -m wna_helpers code-digest

Under ``torchrun`` the ranks split the work (gloo on CPU, NCCL on CUDA); rank 0 trains
a model that is not cached yet while the others wait, and writes the output. The
output is a ``torch.save`` file of a dict of tensors. ``--seed`` seeds the noise,
``--init-seed`` the weights of an ``--untrained`` model. A bad value prints a message
and exits with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from .engine.atomic import atomic_torch_save
from .methods.ci import classification_images
from .config import default_device
from .zoo.data import class_names, dataset_names
from .engine.fingerprint import code_digest
from .zoo.models import build_model, model_names
from .methods.sta import spike_triggered_average
from .engine.stimuli import NOISE_SHORTHANDS, Gaussian, Stimulus, Uniform
from .zoo.training import get_trained_model


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m wna_helpers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("code-digest", help="print the digest of wna_helpers' source (part of every results-cache key)")
    for name, help_ in (("ci", "classification images"), ("sta", "spike-triggered averages of a conv layer")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--arch", default="paper_cnn", choices=model_names())
        p.add_argument("--dataset", default="mnist", choices=dataset_names())
        p.add_argument("--profile", default=None, help="training profile: quick or full (default $WNA_PROFILE)")
        p.add_argument("--untrained", action="store_true", help="use freshly initialised weights (--init-seed)")
        p.add_argument("--init-seed", type=int, default=0, help="seed of the untrained weights (default 0)")
        p.add_argument("--n-samples", type=int, required=True, help="number of noise samples")
        p.add_argument("--noise", default="gaussian", choices=list(NOISE_SHORTHANDS))
        p.add_argument("--mean", type=float, default=0.0, help="Gaussian mean (default 0)")
        p.add_argument("--std", type=float, default=1.0, help="Gaussian std (default 1)")
        p.add_argument("--low", type=float, default=0.0, help="uniform lower bound (default 0)")
        p.add_argument("--high", type=float, default=1.0, help="uniform upper bound (default 1)")
        p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
        p.add_argument("--autocast", choices=("bf16", "fp16"), default=None)
        p.add_argument("--checkpoint", default=None, help="file to save progress to and resume from")
        p.add_argument("--out", required=True, help="output file (torch.save of a dict of tensors)")
        p.add_argument("--no-progress", action="store_true")
        if name == "sta":
            p.add_argument("--layer", default="conv1")
    return ap


def _noise(args: argparse.Namespace) -> Stimulus:
    if args.noise == "gaussian":
        return Gaussian(mean=args.mean, std=args.std)
    return Uniform(low=args.low, high=args.high)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "code-digest":
        print(code_digest())
        return 0
    try:
        return _run(args)
    except ValueError as exc:  # a bad value: say what was wrong, as argparse does for its own errors
        parser.error(str(exc))
    return 2  # not reached: parser.error exits


def _run(args: argparse.Namespace) -> int:
    noise = _noise(args)  # checks the noise parameters before any heavy work
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.device:
        device = torch.device(args.device)
    elif distributed and torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = default_device()
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        if args.untrained:
            model = build_model(args.arch, seed=args.init_seed).to(device)
        else:
            model, _ = get_trained_model(args.arch, args.dataset, args.profile, device=device,
                                         progress=rank == 0)
        common = dict(noise=noise, seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
                      checkpoint=args.checkpoint,
                      autocast={"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.autocast or ""))
        if args.command == "ci":
            res = classification_images(model, args.n_samples, **common)
        else:
            res = spike_triggered_average(model, args.layer, args.n_samples, **common)
        if rank == 0:
            out = {k: v for k, v in dataclasses.asdict(res).items()}
            out.update(arch=args.arch, dataset=args.dataset, untrained=args.untrained)
            atomic_torch_save(out, Path(args.out))
            if args.command == "ci":
                names = class_names(args.dataset)
                print(f"classification images of {args.arch} ({'untrained' if args.untrained else args.dataset}), "
                      f"n={res.n_samples}, {noise}, {res.world_size} process(es)")
                for c, k in enumerate(res.counts.tolist()):
                    print(f"  class {c} ({names[c] if c < len(names) else c}): {k} samples "
                          f"({100 * k / res.n_samples:.2f}%)")
                print(f"  entropy {res.entropy:.3f} bits; wrote {args.out}")
            else:
                print(f"STA of {args.arch}.{args.layer}, n={res.n_samples}, RF {res.rf.size}, "
                      f"{res.positions} positions pooled, {res.world_size} process(es); wrote {args.out}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
