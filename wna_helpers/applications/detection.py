"""How well a detection score separates two groups of models (trojaned from clean): the ROC AUC, its exact
permutation p-value over the models where the score is defined, and the paired sign-flip test of models that share
a seed. :mod:`~wna_helpers.applications.trojan` re-exports both functions."""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch

__all__ = ["roc_auc", "detection_test"]


def roc_auc(scores_positive: Sequence[float] | torch.Tensor, scores_negative: Sequence[float] | torch.Tensor) -> float:
    """Area under the ROC curve by Mann-Whitney: the share of (positive, negative) pairs in which the
    positive scores higher, ties counting 1/2.

    Args:
        scores_positive: scores of the positives (e.g. trojaned models), 1-d, finite, non-empty.
        scores_negative: scores of the negatives (clean models), likewise.

    Returns:
        float in [0, 1]: 1.0 perfect separation, 0.5 chance (or all tied), 0.0 reversed.

    Raises:
        ValueError: empty or non-finite scores.

    Example:
        >>> roc_auc([3.0, 2.0], [1.0, 2.0])
        0.875
    """
    pos = torch.as_tensor(scores_positive, dtype=torch.float64).flatten()
    neg = torch.as_tensor(scores_negative, dtype=torch.float64).flatten()
    if len(pos) == 0 or len(neg) == 0 or not bool(torch.isfinite(pos).all()) or not bool(torch.isfinite(neg).all()):
        raise ValueError(f"scores must be non-empty and finite; got {len(pos)} positive and {len(neg)} negative")
    allv = torch.cat([pos, neg])
    _, inverse, cnt = torch.unique(allv, sorted=True, return_inverse=True, return_counts=True)
    start = cnt.cumsum(0) - cnt                                         # ranks before each tie group
    avg_rank = start.double() + (cnt.double() + 1) / 2                  # mid-rank of the group (1-based)
    r_pos = avg_rank[inverse[:len(pos)]].sum()
    n_p, n_n = len(pos), len(neg)
    return float((r_pos - n_p * (n_p + 1) / 2) / (n_p * n_n))


def detection_test(positive: Sequence[float] | torch.Tensor, negative: Sequence[float] | torch.Tensor, *,
                   paired: bool = False) -> dict[str, float]:
    """How well a detection score separates positive models (trojaned) from negative ones (clean), over the models
    whose score is defined: an undefined score (NaN: e.g. the target class got no noise sample) leaves its model
    out instead of ranking it lowest.

    Args:
        positive: one score per positive model, NaN where undefined.
        negative: one score per negative model, NaN where undefined.
        paired: ``positive[i]`` and ``negative[i]`` come from the same seed; adds the exact sign-flip test of
            their mean difference over the pairs where both are defined.

    Returns:
        ``auc`` (:func:`roc_auc` over the defined models; NaN without one on each side), ``p`` (exact one-sided
        permutation p-value: the share of every way to pick as many of the defined models as positives that gives
        an AUC at least as high; with 5 + 5 models an AUC of 1 has p = 1/252), ``n_positive``, ``n_negative``
        (defined), and with ``paired``: ``pairs`` (both defined), ``mean_difference`` and ``paired_p`` (the share of
        the ``2^pairs`` sign flips of the differences whose mean is at least the observed one; 5 pairs: at least
        1/32).

    Raises:
        ValueError: ``paired`` with sequences of different lengths.

    Example:
        >>> out = detection_test([3.0, 4.0, float("nan")], [1.0, 2.0, 0.5], paired=True)
        >>> out["auc"], out["n_positive"], out["pairs"], out["paired_p"]
        (1.0, 2, 2, 0.25)
    """
    pos = torch.as_tensor(positive, dtype=torch.float64).flatten()
    neg = torch.as_tensor(negative, dtype=torch.float64).flatten()
    if paired and len(pos) != len(neg):
        raise ValueError(f"paired scores must pair up: {len(pos)} positive and {len(neg)} negative")
    okp, okn = torch.isfinite(pos), torch.isfinite(neg)
    out: dict[str, float] = {"auc": math.nan, "p": math.nan, "n_positive": int(okp.sum()),
                             "n_negative": int(okn.sum())}
    if okp.any() and okn.any():
        a, b = pos[okp], neg[okn]
        out["auc"] = roc_auc(a, b)
        scores = torch.cat([a, b])
        n, k = len(scores), len(a)
        hits = total = 0
        for pick in itertools.combinations(range(n), k):
            mask = torch.zeros(n, dtype=torch.bool)
            mask[list(pick)] = True
            hits += roc_auc(scores[mask], scores[~mask]) >= out["auc"] - 1e-12
            total += 1
        out["p"] = hits / total
    if paired:
        both = okp & okn
        d = (pos - neg)[both]
        out["pairs"] = int(both.sum())
        out["mean_difference"] = float(d.mean()) if len(d) else math.nan
        out["paired_p"] = math.nan
        if len(d):
            signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=len(d))), dtype=torch.float64)
            means = (signs * d).mean(1)
            out["paired_p"] = float((means >= float(d.mean()) - 1e-12).double().mean())
    return out
