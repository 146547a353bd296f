"""Summaries of predictions and images: class means, confusion matrices, entropy, correlations."""
from __future__ import annotations


import torch

__all__ = ["class_means", "confusion_matrix", "entropy_bits", "correlation_matrix"]


def class_means(images: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Mean image per label, float64 ``(K, *image_shape)`` (vectorized, no loop per class)."""
    k = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    flat = images.reshape(len(images), -1).double()
    sums = torch.zeros(k, flat.shape[1], dtype=torch.float64).index_add_(0, labels.cpu(), flat.cpu())
    counts = torch.bincount(labels.cpu(), minlength=k).double()[:, None]
    return (sums / counts).view(k, *images.shape[1:])


def confusion_matrix(truth: torch.Tensor, pred: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """int64 ``(K, K)``: row = true class, column = predicted class."""
    idx = truth.cpu().long() * num_classes + pred.cpu().long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


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


