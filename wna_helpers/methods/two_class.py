"""The classic two-class design of psychophysics: a signal of class A or B embedded in noise.

Each trial shows ``x = (1 - w) * noise + w * image`` where the image is of class A on half the
trials and of class B on the other half; the model answers A or B (the larger of two chosen
logits). The classification image of each true class is the mean of the stimuli (or of the noise
fields) the model called A minus the mean of those it called B; the two are averaged for the
combined map. The paper ran this with a binary 5-vs-6 MNIST CNN and ``w`` in {0.3, 0.2, 0.1, 0}
(``classification_images_signal_embed_noise.ipynb``, PAPER.md "Signal embedded in noise"),
averaging *stimuli*; psychophysics averages the *noise fields*. With one image per class the two
differ only by the factor ``1 - w``; with many images the stimulus CI also carries which images
the model found easy.

Trials are cut into fixed-size chunks; chunk ``c`` draws its true classes (a seeded permutation,
exactly balanced over a whole chunk), its noise and its images from a generator seeded by
``(seed, c)`` (:func:`wna_helpers.engine.stimuli.chunk_seed`), and its sums are formed per chunk, so a
result does not depend on ``batch_size``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

from .ci_compare import holm_adjust, t_pvalues, welch
from ..engine.fingerprint import tensor_digest
from ..engine.checks import IMAGE_RANGE, check_images, check_positive_int, model_dtype
from ..engine.kernel import model_device
from ..engine.stimuli import Noise, Stimulus, as_stimulus, chunk_seed

__all__ = ["TwoClassCI", "two_class_ci", "CHUNK_SIZE", "add_chunk", "check_design", "describe_design",
           "draw_chunk"]

#: Trials per seeded chunk (the unit of randomness; results do not depend on ``batch_size``).
CHUNK_SIZE = 1024

_KINDS = ("stimulus", "noise")


@dataclass
class TwoClassCI:
    """Result of :func:`two_class_ci`: counts and float64 sums per (true class, response) cell.

    Index 0 is class A (``classes[0]``), index 1 class B (``classes[1]``), on both axes.

    Attributes:
        weight: the signal weight ``w`` of the stimuli ``(1 - w) * noise + w * image``.
        classes: ``(a, b)``, the logit indices compared.
        counts: int64 ``(2, 2)``, trials per ``[true, response]``.
        sums: float64 ``(2, 2, *shape)``, sums of the stimuli per cell.
        sumsq: float64 ``(2, 2, *shape)``, sums of squared stimuli per cell.
        noise_sums: float64 ``(2, 2, *shape)``, sums of the noise fields per cell.
        noise_sumsq: float64 ``(2, 2, *shape)``, sums of squared noise fields per cell.
        n_samples: number of trials.
        stimulus: everything the stimuli depend on (noise, weight, image digests, seed, chunk size).
    """

    weight: float
    classes: tuple[int, int]
    counts: torch.Tensor
    sums: torch.Tensor
    sumsq: torch.Tensor
    noise_sums: torch.Tensor
    noise_sumsq: torch.Tensor
    n_samples: int
    stimulus: dict[str, Any]

    def _moments(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {list(_KINDS)}; got {kind!r}")
        return (self.sums, self.sumsq) if kind == "stimulus" else (self.noise_sums, self.noise_sumsq)

    def _n(self) -> torch.Tensor:
        return self.counts.double().view(2, 2, *([1] * (self.sums.dim() - 2)))

    @property
    def accuracy(self) -> float:
        """Share of trials answered with the true class (float)."""
        return float(self.counts.diagonal().sum()) / max(int(self.counts.sum()), 1)

    @property
    def hit_rates(self) -> torch.Tensor:
        """float64 ``(2,)``: share of class-A trials called A and of class-B trials called B (NaN: no trials)."""
        tot = self.counts.sum(1).double()
        return torch.where(tot > 0, self.counts.diagonal().double() / tot.clamp_min(1), torch.nan)

    def ci(self, kind: str = "stimulus") -> torch.Tensor:
        """Per true class: mean of the trials called A minus mean of those called B.

        Args:
            kind: ``"stimulus"`` (the paper's, default) or ``"noise"`` (the noise fields, psychophysics).

        Returns:
            float64 ``(2, *shape)`` (row 0: true class A, row 1: true class B); NaN in a row
            whose true class has an empty response cell.
        """
        s, _ = self._moments(kind)
        n = self._n()
        mean = torch.where(n > 0, s / n.clamp_min(1), torch.nan)
        return mean[:, 0] - mean[:, 1]

    def combined(self, kind: str = "stimulus") -> torch.Tensor:
        """The average of the two true-class CIs (the psychophysics combination), float64 ``(*shape)``.

        NaN where either true-class CI is NaN (e.g. an observer that never errs on one class).
        """
        return self.ci(kind).mean(0)

    def _welch(self, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, ss = self._moments(kind)
        return welch(s[:, 0], ss[:, 0], self.counts[:, 0], s[:, 1], ss[:, 1], self.counts[:, 1])

    def zmap(self, kind: str = "stimulus") -> torch.Tensor:
        """Welch z of each true-class CI: ``(m_A - m_B) / sqrt(v_A / n_A + v_B / n_B)``
        (:func:`~wna_helpers.methods.ci_compare.welch`).

        Variances are the unbiased per-cell variances from the sums of squares.

        Args:
            kind: ``"stimulus"`` (default) or ``"noise"``.

        Returns:
            float64 ``(2, *shape)``; NaN where a cell has fewer than 2 trials or the standard
            error is 0.
        """
        return self._welch(kind)[1]

    def combined_zmap(self, kind: str = "stimulus") -> torch.Tensor:
        """z of :meth:`combined`: ``(d_A + d_B) / sqrt(se_A^2 + se_B^2)`` from the two rows' Welch differences and
        standard errors (independent trials), float64 ``(*shape)``; NaN where a cell has fewer than 2 trials or the
        standard error is 0.

        Args:
            kind: ``"stimulus"`` (default) or ``"noise"``.
        """
        s, ss = self._moments(kind)
        n = self._n()
        mean = s / n
        var = ((ss - s * mean) / (n - 1)).clamp_min(0.0)          # unbiased per cell, as Welch's
        var = torch.where(n >= 2, var, torch.nan)
        se2 = (var / n).sum(1).sum(0)                              # over the four cells
        diff = mean[:, 0] - mean[:, 1]
        return torch.where(se2 > 0, (diff[0] + diff[1]) / se2.sqrt(), torch.nan)

    def pvalues(self, kind: str = "stimulus") -> torch.Tensor:
        """Two-sided p-values of :meth:`zmap`, Student's t with the Welch-Satterthwaite degrees of
        freedom (the normal for large cells), float64 ``(2, *shape)`` (NaN where z is NaN)."""
        _, z, df = self._welch(kind)
        return t_pvalues(z, df)

    def significant(self, alpha: float = 0.05, kind: str = "stimulus") -> torch.Tensor:
        """Pixels whose CI differs from 0, Holm step-down at family-wise error ``alpha`` per map.

        Holm's procedure controls the FWER over the pixels of each true-class map under any
        dependence between pixels; the family is the pixels with a finite z.

        Args:
            alpha: family-wise error rate in (0, 1); default 0.05.
            kind: ``"stimulus"`` (default) or ``"noise"``.

        Returns:
            bool ``(2, *shape)``.

        Raises:
            ValueError: ``alpha`` outside (0, 1) or an unknown ``kind``.
        """
        if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0.0 < float(alpha) < 1.0:
            raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}")
        p = self.pvalues(kind)
        return holm_adjust(p.reshape(2, -1)).view_as(p) <= float(alpha)  # NaN <= alpha is False


@torch.no_grad()
def two_class_ci(model: nn.Module, images_a: torch.Tensor, images_b: torch.Tensor, *,
                 classes: tuple[int, int] = (0, 1), weight: float = 0.1, n_samples: int = 10000,
                 noise: Stimulus | str = "uniform", seed: int = 0, batch_size: int = 2048,
                 value_range: tuple[float, float] | None = IMAGE_RANGE) -> TwoClassCI:
    """Classification images of the two-class signal-in-noise design.

    Trial i has true class A or B (half each: a seeded permutation per chunk of
    :data:`CHUNK_SIZE` trials), an image drawn with replacement from ``images_a`` or ``images_b``,
    and the stimulus ``(1 - weight) * noise + weight * image``. The model answers A when
    ``logit[a] >= logit[b]`` (ties go to A) and B otherwise; other logits are ignored. Counts, sums
    and sums of squares of the stimuli and of the noise fields are accumulated in float64 per
    (true class, response) cell, one chunk at a time.

    Args:
        model: classifier returning ``(B, K)`` logits, ``K >= 2``; run in eval mode on its own
            device, training flags restored afterwards, no gradients recorded.
        images_a: ``(M_a, *input_shape)`` signals of class A (M_a = 1: one fixed signal, the
            textbook design).
        images_b: ``(M_b, *input_shape)`` signals of class B.
        classes: ``(a, b)``, the distinct logit indices compared; default ``(0, 1)`` (a binary model).
        weight: signal weight w in [0, 1]; default 0.1.
        n_samples: number of trials, >= 1; default 10,000.
        noise: a :class:`~wna_helpers.engine.stimuli.Noise` or ``"uniform"`` / ``"gaussian"``; default
            ``"uniform"`` (U[0, 1], the paper's).
        seed: seed of the trial chunks; default 0.
        batch_size: trials per forward pass, >= 1; default 2,048 (does not change the result).
        value_range: the range the images' pixels must lie in (the model's inputs); default (0, 1); None
            skips that check (:func:`~wna_helpers.engine.checks.check_images`).

    Returns:
        :class:`TwoClassCI` on the CPU: ``counts`` int64 ``(2, 2)``, ``sums`` / ``sumsq`` /
        ``noise_sums`` / ``noise_sumsq`` float64 ``(2, 2, *input_shape)`` indexed
        ``[true, response]``; ``ci(kind)`` ``(2, *input_shape)``, ``combined(kind)``, ``zmap(kind)``,
        ``significant(alpha, kind)``, ``accuracy``, ``hit_rates``.

    Raises:
        ValueError: images that are not non-empty finite tensors of one shape, a shape the model
            cannot take, ``weight`` outside [0, 1], ``classes`` not two distinct indices below the
            model's number of logits, a non-positive ``n_samples`` or ``batch_size``, a non-integer
            ``seed``, or a ``noise`` that is not a noise kind.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from wna_helpers.methods.two_class import two_class_ci
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        >>> a, b = torch.tensor([1.0, 0, 0, 0]).view(1, 1, 2, 2), torch.tensor([0, 1.0, 0, 0]).view(1, 1, 2, 2)
        >>> r = two_class_ci(model, a, b, weight=0.3, n_samples=2000)
        >>> r.accuracy > 0.8, r.combined("noise")[0, 0, 0].item() > 0
        (True, True)
    """
    shape, w, (a_idx, b_idx), n_samples, batch_size, noise_kind = check_design(
        images_a, images_b, classes, weight, n_samples, batch_size, seed, noise, value_range)
    device, dtype = model_device(model), model_dtype(model)
    sig_a = images_a.detach().to(device=device, dtype=dtype)
    sig_b = images_b.detach().to(device=device, dtype=dtype)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        _check_logits(model, sig_a, shape, classes, (a_idx, b_idx))
        sums, sumsq, counts = _accumulate(model, sig_a, sig_b, (a_idx, b_idx), w, n_samples, batch_size, int(seed),
                                          noise_kind, shape)
    finally:
        for mod, flag in flags.items():
            mod.training = flag

    full = (2, 2, *shape)
    desc = describe_design(images_a, images_b, noise_kind, w, (a_idx, b_idx), int(seed))
    sums, sumsq = sums.cpu(), sumsq.cpu()
    return TwoClassCI(weight=w, classes=(a_idx, b_idx), counts=counts.cpu().view(2, 2),
                      sums=sums[0].view(full), sumsq=sumsq[0].view(full), noise_sums=sums[1].view(full),
                      noise_sumsq=sumsq[1].view(full), n_samples=n_samples, stimulus=desc)


def describe_design(images_a: torch.Tensor, images_b: torch.Tensor, noise: Noise, weight: float,
                    classes: tuple[int, int], seed: int) -> dict[str, Any]:
    """Everything the trials of the design depend on: noise, weight, classes, the images' digests, seed and
    chunk size (a :class:`TwoClassCI`'s ``stimulus``)."""
    return {"kind": "two_class", "noise": noise.describe(), "weight": float(weight), "classes": list(classes),
            "images_a": {"shape": list(images_a.shape), "sha256": tensor_digest(images_a.detach().cpu())},
            "images_b": {"shape": list(images_b.shape), "sha256": tensor_digest(images_b.detach().cpu())},
            "seed": int(seed), "chunk_size": CHUNK_SIZE,
            "label": f"(1 − {weight:g})·{noise.label()} + {weight:g}·image"}


def check_design(images_a: Any, images_b: Any, classes: Any, weight: Any, n_samples: Any, batch_size: Any,
                  seed: Any, noise: Any, value_range: Any) -> tuple[tuple[int, ...], float, tuple[int, int], int, int, Noise]:
    """Every argument of :func:`two_class_ci` checked before any forward pass."""
    check_images(images_a, name="images_a", value_range=value_range)
    check_images(images_b, name="images_b", value_range=value_range)
    shape = tuple(images_a.shape[1:])
    if tuple(images_b.shape[1:]) != shape:
        raise ValueError(f"images_a and images_b must have the same image shape; got {shape} and "
                         f"{tuple(images_b.shape[1:])}")
    if isinstance(weight, bool) or not isinstance(weight, Real) or not math.isfinite(weight) \
            or not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight must be a number in [0, 1] (0 = noise only, 1 = image only); got {weight!r}")
    try:
        a_idx, b_idx = classes  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"classes must be a pair (a, b) of logit indices; got {classes!r}") from None
    if any(isinstance(c, bool) or not isinstance(c, Integral) or c < 0 for c in (a_idx, b_idx)) or a_idx == b_idx:
        raise ValueError(f"classes must be two distinct non-negative integer logit indices; got {classes!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    noise_kind = as_stimulus(noise)
    if not isinstance(noise_kind, Noise):
        raise ValueError(f"noise must be a noise kind (Uniform(), Gaussian(), 'uniform', 'gaussian', ...); got "
                         f"{noise_kind!r}")
    return (shape, float(weight), (int(a_idx), int(b_idx)), check_positive_int("n_samples", n_samples),
            check_positive_int("batch_size", batch_size), noise_kind)


def _check_logits(model: nn.Module, sig_a: torch.Tensor, shape: tuple[int, ...], classes: Any,
                  pair: tuple[int, int]) -> None:
    """One image through the model: it takes the shape and returns ``(1, K)`` logits with both classes."""
    try:
        probe = model(sig_a[:1])
    except RuntimeError as err:
        raise ValueError(f"the model cannot take images of shape {shape}: {err}") from None
    if not isinstance(probe, torch.Tensor) or probe.dim() != 2 or probe.shape[0] != 1:
        raise ValueError(f"the model must return (B, K) logits; it returned "
                         f"{tuple(getattr(probe, 'shape', ()))} for one image")
    k = probe.shape[1]
    if max(pair) >= k:
        raise ValueError(f"classes {classes!r} must be distinct indices in [0, {k}) (the model returns {k} "
                         f"logits; a one-output sigmoid model needs two logits, e.g. [-z, z])")


def draw_chunk(gen: torch.Generator, c: int, seed: int, n_samples: int, sig_a: torch.Tensor, sig_b: torch.Tensor,
                w: float, noise_kind: Noise, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunk ``c`` of the trials: true classes (0: A, 1: B), noise fields and stimuli."""
    device, dtype = sig_a.device, sig_a.dtype
    m = min(CHUNK_SIZE, n_samples - c * CHUNK_SIZE)
    gen.manual_seed(chunk_seed(seed, c))
    half = torch.arange(CHUNK_SIZE, device=device) % 2
    true = half[torch.randperm(CHUNK_SIZE, generator=gen, device=device)]
    z = noise_kind.sample(gen, (CHUNK_SIZE, *shape), device, dtype)
    pick_a = torch.randint(len(sig_a), (CHUNK_SIZE,), generator=gen, device=device)
    pick_b = torch.randint(len(sig_b), (CHUNK_SIZE,), generator=gen, device=device)
    true, z, pick_a, pick_b = true[:m], z[:m], pick_a[:m], pick_b[:m]
    img = torch.where((true == 0).view(-1, *([1] * len(shape))), sig_a[pick_a], sig_b[pick_b])
    return true, z, z * (1.0 - w) + img * w


def _accumulate(model: nn.Module, sig_a: torch.Tensor, sig_b: torch.Tensor, pair: tuple[int, int], w: float,
                n_samples: int, batch_size: int, seed: int, noise_kind: Noise,
                shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Counts, sums and sums of squares of the stimuli and the noise per (true, response) cell, float64, summed
    chunk by chunk (so how the forwards are batched never changes them)."""
    device = sig_a.device
    d = math.prod(shape)
    sums = torch.zeros(2, 4, d, dtype=torch.float64, device=device)  # [stimulus/noise, cell, pixel]
    sumsq = torch.zeros_like(sums)
    counts = torch.zeros(4, dtype=torch.int64, device=device)
    gen = torch.Generator(device=device)
    n_chunks = -(-n_samples // CHUNK_SIZE)
    per_group = max(1, batch_size // CHUNK_SIZE)  # chunks drawn together for one or more forwards
    a_idx, b_idx = pair
    for g0 in range(0, n_chunks, per_group):
        parts = [draw_chunk(gen, c, seed, n_samples, sig_a, sig_b, w, noise_kind, shape)
                 for c in range(g0, min(g0 + per_group, n_chunks))]
        x = torch.cat([p[2] for p in parts]) if len(parts) > 1 else parts[0][2]
        resp = torch.cat([(lg[:, b_idx] > lg[:, a_idx]).long()
                          for lg in (model(x[i:i + batch_size]) for i in range(0, len(x), batch_size))])
        off = 0
        for true, z, stim in parts:
            m = len(true)
            add_chunk(sums, sumsq, counts, true, resp[off:off + m], z, stim)
            off += m
    return sums, sumsq, counts


def add_chunk(sums: torch.Tensor, sumsq: torch.Tensor, counts: torch.Tensor, true: torch.Tensor,
              response: torch.Tensor, noise: torch.Tensor, stimuli: torch.Tensor) -> None:
    """Add one chunk of trials to the float64 cell sums in place: ``sums`` and ``sumsq`` ``(2, 4, D)``
    ([stimulus / noise, cell = 2 true + response, pixel]), ``counts`` int64 ``(4,)``; ``true`` and ``response``
    int ``(m,)`` in {0, 1} (0: A), ``noise`` and ``stimuli`` ``(m, ...)``."""
    m, d = len(true), sums.shape[-1]
    cell = true * 2 + response
    onehot = torch.nn.functional.one_hot(cell, 4).to(torch.float64).T  # (4, m)
    counts += torch.bincount(cell, minlength=4)
    for j, t in enumerate((stimuli, noise)):
        t64 = t.reshape(m, d).to(torch.float64)
        sums[j] += onehot @ t64
        sumsq[j] += onehot @ (t64 * t64)
