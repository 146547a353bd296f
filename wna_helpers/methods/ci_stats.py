"""Which pixels of a classification image are real: statistics accumulated in the CI stream.

One pass of the engine gives, besides the class sums of :mod:`~wna_helpers.methods.ci`:

* a **permutation null**: within each seeded chunk the predicted labels are permuted
  ``K`` times (class counts kept, no extra forward pass) and the noise summed per permuted
  label, giving ``K`` null CIs per class; from them z-maps, family-wise error controlled
  masks (max statistic), cluster-mass tests and an infoVal-style score per class;
* **split-half reliability**: class sums of the odd chunks (the even ones are the rest), their
  correlation and the Spearman-Brown correction;
* **logit images**: each logit regressed on the noise, ``sum (logit - chunk mean) x / (n var(x))``,
  a map for every class, even one that argmax never picks.

Everything is computed per chunk (permutations seeded by ``(seed, chunk)``), so it does not
depend on the batch size, the number of processes or where a run was resumed.

Reading the tests: each map (observed and nulls) is standardised against the *other* ``K``
maps, which makes the ``K + 1`` maps exchangeable when the pixels do not drive the decision,
so the permutation p-values below are exact: ``p = (1 + #{null maps at least as extreme}) / (K + 1)``.
The smallest attainable p is ``1 / (K + 1)`` (0.030 for ``K = 32``).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.checks import check_probability
from ..engine.kernel import Accumulator, Chunk

__all__ = ["CIStatsAccumulator", "ClassCovarianceAccumulator", "SecondOrderCI", "second_order", "ClusterTest",
           "DEFAULT_PERMUTATIONS", "null_seed", "draw_permutations", "class_indicators", "loo_zscores", "zmap",
           "fwer_pvalues", "cluster_test", "info_scores", "split_half", "spearman_brown", "samples_needed",
           "logit_regression"]

#: Null CIs per class accumulated by default (``null_permutations``).
DEFAULT_PERMUTATIONS = 32


def null_seed(seed: int, chunk: int) -> int:
    """Seed of the label permutations of chunk ``chunk`` (independent of the noise's own seed)."""
    return int.from_bytes(hashlib.blake2b(f"wna-null:{seed}:{chunk}".encode(), digest_size=8).digest(),
                          "little") >> 1


def class_indicators(classes: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The one-hot matrix of ``classes`` transposed, ``(k, B)`` of ``dtype``: row ``c`` is 1 where ``classes == c``.

    Unlike ``F.one_hot`` it checks no range, so on a GPU it never waits for the device (a class outside
    ``[0, k)`` gives a zero column).
    """
    return (classes[None, :] == torch.arange(k, device=classes.device)[:, None]).to(dtype)


def draw_permutations(k: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``k`` uniformly random permutations of ``range(n)``, int64 ``(k, n)``, on ``gen``'s device.

    On a CPU, one ``randperm`` each; elsewhere the ``argsort`` of ``k * n`` uniform float64 draws, one kernel for
    all of them, where ``k`` separate calls would cost ``k`` kernel launches per chunk (32 by default, most of a GPU
    run's time per chunk). The two ways draw different permutations from one seed, as CPU and CUDA draw different
    noise from one seed.

    Example:
        >>> p = draw_permutations(3, 5, torch.Generator().manual_seed(0))
        >>> p.shape, sorted(p[0].tolist())
        (torch.Size([3, 5]), [0, 1, 2, 3, 4])
    """
    if gen.device.type == "cpu":
        return torch.stack([torch.randperm(n, generator=gen) for _ in range(k)])
    return torch.rand(k, n, generator=gen, device=gen.device, dtype=torch.float64).argsort(1)


class CIStatsAccumulator(Accumulator):
    """Per chunk: ``K`` label-permuted class sums (kept as their differences from the observed
    class sums, ``null_sums``), the class sums of odd chunks and the chunk-centred logit-weighted
    sums, in one float32 matrix product per chunk (float64 totals).

    Use alongside :class:`~wna_helpers.methods.ci.CIAccumulator` (which holds counts, sums and sums of
    squares); :func:`~wna_helpers.methods.ci.classification_images` runs both.
    """

    def __init__(self, null_permutations: int = DEFAULT_PERMUTATIONS) -> None:
        super().__init__()
        if isinstance(null_permutations, bool) or not isinstance(null_permutations, int) or null_permutations < 0:
            raise ValueError(f"null_permutations must be an integer >= 0, got {null_permutations!r}")
        self.k = null_permutations
        self._gens: dict[torch.device, torch.Generator] = {}

    def describe(self):  # noqa: D102
        return {**super().describe(), "null_permutations": self.k}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        d = math.prod(input_shape)
        f64 = dict(dtype=torch.float64, device=device)
        self.acc = {"null_sums": torch.zeros(self.k, num_classes, d, **f64),
                    "odd_sums": torch.zeros(num_classes, d, **f64),
                    "odd_counts": torch.zeros(num_classes, dtype=torch.int64, device=device),
                    "logit_cross": torch.zeros(num_classes, d, **f64),
                    "chunks": torch.zeros(1, dtype=torch.int64, device=device)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        pass  # everything is done per whole chunk

    def end_chunk(self, chunk: Chunk) -> None:  # noqa: D102
        # Against the chunk-centred pixels: every weight row below sums to zero over the chunk except
        # the odd-chunk class indicators (their counts times the chunk mean are added back), which keeps
        # float32 rounding at the size of what changes, not of the sums themselves.
        x = chunk.x.reshape(len(chunk.x), -1).float()
        mean = x.mean(0)
        xc = x - mean
        logits = chunk.logits
        n, k = len(x), logits.shape[1]
        pred = logits.argmax(1)
        onehot = class_indicators(pred, k)                                     # (K, n)
        rows = []
        odd = chunk.index % 2 == 1
        if odd:
            rows.append(onehot)
        if self.k:
            gen = self._gens.get(x.device)
            if gen is None:
                gen = self._gens[x.device] = torch.Generator(device=x.device)
            gen.manual_seed(null_seed(chunk.seed, chunk.index))
            perm = draw_permutations(self.k, n, gen)
            diff = torch.zeros(self.k, k, n, device=x.device)                  # null minus observed: 0, +-1
            diff.scatter_(1, pred[perm][:, None, :], 1.0)
            diff -= onehot
            # the classes' rows of one permutation sum to zero: the last is minus the others
            rows.append(diff[:, :-1].reshape(self.k * (k - 1), n))
        rows.append((logits - logits.mean(0)).T)                               # chunk-centred logits
        out = (torch.cat(rows) @ xc).double()                                  # one product per chunk
        i = 0
        if odd:
            counts = onehot.sum(1)                                             # exact: at most 2^24 ones
            self.acc["odd_sums"] += out[:k] + counts.double()[:, None] * mean.double()
            self.acc["odd_counts"] += counts.long()
            i = k
        if self.k:
            part = out[i:i + self.k * (k - 1)].view(self.k, k - 1, -1)
            self.acc["null_sums"][:, :-1] += part
            self.acc["null_sums"][:, -1] -= part.sum(1)
            i += self.k * (k - 1)
        self.acc["logit_cross"] += out[i:]
        self.acc["chunks"] += 1


class ClassCovarianceAccumulator(Accumulator):
    """Per predicted class, the sum of the stimuli's outer products ``x x^T`` (float64 ``(K, D, D)``;
    float32 within one chunk piece): the second-order CIs of
    :func:`~wna_helpers.methods.ci.classification_images` with ``second_order=True``. It costs ``D^2`` multiply-adds
    per sample (about 0.6 M for 28 x 28 images; not measured against the forward pass) and ``K D^2``
    float64 of memory (49 MB for 10 classes of 28 x 28)."""

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        d = math.prod(input_shape)
        self.acc = {"outer": torch.zeros(num_classes, d, d, dtype=torch.float64, device=device)}

    def update(self, x, logits, taps, labels):  # noqa: D102
        xf = x.reshape(len(x), -1).float()
        pred = logits.argmax(1)
        order = pred.argsort()
        counts = torch.bincount(pred, minlength=len(self.acc["outer"])).tolist()
        for c, part in enumerate(xf[order].split(counts)):          # one product per class present
            if len(part):
                self.acc["outer"][c] += (part.T @ part).double()


@dataclass
class SecondOrderCI:
    """Second-order classification images (:meth:`~wna_helpers.methods.ci.ClassificationImages.second_order`).

    Attributes:
        eigenvalues: float64 ``(C, m)``: the ``m`` eigenvalues of largest magnitude of each class's
            noise covariance minus the covariance of all the noise, largest magnitude first (positive:
            the noise called ``c`` varies more along the eigen-image than noise at large; negative: less).
        eigenimages: float64 ``(C, m, *shape)``: the unit-norm eigen-images (largest pixel positive).
        covariance: float64 ``(C, D, D)``: the class covariances minus the overall one.
    """

    eigenvalues: torch.Tensor
    eigenimages: torch.Tensor
    covariance: torch.Tensor


def second_order(outer: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor, components: int = 4) -> SecondOrderCI:
    """Second-order CIs from per-class outer-product sums ``(C, D, D)``, sums ``(C, *shape)`` and counts ``(C,)``:
    each class's covariance minus that of all the noise, and its ``components`` leading eigen-images."""
    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"components must be a positive integer, got {components!r}")
    shape = tuple(sums.shape[1:])
    c, d = len(counts), math.prod(shape)
    components = min(components, d)
    n = counts.double()
    s1 = sums.reshape(c, d).double()
    mean = s1 / n[:, None]
    cov = outer / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
    tot_mean = s1.sum(0) / n.sum()
    total = outer.sum(0) / n.sum() - tot_mean[:, None] * tot_mean[None, :]
    diff = cov - total
    ok = n >= 2
    vals = torch.full((c, components), math.nan, dtype=torch.float64)
    vecs = torch.full((c, components, d), math.nan, dtype=torch.float64)
    if ok.any():
        ev, evec = torch.linalg.eigh(diff[ok])
        pick = ev.abs().argsort(-1, descending=True)[:, :components]
        vals[ok] = ev.gather(1, pick)
        v = evec.gather(2, pick[:, None, :].expand(-1, d, -1)).transpose(1, 2)   # (C', m, D)
        vecs[ok] = v * v.gather(-1, v.abs().argmax(-1, keepdim=True)).sign()
    diff[~ok] = math.nan
    return SecondOrderCI(eigenvalues=vals, eigenimages=vecs.view(c, components, *shape), covariance=diff)


# ----------------------------------------------------------------------------------- the null
def _flat(t: torch.Tensor, lead: int) -> torch.Tensor:
    return t.reshape(*t.shape[:lead], -1)


def loo_zscores(images: torch.Tensor, nulls: torch.Tensor) -> torch.Tensor:
    """Every map standardised against the other ``K`` maps (pixel-wise mean and std, ddof 1).

    Args:
        images: ``(C, *shape)`` observed CIs.
        nulls: ``(K, C, *shape)`` null CIs, ``K >= 3``.

    Returns:
        float64 ``(K + 1, C, *shape)``: index 0 is the observed map (its z is :func:`zmap`),
        1..K the nulls, each against the other nulls and the observed map.
    """
    maps = torch.cat([images[None], nulls]).double()
    k = len(nulls)
    maps = maps - nulls.double().mean(0)                 # centre first: the sums below stay small
    s1, s2 = maps.sum(0), maps.square().sum(0)
    mean = (s1 - maps) / k
    var = (s2 - maps.square() - k * mean.square()) / (k - 1)
    sd = var.clamp_min(0).sqrt()
    return torch.where(sd > 0, (maps - mean) / sd, torch.full_like(sd, math.nan))


def zmap(images: torch.Tensor, nulls: torch.Tensor) -> torch.Tensor:
    """``(CI - null mean) / null std`` per class and pixel, float64 ``(C, *shape)``; NaN where the
    nulls do not vary (a class that took every sample of each chunk)."""
    nulls = nulls.double()
    sd = nulls.std(0)
    return torch.where(sd > 0, (images.double() - nulls.mean(0)) / sd, torch.full_like(sd, math.nan))


def _check_alpha(alpha: float, k: int) -> None:
    alpha = check_probability("alpha", alpha)
    if k < 3:
        raise ValueError(f"the test needs null CIs: run classification_images with null_permutations >= 3 "
                         f"(this run has {k})")
    if alpha < 1 / (k + 1):
        raise ValueError(f"alpha={alpha} is below the smallest p-value {k} permutations can give "
                         f"(1/{k + 1} = {1 / (k + 1):.3f}); run with null_permutations >= {math.ceil(1 / alpha) - 1}")


def fwer_pvalues(images: torch.Tensor, nulls: torch.Tensor) -> torch.Tensor:
    """Family-wise-error-corrected permutation p-value of every pixel (max statistic over the pixels
    of its class map, two-sided), float64 ``(C, *shape)``; NaN where the CI is undefined."""
    z = loo_zscores(images, nulls)
    a = _flat(z, 2).abs()                                          # (K+1, C, P)
    top = a[1:].nan_to_num(nan=0.0).amax(-1)                       # null maxima (K, C)
    exceed = (top[:, :, None] >= a[0][None]).sum(0)                # (C, P)
    p = (1 + exceed).double() / (len(nulls) + 1)
    p[~torch.isfinite(a[0])] = float("nan")
    return p.view(images.shape)


def _components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected components of each 2-d map in ``mask`` ``(M, H, W)``: labels, 0 outside,
    unique over the whole tensor (the largest flat index of the component, plus one)."""
    m, h, w = mask.shape
    lab = torch.where(mask, torch.arange(1, m * h * w + 1, device=mask.device).view(m, h, w), 0)
    while True:
        p = F.pad(lab, (1, 1, 1, 1))
        nb = torch.stack([p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:], lab]).amax(0)
        new = torch.where(mask, nb, 0)
        if torch.equal(new, lab):
            return lab
        lab = new


@dataclass
class ClusterTest:
    """Result of a cluster-mass permutation test (:meth:`~wna_helpers.methods.ci.ClassificationImages.clusters`).

    Attributes:
        mask: bool ``(C, *shape)``: pixels in a significant cluster.
        labels: int64 ``(C, *shape)``: 0 outside clusters, else the cluster's number ``j >= 1`` in
            its class (clusters of a class ordered by mass, largest first).
        mass: per class, float64 ``(n_clusters,)``: sum of ``|z|`` over each cluster.
        p_values: per class, float64 ``(n_clusters,)``: permutation p-value of each cluster
            (its mass against the largest cluster mass of every null map).
        threshold: the cluster-forming ``|z|`` threshold; alpha: the level of ``mask``.
    """

    mask: torch.Tensor
    labels: torch.Tensor
    mass: list[torch.Tensor]
    p_values: list[torch.Tensor]
    threshold: float
    alpha: float


def cluster_test(images: torch.Tensor, nulls: torch.Tensor, *, alpha: float = 0.05,
                 threshold: float = 3.0) -> ClusterTest:
    """Cluster-mass test: connected pixels with ``z > threshold`` (or ``z < -threshold``), within one
    channel, 4-connected; a cluster is significant when its mass beats the largest cluster mass of
    the null maps (``p <= alpha``, family-wise over the clusters of a class). See :class:`ClusterTest`."""
    if not threshold > 0:
        raise ValueError(f"threshold must be a positive z value, got {threshold!r}")
    _check_alpha(alpha, len(nulls))
    z = loo_zscores(images, nulls).nan_to_num(nan=0.0)            # (K+1, C, ch, H, W)
    if z.dim() != 5:
        raise ValueError(f"cluster tests need image-shaped CIs (C, channels, H, W), got {tuple(images.shape)}")
    maps = torch.stack([z > threshold, z < -threshold])            # (2, K+1, C, ch, H, W)
    lab = _components(maps.reshape(-1, *z.shape[-2:])).view(maps.shape)
    weight = z.abs().expand_as(maps).reshape(-1)
    flat = lab.reshape(-1)
    mass = torch.bincount(flat, weights=weight, minlength=flat.numel() + 1)
    mass[0] = 0
    kp1, c = z.shape[:2]
    inner = math.prod(z.shape[2:])                                 # channels x H x W
    f = flat[flat > 0]
    # the largest cluster mass of each (map, class); a label is the flat index of a pixel, plus one
    per = torch.zeros(kp1 * c, dtype=torch.float64, device=flat.device)
    per.scatter_reduce_(0, ((f - 1) % (kp1 * c * inner)) // inner, mass[f], reduce="amax")
    top = per.view(kp1, c)[1:]                                       # null maxima (K, C)
    lab_obs = lab[:, 0]                                              # (2, C, ch, H, W)
    out_labels = torch.zeros(images.shape, dtype=torch.int64)
    mask = torch.zeros(images.shape, dtype=torch.bool)
    masses, pvals = [], []
    for ci in range(c):
        ids = lab_obs[:, ci].unique()
        ids = ids[ids > 0]
        m = mass[ids]
        order = m.argsort(descending=True)
        ids, m = ids[order], m[order]
        p = (1 + (top[:, ci][None, :] >= m[:, None]).sum(1)).double() / kp1
        for j, (lid, pj) in enumerate(zip(ids.tolist(), p.tolist()), start=1):
            where = (lab_obs[:, ci] == lid).any(0).cpu()
            out_labels[ci][where] = j
            if pj <= alpha:
                mask[ci][where] = True
        masses.append(m.double().cpu())
        pvals.append(p.cpu())
    return ClusterTest(mask=mask, labels=out_labels, mass=masses, p_values=pvals, threshold=float(threshold),
                       alpha=float(alpha))


def info_scores(images: torch.Tensor, nulls: torch.Tensor) -> torch.Tensor:
    """infoVal-style score per class: the norm of the centred CI against the norms of the null
    CIs, ``(norm - median) / (1.4826 * MAD)``, float64 ``(C,)`` (each map centred on the mean of
    the other ``K`` maps, as in :func:`loo_zscores`)."""
    maps = torch.cat([images[None], nulls]).double()
    k = len(nulls)
    centre = (maps.sum(0) - maps) / k
    norms = _flat(maps - centre, 2).norm(dim=-1)                     # (K+1, C)
    ref = norms[1:]
    med = ref.median(0).values
    mad = (ref - med).abs().median(0).values * 1.4826
    return torch.where(mad > 0, (norms[0] - med) / mad, torch.full_like(mad, math.nan))


# ---------------------------------------------------------------------------- reliability
def split_half(odd_images: torch.Tensor, even_images: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over pixels between the CIs of the odd and of the even chunks, per
    class, float64 ``(C,)``; NaN where either half is undefined."""
    a, b = _flat(odd_images.double(), 1), _flat(even_images.double(), 1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def spearman_brown(r: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """Reliability of a measure ``factor`` times longer than one of reliability ``r``: ``f r / (1 + (f - 1) r)``."""
    return factor * r / (1 + (factor - 1) * r)


def samples_needed(reliability: torch.Tensor, n_samples: int, target: float = 0.9) -> torch.Tensor:
    """Samples a run needs for each class to reach ``target`` reliability (Spearman-Brown prophecy,
    class shares assumed fixed), float64 ``(C,)``; inf where the reliability is not positive."""
    if not 0 < target < 1:
        raise ValueError(f"target must be in (0, 1), got {target!r}")
    r = reliability.double()
    factor = target * (1 - r) / (r * (1 - target))
    return torch.where(r > 0, n_samples * factor, torch.full_like(r, math.inf))


def logit_regression(cross: torch.Tensor, sums: torch.Tensor, sumsq: torch.Tensor, n: int) -> torch.Tensor:
    """Logit images from the chunk-centred cross sums: ``cross / (n var(x))`` per pixel.

    Args:
        cross: ``(C, d)``: ``sum_i (logit_i - chunk mean) x_i``.
        sums, sumsq: ``(d,)``: sum and sum of squares of all stimuli.
        n: number of stimuli.
    """
    var = (sumsq - sums.square() / n) / (n - 1)
    return cross / (n * var)
