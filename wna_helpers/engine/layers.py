"""The layers of any model: their names, execution order and shapes, from one forward pass."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_layer_names", "trace_layers", "layer_table", "WidestOutput"]


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the :class:`~torch.nn.Conv2d` submodules of ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def trace_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module, tuple, tuple]]:
    """Every leaf layer in execution order, from one forward pass of a zero input.

    The model's training flag is restored and no gradient is recorded.

    Returns:
        ``(name, module, input shape, output shape)`` per call of a leaf layer (shapes with the batch of 1).
    """
    order: list[tuple[str, nn.Module, tuple, tuple]] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append((n, m, tuple(i[0].shape), tuple(o.shape))))
             for n, m in model.named_modules() if n and not list(m.children())]
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order


class WidestOutput:
    """Within the block, :attr:`bytes` is the bytes per sample of the widest tensor a leaf layer of ``model`` has
    returned in forward passes of ``samples`` inputs (0 before any), and :attr:`total` the bytes per sample of all
    the tensors its leaf layers returned; a layer that takes no hooks (a scripted one) is not measured. The
    engine's CPU batch follows both (:func:`~wna_helpers.engine.allocator.heap_batch_size`).

    Example:
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
        >>> with WidestOutput(model, samples=2) as w:
        ...     _ = model(torch.zeros(2, 1, 8, 8))
        >>> w.bytes   # the convolution's 4 x 6 x 6 float32 outputs
        576
        >>> w.total   # and the flattened copy's, and the two logits
        1160
    """

    def __init__(self, model: nn.Module, samples: int) -> None:
        self.model, self.samples, self.bytes, self.total = model, samples, 0, 0
        self.hooks: list = []

    def measure(self, out: object) -> None:
        """Note the tensors a layer returned."""
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                size = t.numel() * t.element_size() // self.samples
                self.bytes, self.total = max(self.bytes, size), self.total + size

    def __enter__(self) -> "WidestOutput":
        for m in self.model.modules():
            if next(m.children(), None) is None:
                try:
                    self.hooks.append(m.register_forward_hook(lambda m, i, o: self.measure(o)))
                except (RuntimeError, AttributeError, TypeError):  # a module that takes no hooks
                    pass
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks.clear()


def layer_table(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[dict[str, object]]:
    """Output shape and parameter count of every leaf layer, in execution order.

    Args:
        model: any module; its state (training flag, grads) is left untouched.
        input_shape: ``(C, H, W)``; default ``model.input_shape``.

    Returns:
        A list of dicts with keys ``name``, ``type``, ``output_shape``, ``params``.
    """
    shape = tuple(input_shape or getattr(model, "input_shape"))
    return [{"name": name, "type": type(mod).__name__, "output_shape": out[1:],
             "params": sum(p.numel() for p in mod.parameters(recurse=False))}
            for name, mod, _, out in trace_layers(model, shape)]
