"""Running a model as fast as the hardware allows: the allocator, the memory layout, compilation.

The engine (:func:`~wna_helpers.engine.kernel.run_engine`) uses all of them; the loops that run a model over
batches themselves (the paper's gamma curves, the attacks, the trojan study's predictions) take the layout
through :func:`fast_forward`.

* **The allocator** (:mod:`~wna_helpers.engine.allocator`): glibc's malloc keeps the large activation buffers a
  forward pass frees for the next batch instead of faulting them in again each time; its names are re-exported
  here. Set the environment variable ``WNA_MALLOPT=0`` to leave the allocator alone.
* **Channels-last.** Convolutions run about twice as fast on CPUs (and use tensor cores on
  GPUs) when the channels are the innermost dimension. :func:`choose_channels_last` decides,
  for any model, whether to run it so: the model must have a 2-d convolution, take
  ``(C, H, W)`` inputs, and give the same logits in both layouts on a probe batch; a model
  that fails any of these runs as it is, silently. :func:`memory_layout` converts the
  4-d weights in place and restores them afterwards (the same ``Parameter`` objects).
* **Compilation**: :func:`compile_forward` wraps the model in ``torch.compile`` for a fixed
  batch shape, warms it up, and falls back to eager execution with a warning if compiling
  fails. Its kernels are kept in a persistent inductor cache under the cache root
  (:func:`inductor_cache`), so a machine pays the cold compile (about 20 s on a 2-core CPU) once and a
  warm one costs 4-5 s. :func:`should_compile` turns it on by itself for CPU runs that tap no layer
  where the gain outweighs what compiling costs: only convolutional models gain (dense and recurrent ones ran
  no faster compiled), and the cost depends on the process' history: a run of at
  least :data:`COMPILE_MIN_SAMPLES` samples pays for a warm first compile; a forward pass this process compiled
  before (another network of the same class and shapes included: dynamo reuses the graph) costs about 0.07 s
  and compiles for runs of :data:`COMPILE_AGAIN_MIN_SAMPLES`; and a forward that has streamed
  :data:`COMPILE_MIN_SAMPLES` samples eagerly over several runs compiles on its next. ``compile=True`` asks for
  it always, ``compile=False`` never.

* **The ReLU inside the convolution**: :func:`fused_conv_relu` gives ``ReLU(conv(x))`` in one oneDNN call (the
  ReLU applied as the convolution writes its output), for a tapped convolution whose accumulators read only the
  ReLU of its output (spike-triggered statistics) where the forward pass stops at it: one pass over the
  activations fewer (``benchmarks/engine_profile.py`` on a 2-core CPU, one channels-last batch of 1,024:
  ``paper_cnn``'s and ``lenet``'s ``conv1`` with its ReLU 9.6 and 10.8 ms fused, 10.9 and 15.1 ms one after the other).

The layout, compilation and the fused ReLU change float32 rounding only: a few noise samples that lie on a
decision boundary may change class, nothing more (the tests bound it).
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from itertools import chain
from typing import Callable, Iterator

import torch
from torch import nn

# the allocator's names, re-exported where they were defined before they had a module of their own
from .allocator import (GLIBC_MMAP_MAX, HEAP_SLACK_MB, MALLOPT_SETTINGS, SETTLE_BATCHES, WATCH_EVERY, HeapWatch,
                        allocator_status, heap_only, release_free_memory, resident_mb, tune_allocator)

__all__ = ["tune_allocator", "allocator_status", "MALLOPT_SETTINGS", "choose_channels_last", "memory_layout",
           "compile_forward", "should_compile", "inductor_cache", "COMPILE_MIN_SAMPLES", "COMPILE_AGAIN_MIN_SAMPLES",
           "forward_signature", "note_eager_run", "compile_history", "forget_compile_history", "release_free_memory",
           "HeapWatch", "resident_mb", "SETTLE_BATCHES", "HEAP_SLACK_MB", "WATCH_EVERY", "fused_conv_relu",
           "fast_forward", "heap_only", "GLIBC_MMAP_MAX"]


#: Samples one process must stream before ``compile=None`` compiles the forward pass (CPU only), set by what
#: compilation costs and gains (``benchmarks/speed_benchmark.py`` on a 2-core CPU, 2026-11-23): the compiled
#: ``paper_cnn`` forward ran 24,268 samples/s against 18,518 eager channels-last, so 5 x 10^5 samples save about
#: 6 s against a warm compile of 4-5 s from the persistent cache. The book's 10^6-sample runs compile.
COMPILE_MIN_SAMPLES = 500_000


def _four_d(model: nn.Module) -> Iterator[torch.Tensor]:
    return (t for t in chain(model.parameters(), model.buffers()) if t.dim() == 4)


@contextmanager
def memory_layout(model: nn.Module, channels_last: bool) -> Iterator[None]:
    """Within the block, ``model``'s 4-d parameters and buffers are stored channels-last.

    The tensors are converted in place (``.data`` is swapped, so the ``Parameter`` objects,
    their gradients and any optimizer holding them are untouched) and restored on exit,
    also when the block raises. With ``channels_last=False`` nothing happens.
    """
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        if channels_last:
            for t in _four_d(model):
                # .to, not .contiguous: a tensor with one input channel counts as contiguous both
                # ways, and only .to gives it the channels-last strides that convolutions go by
                saved.append((t, t.data))
                t.data = t.data.to(memory_format=torch.channels_last)
        yield
    finally:
        for t, data in saved:
            t.data = data


def _logits(out: object) -> torch.Tensor | None:
    return out.float() if isinstance(out, torch.Tensor) else None


def choose_channels_last(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                         requested: bool | None = None) -> bool:
    """Whether the engine runs ``model`` channels-last.

    Args:
        model: in eval mode; its weights are left as they are.
        input_shape: ``(C, H, W)`` of one stimulus.
        device: the model's device.
        requested: ``None`` (default): on a CPU, yes when the model has an :class:`~torch.nn.Conv2d`, takes
            ``(C, H, W)`` inputs and gives the same logits both ways on a probe batch (relative
            difference under 1e-3), else no, silently; on a GPU no (cuDNN ran ``paper_cnn``'s forward pass
            contiguous at 1.22 times its channels-last rate in float32 and 1.22 in bf16 on an H200,
            ``benchmarks/gpu_benchmark.py``, 2026-12-04). ``False``: no. ``True``: yes, or
            ``ValueError`` saying why not.
    """
    if requested is False or (requested is None and device.type != "cpu"):
        return False

    def refuse(why: str) -> bool:
        if requested:
            raise ValueError(f"channels_last=True, but {why}; pass channels_last=None to let the engine choose")
        return False
    if len(input_shape) != 3:
        return refuse(f"the input shape {tuple(input_shape)} is not (C, H, W)")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return refuse("the model has no 2-d convolution")
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand((4, *input_shape), generator=gen, device=device)
    try:
        with torch.inference_mode():
            ref = _logits(model(x))
            with memory_layout(model, True):
                got = _logits(model(x.to(memory_format=torch.channels_last)))
    except Exception as exc:  # a layer that needs contiguous tensors (a .view, a custom op)
        return refuse(f"the model fails with channels-last tensors ({type(exc).__name__}: {exc})")
    if ref is None or got is None or got.shape != ref.shape:
        return refuse("the model does not return a logits tensor")
    scale = float(ref.abs().max()) or 1.0
    if not bool(torch.isfinite(got).all()) or float((got - ref).abs().max()) > 1e-3 * scale:
        return refuse("its logits differ between the two memory layouts")
    return True


@contextmanager
def fast_forward(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                 channels_last: bool | None = None) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """Within the block, a forward function for batches ``(B, *input_shape)`` in the layout the engine would run
    ``model`` in (:func:`choose_channels_last`; the weights converted by :func:`memory_layout` and restored on
    exit). Only float32 rounding changes; what it gains is measured in ``benchmarks/README.md`` ("Where the quick
    build's time goes").

    Args:
        model: in eval mode.
        input_shape: ``(C, H, W)`` of one input (any other shape runs the model as it is).
        device: the model's device.
        channels_last: as for :func:`choose_channels_last`; default None (choose).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3)).eval()
        >>> _ = net(torch.rand(1, 1, 8, 8))
        >>> with fast_forward(net, (1, 8, 8), torch.device("cpu")) as fwd:
        ...     tuple(fwd(torch.rand(5, 1, 8, 8)).shape)
        (5, 3)
    """
    cl = choose_channels_last(model, tuple(input_shape), device, channels_last)
    with memory_layout(model, cl):
        if cl:
            yield lambda x: model(x.to(memory_format=torch.channels_last))
        else:
            yield model


#: Samples a run needs before ``compile=None`` compiles a forward pass this process has compiled already (the same
#: :func:`forward_signature`): dynamo reuses its graph for another model of the same class, so compiling costs about
#: 0.07 s (measured on a 2-core CPU: twelve ``paper_cnn`` networks in one process, 4.1 s for the first, 0.06-0.07 s
#: for each other) against 5-10 microseconds saved a ``paper_cnn`` sample (``benchmarks/compile_benchmark.py``).
COMPILE_AGAIN_MIN_SAMPLES = 20_000

_EAGER_SAMPLES: dict[tuple, int] = {}   # samples streamed eagerly, per forward signature, in this process
_COMPILED: set[tuple] = set()           # signatures compiled in this process
_FAILED: set[tuple] = set()             # signatures whose compilation failed: never tried again by auto


def forward_signature(model: nn.Module, example: torch.Tensor) -> tuple:
    """What decides whether dynamo can reuse a compiled forward pass of ``model`` for batches like ``example``:
    the model's class, the shapes, strides and dtypes of its parameters and buffers (not their values), and the
    batch's shape, strides, dtype and device. Two models with equal signatures share one compiled graph."""
    tensors = tuple((name, tuple(t.shape), t.stride(), t.dtype, str(t.device))
                    for name, t in chain(model.named_parameters(), model.named_buffers()))
    return (type(model), tensors, tuple(example.shape), example.stride(), example.dtype, str(example.device))


def compile_history() -> dict[str, int]:
    """This process' record behind ``compile=None``: forward signatures compiled, failed, and the eager samples
    streamed (``{"compiled": int, "failed": int, "eager_samples": int}``)."""
    return {"compiled": len(_COMPILED), "failed": len(_FAILED), "eager_samples": sum(_EAGER_SAMPLES.values())}


def forget_compile_history() -> None:
    """Clear that record (tests; a process then decides as if it were fresh)."""
    _EAGER_SAMPLES.clear()
    _COMPILED.clear()
    _FAILED.clear()


def should_compile(requested: bool | None, n_samples: int, device: torch.device, tapped: bool,
                   signature: tuple | None = None, *, convolutional: bool = True) -> bool:
    """Whether the engine compiles the forward pass.

    Compiling pays when the samples it speeds up outweigh what it costs, and what it costs depends on what this
    process did before: 3-7 s from the persistent cache for the first graph of a process (with an empty cache,
    tens of seconds; not benchmarked), about 0.07 s
    for a graph it compiled already (the same ``signature``, :func:`forward_signature`; a study that probes
    many networks of one architecture pays once), while it saves 5-10 microseconds a sample for a convolutional
    network and nothing measurable for dense and recurrent ones (``benchmarks/compile_benchmark.py`` on a 2-core
    CPU, 10^5 samples each way: ``paper_cnn`` 1.19 and ``lenet`` 1.07 times as fast compiled; ``logreg``,
    ``mlp`` and ``gru`` 0.98-1.02, after a first compile of 3-5 s). At 10^5 samples a run the first compile
    of a process eats most of what its later runs save (chapter 9's trojan study: 32 runs, 209 s against
    about 213 s eager; ``benchmarks/README.md``).

    Args:
        requested: the ``compile`` run option: True or False decide; None (auto), on the CPU and for a
            ``convolutional`` model, compiles a run of
            at least :data:`COMPILE_MIN_SAMPLES` samples; with a ``signature``, also a run of at least
            :data:`COMPILE_AGAIN_MIN_SAMPLES` whose forward this process has compiled before, and the run that
            takes the samples streamed eagerly through that forward in this process to
            :data:`COMPILE_MIN_SAMPLES` (a forward that keeps being used pays its compile); never a signature
            whose compilation failed here.
        n_samples: samples this run streams in this process.
        device: the model's device (auto never compiles on a GPU, where the warm-up costs more
            than most runs).
        tapped: whether a layer is hooked (STAs, activation statistics): never compiled, since the
            hooks stop or read the pass in the middle.
        signature: the run's :func:`forward_signature`; default None (decide on ``n_samples`` alone).
        convolutional: whether the model has a 2-d convolution (auto compiles only those); default True.

    Raises:
        ValueError: ``requested=True`` with ``tapped``.
    """
    if tapped:
        if requested:
            raise ValueError("compile=True cannot be used when layers are tapped (spike-triggered averages, "
                             "activation statistics); leave compile=None")
        return False
    if requested is not None:
        return requested
    if device.type != "cpu" or not convolutional or signature in _FAILED:
        return False
    if n_samples >= COMPILE_MIN_SAMPLES:
        return True
    if signature is None:
        return False
    if signature in _COMPILED:
        return n_samples >= COMPILE_AGAIN_MIN_SAMPLES
    return _EAGER_SAMPLES.get(signature, 0) + n_samples >= COMPILE_MIN_SAMPLES


def note_eager_run(signature: tuple, n_samples: int) -> None:
    """Record that ``n_samples`` samples ran eagerly through the forward of ``signature`` (:func:`should_compile`)."""
    _EAGER_SAMPLES[signature] = _EAGER_SAMPLES.get(signature, 0) + int(n_samples)


def compile_forward(model: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(model)`` for batches shaped like ``example``, warmed up on it; the model
    itself (with a warning) when compiling fails, for instance without a C++ compiler. The outcome is
    recorded for :func:`should_compile` under the :func:`forward_signature`."""
    inductor_cache()
    signature = forward_signature(model, example)
    try:
        compiled = torch.compile(model, dynamic=False)
        with torch.inference_mode():
            compiled(example)
    except Exception as exc:
        _FAILED.add(signature)
        warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); running the model "
                      f"eagerly", RuntimeWarning, stacklevel=3)
        return model
    _COMPILED.add(signature)
    return compiled


def inductor_cache() -> str:
    """Point TorchInductor's cache at ``<cache root>/inductor`` (``$WNA_CACHE_DIR``) unless
    ``TORCHINDUCTOR_CACHE_DIR`` is already set, so compiled kernels outlive the process; returns the folder."""
    from .places import cache_root

    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not folder:
        folder = str(cache_root() / "inductor")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return folder


def fused_conv_relu(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``ReLU(module(x))`` in one call of oneDNN's convolution with the ReLU as its post-operation, or None where
    that does not apply.

    It applies to a plain :class:`~torch.nn.Conv2d` (not a subclass, which may compute something else) with zero
    padding given in pixels, float32 weights on the CPU and no hooks of its own (they would be skipped), when
    this PyTorch has oneDNN's fused convolution (``torch.ops.mkldnn._convolution_pointwise``, what inductor
    uses) and it gives ``ReLU(module(x))`` on a probe input (relative difference under 1e-5). Any memory layout
    of ``x``; the output has the layout oneDNN chose for it (channels-last for channels-last inputs).

    Example:
        >>> conv = nn.Conv2d(1, 4, 3)
        >>> f = fused_conv_relu(conv)   # None without oneDNN
        >>> x = torch.rand(2, 1, 8, 8)
        >>> f is None or torch.allclose(f(x), torch.relu(conv(x)))
        True
    """
    if type(module) is not nn.Conv2d or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return None
    w = module.weight
    if w.device.type != "cpu" or w.dtype != torch.float32 or (module.bias is not None
                                                              and module.bias.dtype != torch.float32):
        return None
    if getattr(module, "_forward_hooks", None) or getattr(module, "_forward_pre_hooks", None):
        return None
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        op = torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None
    padding, stride, dilation = list(module.padding), list(module.stride), list(module.dilation)

    def run(x: torch.Tensor) -> torch.Tensor:
        return op(x, module.weight, module.bias, padding, stride, dilation, module.groups, "relu", [], "")
    size = [d * (k - 1) + 3 for k, d in zip(module.kernel_size, dilation)]
    probe = torch.rand((2, module.in_channels, *size), generator=torch.Generator().manual_seed(0))
    try:
        with torch.inference_mode():
            got, want = run(probe), torch.relu(module(probe))
    except Exception:  # an op this build cannot run after all
        return None
    if got.shape != want.shape or float((got - want).abs().max()) > 1e-5 * (float(want.abs().max()) or 1.0):
        return None
    return run
