"""Classification images from recorded responses: the same statistics for any observer.

Psychophysics makes classification images from people's answers to noisy stimuli; this book makes them from a
network's. :func:`classification_images_from_responses` takes the trials (the stimuli themselves, or the seeded
stimulus that regenerates them: trial ``i`` is sample ``i`` of the run with that seed) and one response per trial,
and returns the same :class:`~wna_helpers.methods.ci.ClassificationImages` as a network run: counts, images,
the permutation null (z-maps, ``significant``, clusters), split-half reliability, ``samples_needed``. A network
answering the same trials through this path gives the same result as
:func:`~wna_helpers.methods.ci.classification_images` (the tests check it), so a person and a network can be put
through the same trials and compared with the same statistics
(:func:`~wna_helpers.methods.ci_compare.compare_classification_images`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..engine.accumulator import Chunk
from ..engine.options import DEFAULT_CHUNK, RunOptions
from ..engine.stimuli import Images, Stimulus, as_stimulus
from .ci import CIAccumulator, ClassificationImages, ci_result
from .ci_stats import DEFAULT_PERMUTATIONS, CIStatsAccumulator

__all__ = ["classification_images_from_responses"]


def _responses(responses: torch.Tensor | list[int], n: int | None, num_classes: int | None) -> tuple[torch.Tensor, int]:
    r = torch.as_tensor(responses)
    if r.dim() != 1 or len(r) == 0 or r.is_floating_point() or r.is_complex() or r.dtype == torch.bool:
        raise ValueError(f"responses must be a non-empty 1-d integer tensor (one class index per trial), got "
                         f"{r.dtype} {tuple(r.shape)}")
    if n is not None and len(r) != n:
        raise ValueError(f"there are {n} trials but {len(r)} responses; give one response per trial")
    k = int(num_classes) if num_classes is not None else max(2, int(r.max()) + 1)
    if k < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if int(r.min()) < 0 or int(r.max()) >= k:
        raise ValueError(f"responses must be class indices in [0, {k}); got values from {int(r.min())} to "
                         f"{int(r.max())}")
    return r.long(), k


def classification_images_from_responses(trials: torch.Tensor | Stimulus | str,
                                         responses: torch.Tensor | list[int], *, num_classes: int | None = None,
                                         input_shape: tuple[int, ...] = (1, 28, 28), seed: int = 0,
                                         chunk_size: int = DEFAULT_CHUNK, scores: torch.Tensor | None = None,
                                         null_permutations: int = DEFAULT_PERMUTATIONS,
                                         value_range: tuple[float, float] | None = (0.0, 1.0)) -> ClassificationImages:
    """Classification images of an observer's recorded responses to the trials.

    The trials are processed in chunks of ``chunk_size`` in trial order, exactly as
    :func:`~wna_helpers.methods.ci.classification_images` processes a run's samples, so the label-permuted null
    CIs, the odd/even split and the chunk-centred response images are the ones a network run of the same trials
    gives.

    Args:
        trials: the stimuli, float ``(N, *input_shape)`` in trial order; or the seeded stimulus that generated
            them (a :class:`~wna_helpers.engine.stimuli.Stimulus` or ``"uniform"`` / ``"gaussian"``): trial ``i``
            is then sample ``i`` of the run with ``seed`` and ``chunk_size``, regenerated here.
        responses: int ``(N,)``: the observer's answer on each trial, a class index (for a two-alternative task,
            one of the two classes' indices).
        num_classes: ``K``; default ``max(responses) + 1`` (at least 2).
        input_shape: ``(C, H, W)`` of a regenerated stimulus; default ``(1, 28, 28)`` (ignored for a tensor).
        seed: the seed of a regenerated stimulus, and of the permutation null in every case; default 0.
        chunk_size: samples per seeded chunk (as the run that generated the trials); default 4,096.
        scores: optional float ``(N, K)`` graded answers whose argmax is the response (a network's logits, a
            person's confidence ratings); the "logit images" regress them on the stimuli. Default None: the
            one-hot responses (a linear-probability response image).
        null_permutations: null CIs per class (default 32); 0 keeps none.
        value_range: the range a tensor of trials must lie in; default (0, 1); None skips the check.

    Returns:
        :class:`~wna_helpers.methods.ci.ClassificationImages`: ``images`` ``(K, *input_shape)``, ``counts``,
        ``null_images``, split-half sums, ``logit_images``; ``stimulus`` describes the trials as a network run of
        them does (a regenerated stimulus with its seed and chunk size; a tensor as
        :class:`~wna_helpers.engine.stimuli.Images`, by its content digest).

    Raises:
        ValueError: trials that are not finite floats in ``value_range``, responses that are not one class index
            per trial, scores whose shape or argmax disagrees with the responses, a bad ``chunk_size``.

    Example:
        >>> import wna_helpers as wna
        >>> x = torch.rand(500, 1, 4, 4)
        >>> said = (x[:, 0, 0, 0] > 0.5).long()        # an observer that reads one pixel
        >>> ci = classification_images_from_responses(x, said)
        >>> ci.counts.tolist() == [int((said == 0).sum()), int((said == 1).sum())]
        True
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if isinstance(trials, torch.Tensor):
        stimulus: Stimulus = Images(trials, value_range=value_range)    # checks them; described by their digest
        n, shape = len(trials), tuple(trials.shape[1:])
    else:
        stimulus = as_stimulus(trials)
        if not stimulus.seeded:
            raise ValueError(f"trials must be a tensor of stimuli or a seeded stimulus that regenerates them; got "
                             f"{stimulus.label()}")
        n, shape = None, tuple(input_shape)
    r, k = _responses(responses, n, num_classes)
    n = len(r)
    if scores is not None:
        scores = torch.as_tensor(scores)
        if scores.shape != (n, k) or not scores.is_floating_point() or not bool(torch.isfinite(scores).all()):
            raise ValueError(f"scores must be finite floats of shape ({n}, {k}), one row per trial; got "
                             f"{scores.dtype} {tuple(scores.shape)}")
        if not bool((scores.argmax(1) == r).all()):
            raise ValueError("scores must agree with the responses: the argmax of each row is that trial's response")
    acc, stats = CIAccumulator(), CIStatsAccumulator(null_permutations)
    cpu = torch.device("cpu")
    acc.setup(k, shape, cpu, {})
    stats.setup(k, shape, cpu, {})
    for c in range(math.ceil(n / chunk_size)):
        lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
        if isinstance(trials, torch.Tensor):
            x = trials[lo:hi].to(cpu, torch.float32)
        else:
            x = stimulus.chunk(c, seed=seed, chunk_size=chunk_size, input_shape=shape, device=cpu)[0][:hi - lo]
        logits = scores[lo:hi].float() if scores is not None else F.one_hot(r[lo:hi], k).float()
        acc.update(x, logits, {}, None)
        stats.end_chunk(Chunk(index=c, seed=seed, x=x, logits=logits, labels=None))
    opts = RunOptions(seed=seed, chunk_size=chunk_size, progress=False)
    return ci_result(acc, stats, shape, n, stimulus, opts, 1)
