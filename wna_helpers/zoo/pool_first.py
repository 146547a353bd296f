"""A training forward pass that max-pools before the ReLU: the same numbers, bit for bit, in less time.

A ReLU followed by a max-pool commutes: ``relu(maxpool(x)) == maxpool(relu(x))`` element for element (both are
monotone, and a pooling window always holds at least one input). Their gradients with respect to ``x`` agree too,
bit for bit: where a window's maximum is positive both orders route the output's gradient to the same input (the
first maximum, the same in ``x`` as in ``relu(x)``), and where it is not, both give zeros (the ReLU's gradient is
zero there). Pooling first runs the ReLU's forward and backward on a tensor ``stride²`` times smaller. On a 2-core
Intel Xeon (2026-12-06, ``benchmarks/train_benchmark.py --archs paper_cnn,net3 --kinds
wna_train,wna_train_own_order --rounds 3``, ``benchmarks/results/train_benchmark_pool_first.json``) ``wna.train`` ran
``paper_cnn`` 1.06-1.11 times as fast as in the model's own order (round by round) and ``net3`` 1.14-1.18, with the
same weights after training.

:func:`pool_before_relu` applies it to the library's :class:`~wna_helpers.zoo.models.Classifier` and to any plain
:class:`~torch.nn.Sequential`; :func:`~wna_helpers.zoo.training.train` uses it. Models of other classes, and
modules with hooks (which would see other tensors), are left to run as they are.

Import rule: torch and :mod:`wna_helpers.zoo.models` only.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .models import Classifier

__all__ = ["pool_before_relu", "commuting_pairs"]


def _hooked(module: nn.Module) -> bool:
    return any(getattr(module, name, None) for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                                         "_backward_pre_hooks"))


def _global_hooks() -> bool:
    from torch.nn.modules import module as m
    return any(getattr(m, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                    "_global_backward_hooks", "_global_backward_pre_hooks"))


def commuting_pairs(model: nn.Module) -> list[int]:
    """The positions ``i`` among ``model``'s children where a plain :class:`~torch.nn.ReLU` (child ``i``) is
    followed by a plain :class:`~torch.nn.MaxPool2d` without ``return_indices`` (child ``i + 1``), neither with
    hooks; empty for a model that is not a :class:`~torch.nn.Sequential` running its children in order (its own
    class or :class:`~wna_helpers.zoo.models.Classifier`).

    Example:
        >>> commuting_pairs(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()))
        [1]
    """
    if type(model) not in (nn.Sequential, Classifier):
        return []
    kids = list(model.children())
    return [i for i in range(len(kids) - 1)
            if type(kids[i]) is nn.ReLU and type(kids[i + 1]) is nn.MaxPool2d and not kids[i + 1].return_indices
            and not _hooked(kids[i]) and not _hooked(kids[i + 1])]


def pool_before_relu(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``model``'s forward pass with each ReLU-then-max-pool pair (:func:`commuting_pairs`) run pool first, or None
    where there is no such pair, the model has hooks of its own, or global module hooks are set.

    The result and its gradients equal ``model(x)``'s bit for bit (the module docstring says why); the tensors in
    between differ, which is why a hooked module is never reordered. A :class:`~wna_helpers.zoo.models.Classifier`
    still checks its input's shape.

    Args:
        model: any module; only a :class:`~torch.nn.Sequential` or a
            :class:`~wna_helpers.zoo.models.Classifier` is reordered. It is not changed.

    Returns:
        A function of a batch ``(N, C, H, W)`` returning the logits ``(N, num_classes)``, or None.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        >>> x = torch.randn(4, 1, 8, 8)
        >>> torch.equal(pool_before_relu(model)(x), model(x))
        True
    """
    pairs = set(commuting_pairs(model))
    if not pairs or _hooked(model) or _global_hooks():
        return None
    kids = list(model.children())
    order: list[nn.Module] = []
    i = 0
    while i < len(kids):
        if i in pairs:
            order += [kids[i + 1], kids[i]]
            i += 2
        else:
            order.append(kids[i])
            i += 1
    check = model.check_input if isinstance(model, Classifier) else None

    def forward(x: torch.Tensor) -> torch.Tensor:
        if check is not None:
            check(x)
        for module in order:
            x = module(x)
        return x
    return forward
