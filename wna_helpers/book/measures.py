"""Summary measures the book reports: where noise goes, how CIs compare, when curves level off."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..methods.activations import ActivationStatistics
from ..methods.summaries import correlation_matrix
from ..methods.ci import ClassificationImages

from .criteria import FILTER_MATCH, MIN_COUNT, R_LEVEL

__all__ = ["MIN_COUNT", "R_LEVEL", "FILTER_MATCH", "noise_bias", "class_correlation", "first_reaching", "stable_from", "feedback_matrix",
           "activation_similarity", "activation_specificity", "ci_significance"]


def first_reaching(x: list[float] | torch.Tensor, values: list[float] | torch.Tensor, level: float) -> float:
    """The first ``x`` at which ``values`` reaches ``level`` (``values[i] >= level``); NaN if never.

    Args:
        x: increasing positions (sample counts, gammas).
        values: one value per position (NaN counts as not reached).
        level: the threshold.
    """
    for xi, v in zip(torch.as_tensor(x, dtype=torch.float64).tolist(),
                     torch.as_tensor(values, dtype=torch.float64).tolist()):
        if v == v and v >= level:
            return float(xi)
    return float("nan")


def feedback_matrix(feedback: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The fed-back 10x10 matrix: row ``c`` (the class the CI came from) has a 1 in the column of
    the model's answer on ``CI_c``; a class without a CI (answer -1) gets an empty row.

    Returns:
        int64 ``(K, K)``.
    """
    fb = torch.as_tensor(feedback).long().cpu()
    k = int(num_classes or len(fb))
    m = torch.zeros(k, k, dtype=torch.int64)
    rows = torch.nonzero(fb >= 0).flatten()
    m[rows, fb[rows]] = 1
    return m


def activation_similarity(real: ActivationStatistics, noise: ActivationStatistics, layer: str) -> torch.Tensor:
    """Per class, Pearson r between the mean activation of ``layer`` over real images of the class
    and over the noise the model assigned to it. NaN for a class without noise samples.

    Returns:
        float64 ``(K,)``.
    """
    a = real.means[layer].reshape(len(real.counts), -1).double()
    b = noise.means[layer].reshape(len(noise.counts), -1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    r[(noise.counts == 0) | (real.counts == 0)] = float("nan")
    return r


def noise_bias(ci: ClassificationImages, classes: Sequence[str], min_share: float = 0.01) -> dict[str, object]:
    """Where a model sends pure noise: the top class, its share, the entropy, and the classes reached.

    Args:
        ci: classification images (their ``counts``).
        classes: class names.
        min_share: a class counts as reached with at least this share; default 1 %.

    Returns:
        dict with ``top_class`` (name), ``top_share``, ``entropy_bits``, ``max_entropy_bits``,
        ``classes_reached`` (int), ``empty_classes`` (names of the classes without any sample), ``n``.
    """
    p = ci.proportions
    top = int(ci.counts.argmax())
    return {"top_class": classes[top], "top_share": float(p[top]), "entropy_bits": ci.entropy,
            "max_entropy_bits": math.log2(ci.num_classes), "classes_reached": int((p >= min_share).sum()),
            "empty_classes": [classes[c] for c in range(ci.num_classes) if int(ci.counts[c]) == 0],
            "n": ci.n_samples}


def class_correlation(x: torch.Tensor, y: torch.Tensor, counts: torch.Tensor | Sequence[torch.Tensor] | None = None,
                      min_count: int = MIN_COUNT) -> torch.Tensor:
    """Per class, Pearson r between ``x[c]`` and ``y[c]`` (e.g. a CI and the class mean, or the
    Gaussian and the uniform CI). NaN where either is NaN or a count is below ``min_count``.

    Args:
        x, y: ``(K, ...)``.
        counts: ``(K,)`` samples behind each class, or several such tensors (the smallest counts);
            default no count filter.
        min_count: default :data:`MIN_COUNT` (50: a CI from fewer samples is mostly noise).

    Returns:
        float64 ``(K,)``.
    """
    a = x.reshape(len(x), -1).double()
    b = y.reshape(len(y), -1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    if counts is not None:
        cs = [counts] if isinstance(counts, torch.Tensor) else list(counts)
        low = torch.stack([torch.as_tensor(c) for c in cs]).min(0).values
        r[low < min_count] = float("nan")
    return r


def stable_from(x: list[float] | torch.Tensor, values: list[float] | torch.Tensor, level: float) -> float:
    """The smallest ``x`` from which on every value is at least ``level`` (points sorted by ``x``);
    NaN when the last value is below ``level`` or there are no points.

    Unlike :func:`first_reaching`, one lucky early point does not count.
    """
    xs = torch.as_tensor(x, dtype=torch.float64)
    vs = torch.as_tensor(values, dtype=torch.float64)
    order = torch.argsort(xs, stable=True)
    xs, vs = xs[order].tolist(), vs[order].tolist()
    out = float("nan")
    for xi, v in zip(reversed(xs), reversed(vs)):
        if not (v == v and v >= level):
            break
        out = float(xi)
    return out


def activation_specificity(real: ActivationStatistics, noise: ActivationStatistics, layer: str) -> dict[str, float]:
    """Is the match between noise and real activations class-specific?

    Correlates the mean activation of ``layer`` over the noise called ``c`` with the mean over real
    images of every class ``c'``.

    Returns:
        ``same``: mean r for ``c' = c``; ``other``: mean r for ``c' != c``; ``matched``: share of the
        noise classes whose most similar real class is their own. Over the classes that received noise.
    """
    m = correlation_matrix(noise.means[layer], real.means[layer])  # (K noise, K real)
    ok = (noise.counts > 0).nonzero().flatten()
    if len(ok) == 0:
        return {"same": float("nan"), "other": float("nan"), "matched": float("nan")}
    sub = m[ok]
    same = sub[torch.arange(len(ok)), ok]
    mask = torch.ones_like(sub, dtype=torch.bool)
    mask[torch.arange(len(ok)), ok] = False
    return {"same": float(same.mean()), "other": float(sub[mask].mean()),
            "matched": float((sub.argmax(1) == ok).double().mean())}


def ci_significance(ci: ClassificationImages, alpha: float = 0.05, threshold: float = 3.0) -> dict[str, float]:
    """What the permutation null says about a run's CIs, over the classes that received samples.

    Returns:
        ``share``: the share of their CI pixels significant at family-wise error ``alpha``;
        ``classes``: how many classes have samples; ``classes_sig``: how many have at least one
        significant pixel; ``cluster_share``: the share of pixels in significant clusters
        (cluster-forming ``|z| > threshold``); ``info_median``: the median infoVal-style score;
        ``reliability_median``: the median split-half reliability (classes with samples in both halves).
    """
    has = ci.counts > 0
    sig = ci.significant(alpha).reshape(len(ci.counts), -1)[has]
    clus = ci.clusters(alpha, threshold).mask.reshape(len(ci.counts), -1)[has]
    rel = ci.reliability[~torch.isnan(ci.reliability)]
    info = ci.info[has]
    info = info[~torch.isnan(info)]
    return {"share": float(sig.double().mean()) if len(sig) else math.nan, "classes": int(has.sum()),
            "classes_sig": int(sig.any(1).sum()), "cluster_share": float(clus.double().mean()) if len(clus) else math.nan,
            "info_median": float(info.median()) if len(info) else math.nan,
            "reliability_median": float(rel.median()) if len(rel) else math.nan}
