"""The two-class design's trials as a list, and its classification images from recorded answers.

:func:`~wna_helpers.methods.two_class.two_class_ci` draws the trials and asks a network in one pass. A person
answers one trial at a time: :func:`two_class_trials` draws exactly the trials that run sees (same seed, same
chunks: trial ``i`` of both is the same stimulus), and :func:`two_class_from_responses` turns any observer's
answers to them into the same :class:`~wna_helpers.methods.two_class.TwoClassCI`, with its z-maps and Holm
maps. A network answering through this path gives its own run exactly (the tests check it), so a person's CI and
a network's come from the same trials and the same arithmetic. :func:`two_class_reliability` is the split-half
reliability of the combined CI (odd against even trials, Spearman-Brown).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..engine.checks import IMAGE_RANGE
from ..engine.stimuli import Stimulus
from .ci_stats import spearman_brown
from .two_class import CHUNK_SIZE, TwoClassCI, add_chunk, check_design, describe_design, draw_chunk

__all__ = ["TwoClassTrials", "two_class_trials", "two_class_from_responses", "two_class_reliability"]


@dataclass(frozen=True)
class TwoClassTrials:
    """The trials of one two-class run, in trial order (on the CPU).

    Attributes:
        true: int64 ``(N,)``, the true class of each trial (0: A, 1: B).
        noise: float32 ``(N, *shape)``, the noise fields.
        stimuli: float32 ``(N, *shape)``, ``(1 - weight) * noise + weight * image``: what the observer sees.
        weight: the signal weight.
        classes: ``(a, b)``, the class indices of A and B.
        stimulus: everything the trials depend on (:func:`~wna_helpers.methods.two_class.describe_design`).
    """

    true: torch.Tensor
    noise: torch.Tensor
    stimuli: torch.Tensor
    weight: float
    classes: tuple[int, int]
    stimulus: dict[str, Any]

    def __len__(self) -> int:
        return len(self.true)

    def head(self, n: int) -> "TwoClassTrials":
        """The first ``n`` trials (``0 <= n <= len(self)``)."""
        if not 0 <= n <= len(self):
            raise ValueError(f"n must lie in [0, {len(self)}], got {n}")
        return TwoClassTrials(self.true[:n], self.noise[:n], self.stimuli[:n], self.weight, self.classes,
                              self.stimulus)


def two_class_trials(images_a: torch.Tensor, images_b: torch.Tensor, *, classes: tuple[int, int] = (0, 1),
                     weight: float = 0.1, n_samples: int = 1000, noise: Stimulus | str = "uniform", seed: int = 0,
                     value_range: tuple[float, float] | None = IMAGE_RANGE) -> TwoClassTrials:
    """The trials :func:`~wna_helpers.methods.two_class.two_class_ci` shows with the same arguments.

    Args:
        images_a, images_b: ``(M, *shape)`` signals of class A and B.
        classes: ``(a, b)`` class indices; default ``(0, 1)``.
        weight: signal weight in [0, 1]; default 0.1.
        n_samples: number of trials; default 1,000.
        noise: a noise kind; default ``"uniform"``.
        seed: default 0.
        value_range: the range the images must lie in; default (0, 1).

    Returns:
        :class:`TwoClassTrials` (``true`` ``(N,)``, ``noise`` and ``stimuli`` ``(N, *shape)``).

    Raises:
        ValueError: as :func:`~wna_helpers.methods.two_class.two_class_ci`.

    Example:
        >>> a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
        >>> t = two_class_trials(a, b, weight=0.5, n_samples=1024)    # one whole chunk: exactly half are B
        >>> t.stimuli.shape, int(t.true.sum())
        (torch.Size([1024, 1, 2, 2]), 512)
    """
    shape, w, pair, n, _, noise_kind = check_design(images_a, images_b, classes, weight, n_samples, 1, seed,
                                                    noise, value_range)
    cpu = torch.device("cpu")
    sig_a, sig_b = images_a.detach().to(cpu, torch.float32), images_b.detach().to(cpu, torch.float32)
    gen = torch.Generator(device=cpu)
    parts = [draw_chunk(gen, c, int(seed), n, sig_a, sig_b, w, noise_kind, shape)
             for c in range(math.ceil(n / CHUNK_SIZE))]
    true, z, x = (torch.cat([p[i] for p in parts]) for i in range(3))
    return TwoClassTrials(true, z, x, w, pair, describe_design(images_a, images_b, noise_kind, w, pair, int(seed)))


def _choices(trials: TwoClassTrials, responses: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Responses given as class indices (each ``a`` or ``b``) turned into choices 0 (A) / 1 (B)."""
    r = torch.as_tensor(responses)
    if r.dim() != 1 or r.is_floating_point() or r.is_complex() or r.dtype == torch.bool:
        raise ValueError(f"responses must be a 1-d integer tensor of class indices, got {r.dtype} {tuple(r.shape)}")
    if len(r) > len(trials):
        raise ValueError(f"{len(r)} responses for {len(trials)} trials; give at most one response per trial")
    a, b = trials.classes
    bad = (r != a) & (r != b)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"response {int(r[i])} of trial {i} is neither class {a} nor class {b}")
    return (r == b).long()


def two_class_from_responses(trials: TwoClassTrials, responses: torch.Tensor | Sequence[int]) -> TwoClassCI:
    """The :class:`~wna_helpers.methods.two_class.TwoClassCI` of an observer's answers to the first
    ``len(responses)`` trials.

    Args:
        trials: from :func:`two_class_trials`.
        responses: int ``(n,)``, ``n <= len(trials)``: the answer to each of the first ``n`` trials, as a class
            index (``classes[0]`` or ``classes[1]``).

    Returns:
        :class:`~wna_helpers.methods.two_class.TwoClassCI` over those ``n`` trials (the same sums, in the same
        order, as a network run of them).

    Raises:
        ValueError: more responses than trials, or a response that is neither class.

    Example:
        >>> a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
        >>> t = two_class_trials(a, b, classes=(5, 6), weight=0.5, n_samples=100)
        >>> said = torch.where(t.stimuli.mean((1, 2, 3)) < 0.5, 5, 6)
        >>> two_class_from_responses(t, said).accuracy > 0.9
        True
    """
    choice = _choices(trials, responses)
    n = len(choice)
    shape = tuple(trials.stimuli.shape[1:])
    d = math.prod(shape)
    sums = torch.zeros(2, 4, d, dtype=torch.float64)
    sumsq = torch.zeros_like(sums)
    counts = torch.zeros(4, dtype=torch.int64)
    for lo in range(0, n, CHUNK_SIZE):
        hi = min(n, lo + CHUNK_SIZE)
        add_chunk(sums, sumsq, counts, trials.true[lo:hi], choice[lo:hi], trials.noise[lo:hi],
                  trials.stimuli[lo:hi])
    full = (2, 2, *shape)
    return TwoClassCI(weight=trials.weight, classes=trials.classes, counts=counts.view(2, 2),
                      sums=sums[0].view(full), sumsq=sumsq[0].view(full), noise_sums=sums[1].view(full),
                      noise_sumsq=sumsq[1].view(full), n_samples=n, stimulus=dict(trials.stimulus))


def two_class_reliability(trials: TwoClassTrials, responses: torch.Tensor | Sequence[int], *,
                          kind: str = "noise") -> float:
    """Split-half reliability of the combined classification image: the Pearson r over pixels between the
    combined CIs of the even and of the odd trials, stepped up to the whole run by Spearman-Brown.

    Args:
        trials: from :func:`two_class_trials`.
        responses: int ``(n,)`` answers to the first ``n`` trials (class indices).
        kind: ``"noise"`` (default) or ``"stimulus"``.

    Returns:
        float in [-1, 1]; NaN while either half's combined CI is undefined (a cell without trials) or flat.
    """
    choice = torch.as_tensor(responses)
    n = len(choice)
    sub = trials.head(n)
    halves = []
    for start in (0, 1):
        idx = torch.arange(start, n, 2)
        part = TwoClassTrials(sub.true[idx], sub.noise[idx], sub.stimuli[idx], sub.weight, sub.classes, sub.stimulus)
        halves.append(two_class_from_responses(part, choice[idx]).combined(kind).flatten())
    a, b = (h - h.mean() for h in halves)
    denom = float(a.norm() * b.norm())
    if not math.isfinite(denom) or denom == 0:
        return math.nan
    return float(spearman_brown(torch.tensor(float((a * b).sum()) / denom)))
