"""Command line for long white-noise runs outside notebooks.

Examples::

    python -m wna_helpers ci --arch paper_cnn --dataset mnist --n-samples 1000000 --out ci.pt
    python -m wna_helpers ci --arch paper_cnn --noise gabor --n-samples 1000000 --out ci_gabor.pt
    python -m wna_helpers sta --arch paper_cnn --layer conv1 --n-samples 200000 --out sta.pt
    python -m wna_helpers ci --model my_model.pt --input-shape 3,32,32 --noise uniform --n-samples 100000 --out ci.pt
    torchrun --nproc_per_node=2 -m wna_helpers ci --arch paper_cnn --untrained --n-samples 100000 --out ci.pt
    python -m wna_helpers code-digest

The noise of a zoo model (``--arch``) defaults to the book's protocol, uniform noise on [0, 1], the range
the models were trained on; ``matched`` (a Gaussian with the training images' mean and spread, clipped to
their range), ``gabor`` (the paper's Gabor noise fitted to the training split) and ``sinusoid`` follow
``--dataset``. A model of your own is a TorchScript file (``torch.jit.save``) or a ``torch.export`` file
(``torch.export.save``, exported with a dynamic batch dimension), given with ``--model`` and
``--input-shape``; name its noise with ``--noise`` (the range its inputs live in). Everything is checked
before the run starts: the output path, the device, the model on a probe batch, the noise. A bad value
prints a message and exits with status 2.

Under ``torchrun`` the ranks split the work (gloo on CPU, NCCL on CUDA); rank 0 trains a model that is
not cached yet while the others wait, and writes the output. The output is a ``torch.save`` file of a
dict of tensors. ``--seed`` seeds the noise, ``--init-seed`` the weights of an ``--untrained`` model.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import zipfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .config import default_device, get_profile
from .engine.atomic import atomic_torch_save
from .engine.checks import check_input_shape
from .engine.fingerprint import code_digest
from .engine.stimuli import Gaussian, Stimulus, Uniform
from .engine.structured_noise import GaborNoise, Sinusoid
from .methods.ci import classification_images
from .methods.sta import spike_triggered_average
from .zoo.data import class_names, dataset_names, load_dataset
from .zoo.models import build_model, model_names
from .zoo.training import get_trained_model

#: The ``--noise`` choices; ``matched`` and ``gabor`` are fitted to ``--dataset``'s training images.
NOISE_CHOICES = ("uniform", "gaussian", "matched", "gabor", "sinusoid")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m wna_helpers", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("code-digest", help="print the digest of wna_helpers' source (part of every results-cache key)")
    for name, help_ in (("ci", "classification images"), ("sta", "spike-triggered averages of a conv layer")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--arch", default=None, choices=model_names(), help="a zoo model (default paper_cnn)")
        p.add_argument("--model", default=None, help="your own model: a TorchScript or torch.export file")
        p.add_argument("--input-shape", default=None, help="with --model: one input's shape, e.g. 3,32,32")
        p.add_argument("--dataset", default="mnist", choices=dataset_names())
        p.add_argument("--profile", default=None, help="training profile: quick or full (default $WNA_PROFILE)")
        p.add_argument("--untrained", action="store_true", help="use freshly initialised weights (--init-seed)")
        p.add_argument("--init-seed", type=int, default=0, help="seed of the untrained weights (default 0)")
        p.add_argument("--n-samples", type=int, required=True, help="number of noise samples")
        p.add_argument("--noise", default=None, choices=NOISE_CHOICES,
                       help="default uniform on [0, 1] for zoo models; required with --model")
        p.add_argument("--mean", type=float, default=None, help="--noise gaussian: its mean (default 0)")
        p.add_argument("--std", type=float, default=None, help="--noise gaussian: its std (default 1)")
        p.add_argument("--low", type=float, default=None, help="--noise uniform: lower bound (default 0)")
        p.add_argument("--high", type=float, default=None, help="--noise uniform: upper bound (default 1)")
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


def check_out(out: str) -> Path:
    """``--out`` as a path a file can be written to, checked before the run."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, e.g. {path / 'ci.pt'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--out {out}: not writable")
    return path


def check_device(name: str | None, distributed: bool) -> torch.device:
    """``--device`` as a device this machine has."""
    if name is None:
        if distributed and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA device; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: the engine runs on cpu or cuda")
    return device


class ExportedModel(nn.Module):
    """A ``torch.export`` program as a module the engine can run: its mode is fixed at export."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "ExportedModel":  # the exported graph has no train mode to switch
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.program(x)


def _first_line(exc: BaseException) -> str:
    """An exception as one short line (torch's messages carry whole tracebacks of scripted code)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:120] if lines else ''}"


def load_user_model(path: str, input_shape: tuple[int, ...], device: torch.device) -> nn.Module:
    """A TorchScript or ``torch.export`` file as a module on ``device``, checked on batches of two sizes."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--model {path}: no such file")
    names = zipfile.ZipFile(p).namelist() if zipfile.is_zipfile(p) else []
    kind = ("torch.export" if any(n.endswith("models/model.json") for n in names) else
            "TorchScript" if any("/code/" in n for n in names) else None)
    if kind is None:
        raise ValueError(f"--model {path} is neither a TorchScript file (torch.jit.save) nor a torch.export file "
                         f"(torch.export.save)")
    try:
        if kind == "TorchScript":
            model: nn.Module = torch.jit.load(str(p), map_location=device)
        else:
            model = ExportedModel(torch.export.load(str(p)).module()).to(device)
    except Exception as exc:
        raise ValueError(f"--model {path} cannot be loaded as a {kind} file ({_first_line(exc)})") from None
    for n in (2, 3):  # an export without a dynamic batch dimension fails on the second size
        try:
            with torch.inference_mode():
                out = model(torch.zeros(n, *input_shape, device=device))
        except Exception as exc:
            raise ValueError(f"--model {path} cannot take a batch of {n} inputs of shape {input_shape} "
                             f"({_first_line(exc)}); check --input-shape, and export with a "
                             f"dynamic batch dimension") from None
        if not (isinstance(out, torch.Tensor) and out.shape[:1] == (n,) and out.dim() == 2):
            raise ValueError(f"--model {path} must return logits (N, classes); got {getattr(out, 'shape', out)}")
    return model


def make_noise(args: argparse.Namespace, input_shape: tuple[int, ...]) -> Stimulus:
    """The ``--noise`` of the run, its parameters checked (fitted ones after the shape check)."""
    kind = args.noise or ("uniform" if args.model is None else None)
    if kind is None:
        raise ValueError("--noise is required with --model: name the noise that matches your model's inputs "
                         "(uniform --low/--high for pixels in a known range, gaussian --mean/--std for "
                         "standardised inputs, sinusoid)")
    for opt, owner in (("mean", "gaussian"), ("std", "gaussian"), ("low", "uniform"), ("high", "uniform")):
        if getattr(args, opt) is not None and kind != owner:
            raise ValueError(f"--{opt} sets {owner} noise; this run's noise is {kind} (add --noise {owner})")
    if kind == "uniform":
        return Uniform(low=0.0 if args.low is None else args.low, high=1.0 if args.high is None else args.high)
    if kind == "gaussian":
        return Gaussian(mean=0.0 if args.mean is None else args.mean, std=1.0 if args.std is None else args.std)
    if kind == "sinusoid":
        return Sinusoid(image_shape=input_shape)
    if input_shape != (1, 28, 28):
        raise ValueError(f"--noise {kind} is fitted to --dataset's 1x28x28 training images; for inputs of shape "
                         f"{input_shape} use uniform, gaussian or sinusoid")
    train = load_dataset(args.dataset, "train").images
    return Gaussian.matched(train, clip=True) if kind == "matched" else GaborNoise.fit(train)


def _model(args: argparse.Namespace, device: torch.device, rank: int) -> tuple[nn.Module, tuple[int, ...], str]:
    """The model, its input shape and a name for the summary."""
    if args.model is not None:
        if args.arch or args.untrained or args.profile:
            raise ValueError("--model is your own model: --arch, --untrained and --profile do not apply to it")
        if args.input_shape is None:
            raise ValueError("--model needs --input-shape, the shape of one input, e.g. 1,28,28")
        try:
            shape = check_input_shape([int(s) for s in args.input_shape.split(",")])
        except ValueError:
            raise ValueError(f"--input-shape must be positive integers separated by commas, e.g. 3,32,32; got "
                             f"{args.input_shape!r}") from None
        return load_user_model(args.model, shape, device), shape, Path(args.model).name
    if args.input_shape is not None:
        raise ValueError("--input-shape is for --model; a zoo model (--arch) knows its own")
    if args.untrained and args.profile:
        raise ValueError("--profile sets how a model is trained; it has no effect with --untrained (drop one)")
    arch = args.arch or "paper_cnn"
    if args.untrained:
        return build_model(arch, seed=args.init_seed).to(device), (1, 28, 28), f"{arch} (untrained)"
    prof = get_profile(args.profile)
    model, _ = get_trained_model(arch, args.dataset, prof, device=device, progress=rank == 0)
    return model, (1, 28, 28), f"{arch} ({args.dataset})"


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
    out = check_out(args.out)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = check_device(args.device, distributed)
    if args.n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer (--n-samples), got {args.n_samples}")
    if args.command == "sta" and args.model is not None:
        raise ValueError("sta taps a convolution by name, which TorchScript and exported models do not expose; "
                         "use wna.spike_triggered_average on the Python model")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        model, shape, name = _model(args, device, rank)
        noise = make_noise(args, shape)
        common = dict(noise=noise, input_shape=shape, seed=args.seed, batch_size=args.batch_size,
                      progress=not args.no_progress, checkpoint=args.checkpoint,
                      autocast={"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.autocast or ""))
        if args.command == "ci":
            res = classification_images(model, args.n_samples, **common)
        else:
            res = spike_triggered_average(model, args.layer, args.n_samples, **common)
        if rank == 0:
            result = dict(dataclasses.asdict(res))
            result.update(model=name, dataset=args.dataset, untrained=args.untrained, noise=noise.describe())
            atomic_torch_save(result, out)
            _summary(args, res, name, noise)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _summary(args: argparse.Namespace, res: object, name: str, noise: Stimulus) -> None:
    if args.command == "ci":
        names = class_names(args.dataset) if args.model is None else ()
        print(f"classification images of {name}, n={res.n_samples}, {noise.label()}, "  # type: ignore[attr-defined]
              f"{res.world_size} process(es)")  # type: ignore[attr-defined]
        for c, k in enumerate(res.counts.tolist()):  # type: ignore[attr-defined]
            print(f"  class {c} ({names[c] if c < len(names) else c}): {k} samples "
                  f"({100 * k / res.n_samples:.2f}%)")  # type: ignore[attr-defined]
        print(f"  entropy {res.entropy:.3f} bits; wrote {args.out}")  # type: ignore[attr-defined]
    else:
        print(f"STA of {name}.{args.layer}, n={res.n_samples}, {noise.label()}, RF {res.rf.size}, "  # type: ignore[attr-defined]
              f"{res.positions} positions pooled, {res.world_size} process(es); wrote {args.out}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
