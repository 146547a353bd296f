"""Summary measures the book reports: where noise goes, how CIs compare, when curves level off."""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch

from ..methods.activations import ActivationStatistics
from ..methods.summaries import correlation_matrix
from ..methods.ci import ClassificationImages

from .criteria import FILTER_MATCH, MIN_COUNT, R_LEVEL

__all__ = ["MIN_COUNT", "R_LEVEL", "FILTER_MATCH", "noise_bias", "class_correlation", "first_reaching", "stable_from", "feedback_matrix",
           "activation_similarity", "activation_specificity", "ci_significance", "class_match", "EXACT_CLASSES",
           "poisson_binomial_tail"]

#: :func:`class_match` enumerates every relabelling up to this many classes (7! = 5,040), else draws them.
EXACT_CLASSES = 7


def class_match(x: torch.Tensor, y: torch.Tensor, counts: torch.Tensor | None = None, *,
                centre: torch.Tensor | None = None, min_count: int = MIN_COUNT, permutations: int = 9999,
                seed: int = 0) -> dict[str, object]:
    """How much more ``x[c]`` resembles ``y[c]`` than the other classes' ``y``, with the shared parts removed.

    A CI and a class mean share components that say nothing about the class (the mean stimulus, the mean digit):
    a classifier answering at random gives a raw r of about 0.8 between its mixed-stimulus CIs and the class
    means. So both are centred first, ``x[c] - centre`` and ``y[c] - mean_c' y[c']`` (the mean over all classes),
    and the same-class r is set against two baselines over the same classes: the mean r of ``x[c]`` with the
    *other* classes' ``y`` (the control), and the mean same-class r under every relabelling of ``y`` among the
    classes used (the permutation p-value).

    Args:
        x: ``(K, ...)``, e.g. the CIs or the logit images.
        y: ``(K, ...)``, e.g. the class means.
        counts: ``(K,)`` samples behind each ``x[c]``; classes below ``min_count`` are left out; default None
            (every class with finite ``x`` and ``y``).
        centre: subtracted from every ``x[c]`` (for CIs the mean stimulus, ``ci.mean_stimulus``); default the mean
            of ``x`` over its finite classes.
        min_count: default :data:`MIN_COUNT`.
        permutations: relabellings drawn when more than :data:`EXACT_CLASSES` classes are used (every one of them
            otherwise); default 9,999.
        seed: seeds the drawn relabellings; default 0.

    Returns:
        ``r``: float64 ``(K,)`` same-class r (NaN for classes left out); ``other``: ``(K,)`` mean r with the other
        used classes' ``y``; ``classes``: how many are used; ``mean_r``, ``mean_other`` and ``gap`` (their
        difference); ``p``: the share of relabellings (the identity among them) whose mean same-class r is at
        least the observed one, NaN with fewer than two classes.
    """
    k_all = len(x)
    a = x.reshape(k_all, -1).double()
    b = y.reshape(k_all, -1).double()
    finite = torch.isfinite(a).all(1) & torch.isfinite(b).all(1)
    used = finite if counts is None else finite & (torch.as_tensor(counts) >= min_count)
    a = a - (centre.reshape(1, -1).double() if centre is not None else a[torch.isfinite(a).all(1)].mean(0))
    b = b - b[torch.isfinite(b).all(1)].mean(0)
    idx = torch.nonzero(used).flatten()
    k = len(idx)
    r_full = torch.full((k_all,), math.nan, dtype=torch.float64)
    other_full = r_full.clone()
    if k == 0:
        return {"r": r_full, "other": other_full, "classes": 0, "mean_r": math.nan, "mean_other": math.nan,
                "gap": math.nan, "p": math.nan}
    u = a[idx] - a[idx].mean(1, keepdim=True)
    v = b[idx] - b[idx].mean(1, keepdim=True)
    R = (u / u.norm(dim=1, keepdim=True)) @ (v / v.norm(dim=1, keepdim=True)).T     # (k, k): x[i] with y[j]
    same = R.diagonal()
    r_full[idx] = same
    p = math.nan
    if k >= 2:
        other_full[idx] = (R.sum(1) - same) / (k - 1)
        if k <= EXACT_CLASSES:
            perms = torch.tensor(list(itertools.permutations(range(k))))
            stats = R[torch.arange(k), perms].mean(1)
            p = float((stats >= same.mean() - 1e-12).double().mean())
        else:
            gen = torch.Generator().manual_seed(seed)
            perms = torch.argsort(torch.rand(permutations, k, generator=gen), dim=1)
            stats = R[torch.arange(k), perms].mean(1)
            p = float((1 + (stats >= same.mean() - 1e-12).sum()) / (1 + permutations))
    mean_r, mean_other = float(same.mean()), float(other_full[idx].mean()) if k >= 2 else math.nan
    return {"r": r_full, "other": other_full, "classes": k, "mean_r": mean_r, "mean_other": mean_other,
            "gap": mean_r - mean_other, "p": p}


def poisson_binomial_tail(probs: Sequence[float] | torch.Tensor, k: int) -> float:
    """P(X >= k) for X the number of successes of independent trials with success probabilities ``probs``
    (exact, by convolution); 1 for ``k <= 0``, 0 above the number of trials.

    Example:
        >>> round(poisson_binomial_tail([0.5] * 10, 10), 6) == round(1 / 1024, 6)
        True
    """
    dist = torch.ones(1, dtype=torch.float64)
    for q in torch.as_tensor(probs, dtype=torch.float64).flatten().tolist():
        dist = torch.cat([dist * (1 - q), dist.new_zeros(1)]) + torch.cat([dist.new_zeros(1), dist * q])
    return 1.0 if k <= 0 else float(dist[k:].sum()) if k < len(dist) else 0.0


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


def activation_specificity(real: ActivationStatistics, noise: ActivationStatistics, layer: str, *,
                           min_count: int = MIN_COUNT) -> dict[str, float]:
    """Is the match between noise and real activations class-specific?

    The mean activation of ``layer`` over the noise called ``c`` against the mean over real images of ``c``, both
    centred on their mean over classes (:func:`class_match`), over the classes that received at least
    ``min_count`` noise samples; the control is the other real classes, the test every relabelling of them.

    Returns:
        ``same``: mean r for ``c' = c``; ``other``: mean r for ``c' != c``; ``matched``: share of those noise
        classes whose most similar real class is their own; ``p``: the permutation p-value (NaN with fewer than two
        classes); ``classes``: how many classes are used.
    """
    m = class_match(noise.means[layer], real.means[layer], noise.counts, min_count=min_count)
    used = (~m["r"].isnan()).nonzero().flatten()
    matched = float("nan")
    if len(used):
        a = noise.means[layer].reshape(len(noise.counts), -1).double()
        b = real.means[layer].reshape(len(real.counts), -1).double()
        fa, fb = torch.isfinite(a).all(1), torch.isfinite(b).all(1)
        a, b = a - a[fa].mean(0), b - b[fb].mean(0)                  # centred as class_match centres them
        r = correlation_matrix(a[used], b).nan_to_num(nan=-2.0)      # a real class without images never wins
        matched = float((r.argmax(1) == used).double().mean())
    return {"same": m["mean_r"], "other": m["mean_other"], "matched": matched, "p": m["p"], "classes": m["classes"]}


def ci_significance(ci: ClassificationImages, alpha: float = 0.05, threshold: float = 3.0) -> dict[str, float]:
    """What the permutation null says about a run's CIs, over the classes it can test.

    A class is testable when it received samples and its null CIs vary (a class that took every sample has
    the same CI under every label permutation, so no pixel of it has a p-value): such a class is counted as
    not testable, never as a class without significant pixels.

    Returns:
        ``share``: the share of the testable classes' CI pixels significant at family-wise error ``alpha``
        (NaN when no class is testable); ``classes``: how many classes have samples; ``untestable``: how many
        of those are not testable; ``classes_sig``: how many have at least one significant pixel;
        ``cluster_share``: the share of the testable classes' pixels in significant clusters (cluster-forming
        ``|z| > threshold``); ``info_median``: the median infoVal-style score; ``reliability_median``: the
        median split-half reliability (classes with samples in both halves).
    """
    k = len(ci.counts)
    has = ci.counts > 0
    testable = has & torch.isfinite(ci.fwer_pvalues.reshape(k, -1)).any(1)
    sig = ci.significant(alpha).reshape(k, -1)[testable]
    clus = ci.clusters(alpha, threshold).mask.reshape(k, -1)[testable]
    rel = ci.reliability[~torch.isnan(ci.reliability)]
    info = ci.info[testable]
    info = info[~torch.isnan(info)]
    return {"share": float(sig.double().mean()) if len(sig) else math.nan, "classes": int(has.sum()),
            "untestable": int((has & ~testable).sum()),
            "classes_sig": int(sig.any(1).sum()), "cluster_share": float(clus.double().mean()) if len(clus) else math.nan,
            "info_median": float(info.median()) if len(info) else math.nan,
            "reliability_median": float(rel.median()) if len(rel) else math.nan}
