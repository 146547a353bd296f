"""The layers of any model: their names, execution order and shapes, from one forward pass."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_layer_names", "trace_layers", "layer_table"]


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
