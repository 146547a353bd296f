"""Do two classification-image runs differ? A per-pixel Welch test from the sums they carry.

Two :class:`~wna_helpers.methods.ci.ClassificationImages` results of the same shape (two models probed with
the same noise, or two runs of one model) are compared class by class and pixel by pixel, with no
forward pass: ``z = (CI_a - CI_b) / sqrt(var_a / n_a + var_b / n_b)``, the variances and counts taken
from the per-class sums of squares each result carries. Holm's step-down procedure then holds the
family-wise error over the pixels of each class map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch

__all__ = ["welch", "CIComparison", "compare_classification_images", "holm_adjust", "t_pvalues"]


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


#: Above this many degrees of freedom the t distribution is replaced by the normal (the p-values
#: around a Holm threshold then differ by well under 1 %).
_NORMAL_DF = 2e4


def _betainc(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, max_iter: int = 3000) -> torch.Tensor:
    """Regularised incomplete beta function ``I_x(a, b)``, float64, elementwise (continued fraction by the
    modified Lentz method, with the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)`` where it converges faster)."""
    a, b, x = torch.broadcast_tensors(a.double(), b.double(), x.double())
    flip = x > (a + 1) / (a + b + 2)
    a, b, x = torch.where(flip, b, a), torch.where(flip, a, b), torch.where(flip, 1 - x, x)
    tiny = 1e-300

    def fix(v: torch.Tensor) -> torch.Tensor:
        return torch.where(v.abs() < tiny, torch.full_like(v, tiny), v)

    c = torch.ones_like(x)
    d = 1 / fix(1 - (a + b) * x / (a + 1))
    h = d.clone()
    # each element stops once its step is 1 to 1e-15 (NaN counts as stopped): its fraction then only gathers
    # rounding error, about 6e-13 over 3,000 steps, and one slow element would keep every other one going
    done = torch.zeros_like(x, dtype=torch.bool)
    for m in range(1, max_iter + 1):
        aa = m * (b - m) * x / ((a - 1 + 2 * m) * (a + 2 * m))
        d = 1 / fix(1 + aa * d)
        c = fix(1 + aa / c)
        h = torch.where(done, h, h * d * c)
        aa = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1 + 2 * m))
        d = 1 / fix(1 + aa * d)
        c = fix(1 + aa / c)
        delta = d * c
        h = torch.where(done, h, h * delta)
        done |= ~((delta - 1).abs() > 1e-15)
        if m % 8 == 0 and bool(done.all()):
            break
    front = torch.exp(torch.lgamma(a + b) - torch.lgamma(a) - torch.lgamma(b) + a * torch.log(x) + b * torch.log1p(-x))
    r = front * h / a
    return torch.where(flip, 1 - r, r)


def t_pvalues(t: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Two-sided p-values of Student's t with ``df`` (real, > 0) degrees of freedom, float64; the normal
    for ``df`` above 20,000; NaN where ``t`` or ``df`` is NaN.

    Example:
        >>> round(float(t_pvalues(torch.tensor(1.0), torch.tensor(1.0))), 6)  # Cauchy: 1 - 2 atan(1) / pi
        0.5
    """
    t, df = torch.broadcast_tensors(t.double(), df.double())
    normal = torch.special.erfc(t.abs() / math.sqrt(2.0))
    small = df <= _NORMAL_DF
    if not bool(small.any()):
        return normal
    ts, ds = t[small], df[small]
    out = normal.clone()
    out[small] = _betainc(ds / 2, torch.full_like(ds, 0.5), ds / (ds + ts * ts)).clamp(0.0, 1.0)
    return out


def holm_adjust(pvalues: torch.Tensor) -> torch.Tensor:
    """Holm step-down adjusted p-values along the last dimension; NaN entries are left out of the
    family (and stay NaN). Valid under any dependence between the tests.

    Args:
        pvalues: float ``(..., M)`` p-values in [0, 1] (NaN: no test).

    Returns:
        float64 ``(..., M)``: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` at the pixel of rank i, m the
        number of non-NaN entries of that row.

    Example:
        >>> holm_adjust(torch.tensor([0.25, 0.5, 0.125, float("nan")])).tolist()
        [0.5, 0.5, 0.375, nan]
    """
    p = pvalues.double()
    flat = p.reshape(-1, p.shape[-1]) if p.dim() else p.reshape(1, 1)
    nan = torch.isnan(flat)
    m = (~nan).sum(1, keepdim=True)                                   # tests per row
    srt, order = torch.where(nan, torch.inf, flat).sort(1)            # NaN (as inf) go last
    rank = torch.arange(flat.shape[1], dtype=torch.float64).unsqueeze(0)
    adj = ((m - rank).clamp_min(1) * srt).clamp(max=1.0).cummax(1).values
    out = torch.empty_like(flat).scatter_(1, order, adj)
    out[nan] = torch.nan
    return out.view_as(p)


@dataclass
class CIComparison:
    """Result of :func:`compare_classification_images`.

    Attributes:
        difference: float64 ``(C, *shape)``: ``CI_a - CI_b`` (NaN for a class empty in either run).
        zmap: float64 ``(C, *shape)``: Welch z of the difference; NaN where a class has fewer than
            ``min_count`` (default 2) samples in either result or the standard error is 0.
        counts_a: int64 ``(C,)``: samples per class in ``a``.
        counts_b: int64 ``(C,)``: samples per class in ``b``.
        df: float64 ``(C, *shape)``: Welch-Satterthwaite degrees of freedom of each pixel's z.
    """

    difference: torch.Tensor
    zmap: torch.Tensor
    counts_a: torch.Tensor
    counts_b: torch.Tensor
    df: torch.Tensor

    def pvalues(self) -> torch.Tensor:
        """Two-sided p-value of every pixel, float64 ``(C, *shape)`` (NaN where ``zmap`` is NaN):
        Student's t with the Welch-Satterthwaite ``df`` (:func:`t_pvalues`), which is the normal
        ``erfc(|z| / sqrt 2)`` for large classes. For a class with few samples the normal would be far
        too liberal at the small p-values a family-wise correction needs (in a test with classes of
        2-30 samples, 47 % of the class maps of two runs of one model had a "significant" pixel)."""
        return t_pvalues(self.zmap, self.df)

    def fwer_pvalues(self) -> torch.Tensor:
        """Holm step-down adjusted p-values within each class map (the family: its non-NaN pixels),
        float64 ``(C, *shape)``. Holm needs no assumption about the dependence between pixels, which
        matters for smooth (Gabor) noise whose neighbouring pixels are correlated."""
        p = self.pvalues()
        return holm_adjust(p.reshape(len(p), -1)).view_as(p)

    def significant(self, alpha: float = 0.05) -> torch.Tensor:
        """Pixels whose difference is significant with the family-wise error of each class map held
        at ``alpha`` (default 0.05): bool ``(C, *shape)``; NaN pixels are never significant.

        Raises:
            ValueError: ``alpha`` not a number in (0, 1).
        """
        a = _check_alpha(alpha)
        return self.fwer_pvalues() <= a  # NaN <= a is False


def _parts(res: object, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        sums, sumsq, counts = res.sums, res.sumsq, res.counts  # type: ignore[attr-defined]
    except AttributeError:
        raise ValueError(f"{name} must be a ClassificationImages result (with sums, sumsq and counts); "
                         f"got {type(res).__name__}") from None
    if not all(isinstance(t, torch.Tensor) for t in (sums, sumsq, counts)) or counts.dim() != 1 \
            or sums.dim() < 2 or sums.shape != sumsq.shape or len(sums) != len(counts):
        raise ValueError(f"{name} has inconsistent sums {tuple(getattr(sums, 'shape', ()))}, sumsq "
                         f"{tuple(getattr(sumsq, 'shape', ()))} and counts {tuple(getattr(counts, 'shape', ()))}")
    return sums.detach().cpu().double(), sumsq.detach().cpu().double(), counts.detach().cpu().long()


def _mean_var(sums: torch.Tensor, sumsq: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = counts.double().view(-1, *([1] * (sums.dim() - 1)))
    mean = sums / n                                                    # NaN for an empty class
    var = ((sumsq - sums * mean) / (n - 1)).clamp_min(0.0)             # rounding can dip below 0
    var = torch.where(n >= 2, var, torch.full_like(var, torch.nan))
    return mean, var


def compare_classification_images(a: object, b: object, *, min_count: int = 2,
                                  same_stimulus: bool = True) -> CIComparison:
    """Per class and pixel, is ``a``'s classification image different from ``b``'s?

    ``z = (CI_a - CI_b) / sqrt(var_a / n_a + var_b / n_b)`` (Welch), with ``var`` the unbiased
    per-class, per-pixel variance of the stimuli and ``n`` the class count, both from the sums and
    sums of squares the results carry; no forward pass. Conditional on its count, a class mean is the
    mean of ``n`` independent draws from the noise given that class, so ``var / n`` is its sampling
    variance across independent runs, whatever share of the noise the class takes.

    Why not the permutation nulls (``a.null_images``): they test a CI against chance *within one run*
    (labels shuffled among that run's samples, counts kept). Shuffling without replacement within a
    fixed pool carries the finite-population factor ``1 - n_c / n``: for a class that takes most of
    the samples the null CIs barely move, so their spread misses the sampling variance of that
    class's mean across runs, and a difference between two runs would look significant when it is
    not. The sums of squares carry the full variance.

    Both results should come from the same kind of noise with different seeds (or different
    models); the test assumes the two runs' samples are independent (the same seed for both makes
    it conservative).

    Classes with very few samples: the variance estimated from a handful of samples (and the
    Welch-Satterthwaite degrees of freedom built on it) is rough, and the class-conditional noise is
    skewed, so the p-values are approximate there: in two runs of one model, 8-10 % of the class maps
    of classes with 2-30 samples had a pixel significant at a family-wise 5 % (about 5 % above 30
    samples). Raise ``min_count`` to leave such classes out.

    Args:
        a: a :class:`~wna_helpers.methods.ci.ClassificationImages` result.
        b: another, with the same number of classes and the same input shape.
        min_count: a class with fewer samples than this in either result gets NaN (no test); at least
            2; default 2.
        same_stimulus: require both runs to have used the same stimulus (the same noise kind and
            parameters; seeds and chunk sizes may differ); default True. A difference between runs of two
            noises mixes the models' difference with the noises': pass False only to compare exactly that.

    Returns:
        :class:`CIComparison`: ``difference``, ``zmap`` and ``df`` float64 ``(C, *shape)``, ``counts_a``
        and ``counts_b`` int64 ``(C,)``; ``pvalues()``, ``fwer_pvalues()`` (Holm, per class map) and
        ``significant(alpha)``.

    Raises:
        ValueError: an argument without ``sums``/``sumsq``/``counts``, results of different class
            counts or input shapes, runs of different stimuli (with ``same_stimulus``), or ``min_count``
            not an integer >= 2.

    Example:
        >>> import torch, wna_helpers as wna
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
        >>> run = lambda s: wna.classification_images(model, 4096, noise="uniform", input_shape=(1, 8, 8),
        ...                                           seed=s, progress=False)
        >>> cmp = compare_classification_images(run(0), run(1))
        >>> cmp.zmap.shape, int(cmp.significant(0.05).sum()) <= 2
        (torch.Size([4, 1, 8, 8]), True)
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 2:
        raise ValueError(f"min_count must be an integer >= 2, got {min_count!r}")
    sa, qa, na = _parts(a, "a")
    sb, qb, nb = _parts(b, "b")
    if len(na) != len(nb):
        raise ValueError(f"a has {len(na)} classes but b has {len(nb)}; compare results of the same classes")
    if sa.shape != sb.shape:
        raise ValueError(f"a's images have shape {tuple(sa.shape[1:])} but b's {tuple(sb.shape[1:])}; "
                         f"compare results of the same input shape")
    if same_stimulus:
        da, db = (_stimulus_of(x) for x in (a, b))
        if da is not None and db is not None and da != db:
            raise ValueError(f"a and b were made with different stimuli ({da} and {db}): their difference mixes the "
                             f"models' with the noises'; compare runs of the same noise, or pass "
                             f"same_stimulus=False to compare exactly that")
    diff, z, df = welch(sa, qa, na, sb, qb, nb, min_count=min_count)
    return CIComparison(difference=diff, zmap=z, counts_a=na, counts_b=nb, df=df)


def _stimulus_of(result: object) -> dict | None:
    """A result's stimulus description without what only picks the samples (seed, chunk size)."""
    d = getattr(result, "stimulus", None)
    if not isinstance(d, dict):
        return None
    return {k: v for k, v in d.items() if k not in ("seed", "chunk_size")}


def welch(sums_a: torch.Tensor, sumsq_a: torch.Tensor, counts_a: torch.Tensor, sums_b: torch.Tensor,
          sumsq_b: torch.Tensor, counts_b: torch.Tensor, *,
          min_count: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Welch's two-sample z per group and pixel from sums, sums of squares and counts.

    Args:
        sums_a, sumsq_a: float ``(G, *shape)``: per group, the sum and the sum of squares of sample a.
        counts_a: int ``(G,)``: samples per group in a.
        sums_b, sumsq_b, counts_b: the same for sample b.
        min_count: a group with fewer samples than this in either sample gets NaN; default 2.

    Returns:
        ``(difference, z, df)``, float64 ``(G, *shape)``: mean a minus mean b (NaN for an empty group),
        ``difference / sqrt(var_a / n_a + var_b / n_b)`` and the Welch-Satterthwaite degrees of freedom;
        z and df are NaN where a group is too small or the standard error is 0.
    """
    mean_a, var_a = _mean_var(sums_a, sumsq_a, counts_a)
    mean_b, var_b = _mean_var(sums_b, sumsq_b, counts_b)
    shape = (-1, *([1] * (sums_a.dim() - 1)))
    na, nb = counts_a.double().view(shape), counts_b.double().view(shape)
    ua, ub = var_a / na, var_b / nb                                             # squared standard errors
    se2 = ua + ub
    diff = mean_a - mean_b
    ok = (se2 > 0) & ((na >= min_count) & (nb >= min_count))                   # False for NaN
    nan = torch.full_like(diff, torch.nan)
    z = torch.where(ok, diff / se2.sqrt(), nan)
    df = se2.square() / (ua.square() / (na - 1) + ub.square() / (nb - 1))
    return diff, z, torch.where(ok, df, nan)
