"""Using classification images: fed back, as templates, and to bias a model."""
from __future__ import annotations


import torch
from torch import nn

from .kernel import model_device

__all__ = ["class_means", "template_classify", "confusion_matrix", "feed_back", "bias_curve",
           "entropy_bits", "correlation_matrix"]


def class_means(images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Mean image per label, float64 ``(K, *image_shape)`` (vectorized, no loop per class)."""
    k = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    flat = images.reshape(len(images), -1).double()
    sums = torch.zeros(k, flat.shape[1], dtype=torch.float64).index_add_(0, labels.cpu(), flat.cpu())
    counts = torch.bincount(labels.cpu(), minlength=k).double()[:, None]
    return (sums / counts).view(k, *images.shape[1:])


def template_classify(images: torch.Tensor, templates: torch.Tensor, *, center: bool = False,
                      batch_size: int = 10_000) -> torch.Tensor:
    """Classify ``images`` by the most similar template (the paper's CI classifier).

    Predicts ``argmax_c <y/|y|, T_c/|T_c|>`` for every image ``y``.

    Args:
        images: ``(N, *shape)``.
        templates: ``(K, *shape)``, e.g. classification images or class means.
        center: subtract each vector's own mean first (a correlation instead of a cosine);
            default False (the paper's normalised dot product).
        batch_size: images per matrix product; default 10,000.

    Returns:
        int64 ``(N,)`` predicted classes.
    """
    t = templates.reshape(len(templates), -1).double()
    if torch.isnan(t).any():
        raise ValueError("a template is NaN (a class with no samples); drop it or collect more samples")
    if center:
        t = t - t.mean(1, keepdim=True)
    t = t / t.norm(dim=1, keepdim=True)
    out = []
    for i in range(0, len(images), batch_size):  # batches of images, not a loop per sample
        y = images[i:i + batch_size].reshape(-1, t.shape[1]).double()
        if center:
            y = y - y.mean(1, keepdim=True)
        y = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
        out.append((y @ t.T).argmax(1))
    return torch.cat(out)


def confusion_matrix(truth: torch.Tensor, pred: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """int64 ``(K, K)``: row = true class, column = predicted class."""
    idx = truth.cpu().long() * num_classes + pred.cpu().long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


@torch.no_grad()
def feed_back(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's answer on each of ``images`` ``(K, *shape)`` (e.g. its own CIs), int64 ``(K,)``.

    NaN images (classes without samples) get the answer -1. The model's state is restored.
    """
    device = model_device(model)
    was = model.training
    model.eval()
    try:
        bad = torch.isnan(images.reshape(len(images), -1)).any(1)
        x = torch.nan_to_num(images.float()).to(device)
        pred = model(x).argmax(1).cpu()
    finally:
        model.train(was)
    pred[bad] = -1
    return pred


@torch.no_grad()
def bias_curve(model: nn.Module, inputs: torch.Tensor, direction: torch.Tensor, target: int,
               gammas: torch.Tensor | list[float], *, batch_size: int = 2048) -> torch.Tensor:
    """Share of ``inputs + gamma * direction`` that the model assigns to ``target``, per gamma.

    Args:
        model: classifier; its state is restored.
        inputs: ``(N, *shape)`` test images or noise.
        direction: ``shape``: e.g. the classification image of ``target`` (mean-centred or not).
        target: class index.
        gammas: the weights to try.
        batch_size: default 2,048.

    Returns:
        float64 ``(len(gammas),)``.
    """
    device = model_device(model)
    was = model.training
    model.eval()
    d = direction.float().to(device)
    out = []
    try:
        for g in gammas:
            hits = 0
            for i in range(0, len(inputs), batch_size):
                x = inputs[i:i + batch_size].float().to(device) + float(g) * d
                hits += int((model(x).argmax(1) == target).sum())
            out.append(hits / len(inputs))
    finally:
        model.train(was)
    return torch.tensor(out, dtype=torch.float64)


def entropy_bits(counts: torch.Tensor) -> float:
    """Entropy in bits of a histogram (``log2 K`` for a uniform one)."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log2()).sum()) + 0.0


def correlation_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between every row of ``a`` ``(K, ...)`` and every row of ``b`` ``(M, ...)``."""
    x = a.reshape(len(a), -1).double()
    y = b.reshape(len(b), -1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    return (x / x.norm(dim=1, keepdim=True)) @ (y / y.norm(dim=1, keepdim=True)).T


