"""The noise study (chapter 3): what each kind of noise does to a model, and what its CIs are worth.

For every model, dataset and noise kind (:data:`NOISE_KINDS`): the class that gets most noise and
its share, the entropy of the answers, how many classes get a CI, the CIs' accuracy as templates
on real images (the paper's recipe and a centred variant) and how many min-max-scaled CIs the model
gives back their own class. The kinds are compared at one ``n`` per model
(:func:`~wna_helpers.book.studies.side_samples`); the main noise's CIs at that ``n`` are snapshots of the
main run.

Example:
    >>> import wna_helpers as wna
    >>> row = wna.noise_study.noise_study_row("logreg", "mnist", "uniform", "quick")  # doctest: +SKIP
    >>> sorted(row)[:3]  # doctest: +SKIP
    ['centred_accuracy', 'cis', 'dataset']
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

from ..methods.ci import ClassificationImages
from ..config import Profile
from ..paper.recipes import feed_back, minmax_scale, paper_templates, template_classify
from ..zoo.data import load_dataset
from ..engine.stimuli import Gaussian, Stimulus, Uniform
from ..engine.structured_noise import GaborNoise, Sinusoid
from .studies import Subject, side_samples, study_ci, subject

__all__ = ["NOISE_KINDS", "KIND_LABELS", "noise_kind", "template_accuracy",
           "noise_study_row", "noise_study", "noise_samples_of", "pixel_histograms"]

#: The noise kinds of the study, in the book's order.
NOISE_KINDS: tuple[str, ...] = ("gaussian", "uniform", "matched", "gabor", "sinusoid")
#: Short names for tables.
KIND_LABELS: dict[str, str] = {"gaussian": "N(0, 1)", "uniform": "U[0, 1]", "matched": "matched Gaussian",
                               "gabor": "Gabor", "sinusoid": "sinusoid"}


@lru_cache(maxsize=8)
def _train_images(dataset: str) -> torch.Tensor:
    return load_dataset(dataset, "train").images


@lru_cache(maxsize=2)
def _test_set(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images as float64 (what :func:`template_classify` multiplies; converted once per dataset, not
    three times per row: 6 of chapter 3's 33 s with the results cached) and their labels."""
    test = load_dataset(dataset, "test")
    return test.images.double(), test.labels


@lru_cache(maxsize=16)
def noise_kind(kind: str, dataset: str) -> Stimulus:
    """The stimulus of noise kind ``kind`` for models trained on ``dataset``.

    ``"gaussian"``: N(0, 1); ``"uniform"``: U[0, 1] (the paper's); ``"matched"``: Gaussian with the mean
    and standard deviation of the training images, clipped to their range; ``"gabor"``: the paper's Gabor
    noise fitted to the training images (:meth:`~wna_helpers.engine.structured_noise.GaborNoise.fit`, cached on
    disk); ``"sinusoid"``: :class:`~wna_helpers.engine.structured_noise.Sinusoid` noise on [0, 1].

    Raises:
        ValueError: an unknown kind (the message lists them).
    """
    if kind == "gaussian":
        return Gaussian()
    if kind == "uniform":
        return Uniform()
    if kind == "matched":
        return Gaussian.matched(_train_images(dataset), clip=True)
    if kind == "gabor":
        return GaborNoise.fit(_train_images(dataset))
    if kind == "sinusoid":
        return Sinusoid(image_shape=tuple(_train_images(dataset).shape[1:]))
    raise ValueError(f"unknown noise kind {kind!r}; the kinds are {list(NOISE_KINDS)}")


def template_accuracy(ci: ClassificationImages, images: torch.Tensor, labels: torch.Tensor, *,
                      recipe: str = "paper") -> float:
    """Accuracy on ``images`` of the nearest-template classifier whose templates are ``ci``'s classes.

    Args:
        ci: classification images; classes without samples get no template (never predicted).
        images: ``(N, *input_shape)`` real images; labels: int64 ``(N,)``.
        recipe: ``"paper"``: min-max scaled CIs, L2-normalised, dot product with the L2-normalised images
            (no mean subtraction; :func:`~wna_helpers.paper.paper_templates`); ``"rms"``: the same from
            the per-class RMS images ``sqrt(sumsq / N_c)``, as the paper's Gabor notebook did;
            ``"centred"``: the raw CIs and the images each mean-centred first (a correlation).
            Default ``"paper"``.

    Returns:
        The share of ``images`` classified as their label (0 when no class has samples).
    """
    if recipe not in ("paper", "rms", "centred"):
        raise ValueError(f"recipe must be 'paper', 'rms' or 'centred', got {recipe!r}")
    valid = ci.counts > 0
    if not valid.any():
        return 0.0
    if recipe == "centred":
        templates = ci.images
    else:
        n = ci.counts.double().view(-1, *([1] * (ci.sums.dim() - 1)))
        templates = paper_templates(ci.images, rms_images=(ci.sumsq / n).sqrt() if recipe == "rms" else None)
    pick = torch.nonzero(valid).flatten()
    pred = pick[template_classify(images, templates[valid], center=recipe == "centred")]
    return float((pred == labels).double().mean())


def noise_study_row(s: Subject, kind: str, *, n_samples: int | None = None,
                    progress: bool = False) -> dict[str, object]:
    """One row of the noise study: the trained model ``s`` probed with noise ``kind``.

    Args:
        s: the trained model (:func:`~wna_helpers.book.studies.subject`).
        kind: one of :data:`NOISE_KINDS`.
        n_samples: default :func:`~wna_helpers.book.studies.side_samples` of ``arch``.
        progress: show a progress bar; default False.

    Returns:
        dict with ``model``, ``dataset``, ``kind``, ``n``, ``top_class`` (index), ``top_share``,
        ``entropy_bits``, ``cis`` (classes with at least one sample), ``paper_accuracy``,
        ``rms_accuracy`` and ``centred_accuracy`` (:func:`template_accuracy` on the test set),
        ``feedback_diagonal`` (min-max scaled CIs the model gives their own class), ``ci`` (the
        :class:`~wna_helpers.methods.ci.ClassificationImages`).
    """
    stim = noise_kind(kind, s.dataset)
    n = int(n_samples or side_samples(s.arch, s.profile))
    ci = study_ci(s, noise=stim, n_samples=n, progress=progress)
    images, labels = _test_set(s.dataset)
    fb = feed_back(s.model, minmax_scale(ci.images))
    return {"model": s.arch, "dataset": s.dataset, "kind": kind, "n": n, "top_class": int(ci.counts.argmax()),
            "top_share": float(ci.proportions.max()), "entropy_bits": ci.entropy, "cis": int((ci.counts > 0).sum()),
            **{f"{r}_accuracy": template_accuracy(ci, images, labels, recipe=r)
               for r in ("paper", "rms", "centred")},
            "feedback_diagonal": int((fb == torch.arange(ci.num_classes)).sum()), "ci": ci}


def noise_study(prof: Profile, *, models: Sequence[str], datasets: Sequence[str],
                kinds: Sequence[str] = NOISE_KINDS, progress: bool = False) -> list[dict[str, object]]:
    """:func:`noise_study_row` for every dataset, model and kind (in that nesting order)."""
    bad = [k for k in kinds if k not in NOISE_KINDS]
    if bad:
        raise ValueError(f"unknown noise kind(s) {bad}; the kinds are {list(NOISE_KINDS)}")
    return [noise_study_row(subject(a, d, prof), k, progress=progress) for d in datasets for a in models
            for k in kinds]


def noise_samples_of(kind: str, dataset: str, n: int = 10, *, seed: int = 0) -> torch.Tensor:
    """``n`` samples of noise ``kind`` (seeded; the engine's chunk 0 of a run with ``seed``), float32
    ``(n, *input_shape)`` on the CPU: what the models are shown."""
    stim = noise_kind(kind, dataset)
    x, _ = stim.chunk(0, seed=seed, chunk_size=n, input_shape=tuple(_train_images(dataset).shape[1:]),
                      device=torch.device("cpu"))
    return x


def pixel_histograms(dataset: str, kinds: Sequence[str] = NOISE_KINDS, *, n: int = 2000,
                     edges: torch.Tensor | None = None, seed: int = 0) -> dict[str, object]:
    """How the pixel values of each noise kind sit against those of the training images.

    Args:
        kinds: noise kinds; default :data:`NOISE_KINDS`.
        n: images per kind (and training images); default 2,000.
        edges: histogram bin edges; default 80 bins from -3 to 4.
        seed: default 0.

    Returns:
        dict with ``centers`` (float64 ``(B,)``), ``density`` (name -> float64 ``(B,)``, a density over
        pixel values, names being ``"training images"`` and the kinds), ``below``/``above`` (name -> share
        of pixels below 0 / above 1) and ``mean``/``std`` (name -> pixel mean and std).
    """
    edges = edges if edges is not None else torch.linspace(-3, 4, 81, dtype=torch.float64)
    sets = {"training images": _train_images(dataset)[:n]}
    sets.update({k: noise_samples_of(k, dataset, n, seed=seed) for k in kinds})
    out: dict[str, dict[str, object]] = {"density": {}, "below": {}, "above": {}, "mean": {}, "std": {}}
    width = edges[1:] - edges[:-1]
    for name, x in sets.items():
        v = x.double().flatten()
        hist = torch.histogram(v.clamp(float(edges[0]), float(edges[-1])), bins=edges).hist
        out["density"][name] = hist / (hist.sum() * width)
        out["below"][name] = float((v < 0).double().mean())
        out["above"][name] = float((v > 1).double().mean())
        out["mean"][name], out["std"][name] = float(v.mean()), float(v.std())
    return {"centers": (edges[1:] + edges[:-1]) / 2, **out}
