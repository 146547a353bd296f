"""Seeded training and a cache of trained models.

:func:`train` trains any classifier with Adam; :func:`get_trained_model` returns a
trained registry model for (architecture, dataset, profile), training it once
and storing it under ``$WNA_CACHE_DIR`` (default ``~/.cache/wna``).
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
import platform
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..engine.atomic import atomic_torch_save, remove_orphans
from ..engine.allocator import tune_allocator
from ..config import Profile, cache_root, default_device, get_profile
from .data import Dataset, canonical_name, load_dataset
from .models import build_model
from .pool_first import pool_before_relu

__all__ = ["TrainResult", "train", "evaluate", "deterministic_cudnn", "get_trained_model", "checkpoint_path", "recipe_digest",
           "CACHE_FORMAT", "SCHEDULES", "LOSSES", "software_versions", "uses_channels_last", "read_checkpoint",
           "train_recipe", "write_checkpoint"]

#: Bumped whenever the training recipe changes so that old checkpoints are retrained (2: channels-last CNNs).
CACHE_FORMAT = 2


@dataclass
class TrainResult:
    """What :func:`train` measured.

    Attributes:
        test_accuracy: accuracy on the test set after the last epoch (fraction).
        epoch_test_accuracy: test accuracy after each epoch.
        epoch_train_accuracy: running training accuracy of each epoch.
        step_loss: training loss every ``log_every`` steps.
        log_every: steps between two entries of ``step_loss``.
        seconds: wall time of training, not counting the recording of snapshots.
        snapshots: one dict per requested snapshot step, in step order: ``step`` (optimizer steps
            done), ``epoch`` (``step / steps_per_epoch``, a float), ``test_accuracy`` (NaN without a
            test set) and ``state_dict`` (a CPU copy of the model's); see :func:`train`. Left out of
            the ``history`` in a checkpoint's JSON meta.
    """

    test_accuracy: float
    epoch_test_accuracy: list[float] = field(default_factory=list)
    epoch_train_accuracy: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    log_every: int = 10
    seconds: float = 0.0
    snapshots: list[dict[str, object]] = field(default_factory=list)


def _history(result: TrainResult) -> dict[str, object]:
    """``asdict(result)`` without the snapshots (their state dicts are not JSON): a checkpoint's meta."""
    history = asdict(replace(result, snapshots=[]))
    history.pop("snapshots")
    return history


def _rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose generators :func:`torch.random.fork_rng` must save for ``device``."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _snapshot_steps(steps: Sequence[int], total: int) -> list[int]:
    """``steps`` checked (integers from 0 to ``total``), sorted, without repeats.

    Raises:
        ValueError: a step that is not an integer, negative, or beyond ``total``.
    """
    try:
        items = list(steps) if not isinstance(steps, (str, bytes)) else None
    except TypeError:
        items = None
    if items is None:
        raise ValueError(f"snapshot steps must be a sequence of integers from 0 to {total}, got {steps!r}")
    bad = [s for s in items if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= s <= total]
    if bad:
        raise ValueError(f"snapshot steps must be integers from 0 (before training) to {total} (the last "
                         f"optimizer step), got {bad}")
    return sorted({int(s) for s in items})


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, *, batch_size: int = 1000,
             device: torch.device | str | None = None) -> tuple[float, torch.Tensor]:
    """Accuracy of ``model`` on ``data`` and its predictions.

    Returns:
        ``(accuracy, predictions)``; predictions is an int64 tensor ``(N,)`` on the CPU.
        The model's training flag is restored.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        preds = torch.cat([model(data.images[i:i + batch_size].to(device)).argmax(1).cpu()
                           for i in range(0, len(data), batch_size)])
    finally:
        model.train(was_training)
    return float((preds == data.labels).double().mean()), preds


def train(model: nn.Module, train_data: Dataset, test_data: Dataset | None = None, *,
          epochs: int = 1, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
          device: torch.device | str | None = None, progress: bool = True,
          log_every: int = 10, snapshot_steps: Sequence[int] = (), schedule: str = "cosine",
          channels_last: bool | None = None, loss: str = "cross_entropy") -> TrainResult:
    """Train ``model`` in place with Adam and cross-entropy, at the hardware's pace.

    As fast as the engine runs a model (:mod:`wna_helpers.engine.speed`): glibc's allocator tuned once
    per process, a convolutional model trained channels-last (weights and batches; ``paper_cnn`` 1.4 to 1.7
    times as fast on the 2-core CPUs of ``benchmarks/README.md``), Adam fused into one kernel, and no wait for
    the device at every step (the loss and the accuracy are read only when they are logged), and each
    ReLU-then-max-pool pair of a sequential model run pool first
    (:func:`~wna_helpers.zoo.pool_first.pool_before_relu`: the same numbers bit for bit, ``paper_cnn`` 1.06-1.11
    times as fast again). Channels-last and
    the fused update change float32 rounding, not the recipe: the same seed gives the same run on one machine
    with the same settings, and another memory layout a slightly different one (:func:`checkpoint_path` keys
    on it). The model comes back in the default (contiguous) layout.

    Training is the same, bit for bit, with and without snapshots: recording one copies the weights
    and evaluates the test set in eval mode under a forked random generator, then puts the model
    back into train mode.

    Args:
        model: a classifier returning logits.
        train_data: training split (:class:`~wna_helpers.zoo.data.Dataset`).
        test_data: evaluated after each epoch; default None (then ``test_accuracy`` is NaN).
        epochs: default 1.
        batch_size: default 64.
        lr: Adam learning rate, decayed to zero over training on a cosine; default 1e-3.
        seed: seeds the shuffling (its own generator); default 0. Deterministic on a CPU, and on a GPU, where
            cuDNN is held to its deterministic algorithms while the model trains (:func:`deterministic_cudnn`).
        device: default the model's device.
        progress: show a ``tqdm`` bar with loss and accuracy; default True.
        log_every: record the loss every this many steps; default 10.
        snapshot_steps: optimizer steps after which the model is recorded in
            ``TrainResult.snapshots`` (0: before training; the last: ``epochs * ceil(N / batch_size)``);
            default none.
        schedule: the learning rate over training: ``"cosine"`` (decayed to zero, the book's recipe) or
            ``"constant"`` (the paper's); default ``"cosine"``.
        channels_last: train channels-last: None (default) when the model has a 2-d convolution, True or
            False to decide.
        loss: ``"cross_entropy"`` of the logits (default), or ``"softmax_twice"``: the cross-entropy of the
            softmax of the logits, as the paper's notebooks that put a softmax inside ``forward`` trained (the
            loss then never falls below about 1.46, and the gradients are smaller).

    Returns:
        A :class:`TrainResult`. The model is left in eval mode on ``device``, contiguous.

    Raises:
        ValueError: ``epochs`` or ``batch_size`` below 1, an unknown ``schedule`` or ``loss``, or a snapshot step that is
            not an integer from 0 to the number of optimizer steps (raised before training).

    Example:
        >>> model = build_model("logreg", seed=0)
        >>> res = train(model, load_dataset("mnist", limit=640), epochs=2, batch_size=64,
        ...             snapshot_steps=[0, 10, 20], progress=False)
        >>> [(s["step"], s["epoch"]) for s in res.snapshots]
        [(0, 0.0), (10, 1.0), (20, 2.0)]
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    steps_per_epoch = (len(train_data) + batch_size - 1) // batch_size
    wanted = set(_snapshot_steps(snapshot_steps, epochs * steps_per_epoch))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tune_allocator()
    layout = torch.channels_last if uses_channels_last(model, channels_last) else torch.contiguous_format
    run = _Training(model, train_data, test_data, device, steps_per_epoch, log_every, layout, loss == "softmax_twice")
    model.to(device=device, memory_format=layout).train()
    gen = torch.Generator().manual_seed(seed)
    opt = adam(model, lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch) \
        if schedule == "cosine" else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    t0 = time.perf_counter()
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress,
               desc=f"train {getattr(model, 'arch', type(model).__name__)}", unit="step")
    if 0 in wanted:
        run.record(0)
    with deterministic_cudnn(device):
        for epoch in range(epochs):
            run.epoch(epoch, torch.randperm(len(train_data), generator=gen), batch_size, opt, sched, bar, wanted)
    bar.close()
    model.to(memory_format=torch.contiguous_format).eval()
    result = run.result
    result.seconds = time.perf_counter() - t0 - run.snapshot_seconds
    if result.epoch_test_accuracy:
        result.test_accuracy = result.epoch_test_accuracy[-1]
    return result


def adam(model: nn.Module, lr: float) -> torch.optim.Adam:
    """Adam over ``model``'s parameters, fused into one kernel where the device has it (the same update in one
    pass over the parameters; float rounding may differ from the per-parameter loop)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(model.parameters(), lr=lr)


#: The learning-rate schedules of :func:`train`.
SCHEDULES = ("cosine", "constant")
#: The losses of :func:`train`: the cross-entropy of the logits, or of their softmax (the paper's softmax inside
#: ``forward``, so the softmax is applied twice).
LOSSES = ("cross_entropy", "softmax_twice")


@contextmanager
def deterministic_cudnn(device: torch.device) -> Iterator[None]:
    """On a CUDA ``device``, cuDNN's deterministic algorithms (and no benchmarking of them) while the block runs, so
    one seed trains one model: its default weight-gradient algorithms add in no set order, and two trainings of
    ``paper_cnn`` on an H200 ended at different weights (``benchmarks/gpu_benchmark.py``'s run of 2026-12-04:
    its snapshots then no longer ended at the cached model). The settings are put back after. Elsewhere nothing.
    """
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


def uses_channels_last(model: nn.Module, requested: bool | None = None) -> bool:
    """Whether :func:`train` runs ``model`` channels-last: ``requested``, or (None) when it has a 2-d convolution."""
    if requested is not None:
        return bool(requested)
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


class _Training:
    """One call of :func:`train`: its running numbers, its snapshots and its epochs."""

    def __init__(self, model: nn.Module, train_data: Dataset, test_data: Dataset | None, device: torch.device,
                 steps_per_epoch: int, log_every: int, layout: torch.memory_format, softmax_twice: bool = False) -> None:
        self.model, self.train_data, self.test_data, self.device = model, train_data, test_data, device
        self.forward = pool_before_relu(model) or model   # the same numbers, bit for bit
        self.softmax_twice = softmax_twice
        self.steps_per_epoch, self.log_every, self.layout = steps_per_epoch, log_every, layout
        self.result = TrainResult(test_accuracy=float("nan"), log_every=log_every)
        self.snapshot_seconds = 0.0
        self.step = 0
        self.running = 0.0

    def record(self, step: int, acc: float | None = None) -> None:
        """Append the snapshot after ``step`` steps; ``acc``: the test accuracy if already measured."""
        t = time.perf_counter()
        if acc is None and self.test_data is not None:
            with torch.random.fork_rng(devices=_rng_devices(self.device)):  # draws nothing from training's generators
                acc, _ = evaluate(self.model, self.test_data, device=self.device)
            self.model.train()
        self.result.snapshots.append({
            "step": step, "epoch": step / self.steps_per_epoch,
            "test_accuracy": float("nan") if acc is None else acc,
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}})
        self.snapshot_seconds += time.perf_counter() - t

    def epoch(self, epoch: int, order: torch.Tensor, batch_size: int, opt: torch.optim.Optimizer,
              sched: torch.optim.lr_scheduler.LRScheduler, bar: tqdm, wanted: set[int]) -> None:
        """One pass over the training data in ``order``, then the test accuracy and a snapshot if wanted."""
        data, n = self.train_data, len(self.train_data)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)  # read only when logged: no wait per step
        seen = 0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            x = data.images[idx].to(self.device).contiguous(memory_format=self.layout)
            y = data.labels[idx].to(self.device)
            logits = self.forward(x)
            loss = F.cross_entropy(logits.softmax(1) if self.softmax_twice else logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            self.step += 1
            correct += (logits.argmax(1) == y).sum()
            seen += len(idx)
            if self.step % self.log_every == 0:
                lv = float(loss.detach())
                self.running = 0.9 * self.running + 0.1 * lv if self.result.step_loss else lv
                self.result.step_loss.append(lv)
                bar.set_postfix(epoch=epoch + 1, loss=f"{self.running:.3f}", acc=f"{int(correct) / seen:.3f}")
            bar.update(1)
            if self.step in wanted and i + batch_size < n:  # mid-epoch; an epoch's end is recorded below
                self.record(self.step)
        correct = int(correct)
        self.result.epoch_train_accuracy.append(correct / seen)
        acc = None
        if self.test_data is not None:
            acc, _ = evaluate(self.model, self.test_data, device=self.device)
            self.result.epoch_test_accuracy.append(acc)
            bar.set_postfix(epoch=epoch + 1, loss=f"{self.running:.3f}", test_acc=f"{acc:.4f}")
        if self.step in wanted:
            self.record(self.step, acc)


def _recipe(arch: str, dataset: str, profile: Profile) -> dict[str, object]:
    """The settings a cached checkpoint must match to be reused (the profile's name is not one)."""
    return {"format": CACHE_FORMAT, "arch": arch, "dataset": dataset,
            "epochs": profile.epochs_for(arch, dataset), "seed": profile.seed, "lr": profile.lr_for(arch, dataset),
            "batch_size": profile.batch_size, "train_subset": profile.train_subset,
            "channels_last": uses_channels_last(build_model(arch, seed=0))}  # seeded: the global generator untouched


def recipe_digest(arch: str, dataset: str, profile: Profile | str | None = None) -> str:
    """16 hex characters naming the training recipe of (arch, dataset) under ``profile``."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    key = json.dumps(_recipe(arch, canonical_name(dataset), prof), sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def checkpoint_path(arch: str, dataset: str, profile: Profile | str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint of (arch, dataset) trained with ``profile``'s recipe lives: profiles
    with the same training settings share it, any other setting gives another file."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / "models" / f"{arch}-{canonical_name(dataset)}-{recipe_digest(arch, dataset, profile)}.pt"


def software_versions() -> dict[str, str]:
    """The versions of torch, torchvision and Python, as a checkpoint records them."""
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}


def get_trained_model(arch: str, dataset: str, profile: Profile | str | None = None, *,
                      cache_dir: str | os.PathLike | None = None,
                      device: torch.device | str | None = None,
                      progress: bool = True) -> tuple[nn.Module, dict[str, object]]:
    """A trained registry model, from the cache or trained now and cached.

    A checkpoint is reused only when its recipe (architecture, dataset, epochs, seed,
    learning rate, batch size, training subset, cache format) matches; a corrupt or
    mismatched checkpoint is retrained with a warning. Writes are atomic. Under
    ``torch.distributed`` rank 0 trains while the other ranks wait, then they load its checkpoint.

    Args:
        arch: registry name (see :func:`~wna_helpers.zoo.models.model_names`).
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        profile: a :class:`~wna_helpers.config.Profile` or its name; default ``$WNA_PROFILE``.
        cache_dir: default ``$WNA_CACHE_DIR`` or ``~/.cache/wna``.
        device: where the model is returned; default CUDA when present.
        progress: show the training bar; default True.

    Returns:
        ``(model, meta)``: the model in eval mode on ``device``; ``meta`` holds the recipe,
        ``test_accuracy``, the training ``history``, ``train_seconds``, ``versions``.

    Example:
        >>> model, meta = get_trained_model("paper_cnn", "mnist", "quick")
        >>> meta["test_accuracy"] > 0.9
        True
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    dataset = canonical_name(dataset)
    build_model(arch, seed=prof.seed)  # validates arch first (seeded: the global generator is not drawn from)
    device = torch.device(device) if device is not None else default_device()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_rank() == 0:
            out = _load_or_train(arch, dataset, prof, cache_dir, device, progress)
        dist.barrier()  # the others wait for rank 0's checkpoint, then load it
        if dist.get_rank() != 0:
            out = _load_or_train(arch, dataset, prof, cache_dir, device, False)
        return out
    return _load_or_train(arch, dataset, prof, cache_dir, device, progress)


def read_checkpoint(path: Path, recipe: dict[str, object],
                     model: nn.Module) -> tuple[dict[str, object] | None, str | None]:
    """Load the checkpoint at ``path`` into ``model`` if it was trained with ``recipe``.

    Returns:
        ``(meta, None)`` when loaded; ``(None, None)`` when there is no file; ``(None, problem)`` when
        the file is unusable, ``problem`` completing "checkpoint <path> ..." (``model`` may then
        hold part of its weights: build a fresh one).
    """
    if not path.exists():
        return None, None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(blob["meta"])
        if {k: meta.get(k) for k in recipe} != recipe:
            return None, (f"was trained with another recipe "
                          f"({ {k: meta.get(k) for k in recipe if meta.get(k) != recipe[k]} })")
        model.load_state_dict(blob["state_dict"])
        return meta, None
    except Exception as exc:  # corrupt, truncated, or not ours
        return None, f"is unreadable ({type(exc).__name__}: {exc})"


def train_recipe(model: nn.Module, arch: str, dataset: str, prof: Profile, device: torch.device,
                  progress: bool, *, train_data: Dataset | None = None,
                  snapshot_steps: Sequence[int] = ()) -> tuple[TrainResult, dict[str, object]]:
    """Train ``model`` (fresh from ``build_model(arch, seed=prof.seed)``) with the profile's recipe.

    The one place the recipe is applied: the profile's data, epochs, learning rate and batch size,
    the global generator seeded with ``prof.seed`` for training only and restored afterwards.

    Returns:
        ``(result, meta)``: meta is what the checkpoint stores (JSON-ready; no snapshots).
    """
    if train_data is None:
        train_data = load_dataset(dataset, "train", limit=prof.train_subset)
    test_data = load_dataset(dataset, "test")
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(prof.seed)
        result = train(model, train_data, test_data, epochs=prof.epochs_for(arch, dataset),
                       batch_size=prof.batch_size, lr=prof.lr_for(arch, dataset), seed=prof.seed, device=device,
                       progress=progress, snapshot_steps=snapshot_steps)
    meta = {**_recipe(arch, dataset, prof), "profile": prof.name, "test_accuracy": result.test_accuracy,
            "train_seconds": result.seconds, "train_size": len(train_data), "history": _history(result),
            "versions": software_versions(), "device": str(device)}
    return result, meta


def write_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, object]) -> None:
    """Write a checkpoint atomically: CPU weights and the JSON meta."""
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    atomic_torch_save({"state_dict": state, "meta": json.dumps(meta)}, path)


def _load_or_train(arch: str, dataset: str, prof: Profile, cache_dir: str | os.PathLike | None,
                   device: torch.device, progress: bool) -> tuple[nn.Module, dict[str, object]]:
    model = build_model(arch, seed=prof.seed)
    path = checkpoint_path(arch, dataset, prof, cache_dir)
    remove_orphans(path)  # what a killed write left beside it
    meta, problem = read_checkpoint(path, _recipe(arch, dataset, prof), model)
    if meta is not None:
        return model.to(device).eval(), meta
    if problem is not None:
        warnings.warn(f"checkpoint {path} {problem}; retraining", stacklevel=3)
        model = build_model(arch, seed=prof.seed)  # a failed load may have left some of its weights
    _, meta = train_recipe(model, arch, dataset, prof, device, progress)
    write_checkpoint(path, model.state_dict(), meta)
    return model.eval(), meta
