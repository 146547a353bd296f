"""The paper's experiments on a trained model (chapter 8): its gamma curves, the top-output-weighted CIs and CI
templates through training, cached like the other studies.

The table of every paper number against networks trained the paper's way is :mod:`~wna_helpers.book.side_by_side`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..methods.ci import ClassificationImages, classification_images
from ..config import Profile
from ..zoo.data import load_dataset
from .noise_study import noise_kind, template_accuracy
from .overview import train_class_means
from ..paper import (PAPER_WEIGHTS, colormap_roundtrip, feed_back, gamma_curves, minmax_scale,
                     weighted_classification_images)
from .results_cache import cached
from ..zoo.snapshots import model_at, training_snapshots
from ..engine.stimuli import Uniform
from .studies import Subject, side_samples, study_ci

__all__ = ["GAMMA_CURVES", "colormap_roundtrip", "study_weighted_ci", "gamma_patterns", "gamma_base", "study_gamma_curve", "ci_templates_accuracy",
           "study_snapshots", "kind_samples"]

#: The paper's four gamma curves: name -> (base, pattern), as in the paper's data file.
GAMMA_CURVES: dict[str, tuple[str, str]] = {"noise_ci": ("noise", "ci"), "images_ci": ("images", "ci"),
                                            "noise_mean": ("noise", "mean"), "images_mean": ("images", "mean")}


def kind_samples(arch: str, kind: str, prof: Profile) -> int:
    """The book's n for CIs of ``kind``: the main count for the profile's main noise, the noise
    study's for the others."""
    return prof.noise_samples(arch) if kind == prof.noise else side_samples(arch, prof)


def study_weighted_ci(s: Subject, *, refresh: bool = False) -> ClassificationImages:
    """The CIs of the paper's later cells for the trained model ``s``: the profile's main number of uniform-noise
    samples, each weighted by the model's top softmax output (:func:`~wna_helpers.paper.weighted_classification_images`),
    cached."""
    n = s.profile.noise_samples(s.arch, s.device)
    return cached("wci", s.params(noise=Uniform().describe(), n=n, weighting="top softmax output"),
                  lambda: weighted_classification_images(s.model, n, noise=Uniform(), run=s.run(False)),
                  refresh=refresh)


def gamma_patterns(s: Subject, *, pattern: str = "ci", ci_kind: str = "uniform",
                   colormap: str | None = None) -> torch.Tensor:
    """The patterns P_c of the gamma curves of the trained model ``s``, min-max scaled to [0, 1] as the paper did.

    Args:
        s: the trained model (:func:`~wna_helpers.book.studies.subject`).
        pattern: ``"ci"`` (the CIs of ``ci_kind`` noise: the main run's for the main noise, the noise
            study's n otherwise), ``"weighted_ci"`` (uniform-noise CIs weighted by the top output, as the paper's
            folders held them: :func:`study_weighted_ci`) or ``"mean"`` (the class means of the training images).
        ci_kind: a :data:`~wna_helpers.book.noise_study.NOISE_KINDS` name; default ``"uniform"``.
        colormap: also pass the patterns through the paper's colour-map round trip
            (:func:`colormap_roundtrip`, e.g. ``"viridis"``); default None (min-max scaled only).

    Returns:
        float64 ``(K, 1, 28, 28)``; NaN rows for classes without a CI.
    """
    if pattern == "mean":
        pats = train_class_means(s.dataset)
    elif pattern == "ci":
        pats = study_ci(s, noise=noise_kind(ci_kind, s.dataset), n_samples=kind_samples(s.arch, ci_kind, s.profile)).images
    elif pattern == "weighted_ci":
        pats = study_weighted_ci(s).images
    else:
        raise ValueError(f"pattern must be 'ci', 'weighted_ci' or 'mean', got {pattern!r}")
    return colormap_roundtrip(pats, colormap) if colormap else minmax_scale(pats)


def gamma_base(dataset: str, prof: Profile, *, base: str = "noise") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The base inputs A of the gamma curves: ``prof.gamma_inputs`` U[0, 1] noise images (seeded with
    the profile's seed) or the first test images min-max scaled (as the paper did), with their labels."""
    n = int(prof.gamma_inputs)
    if base == "noise":
        x, _ = Uniform().chunk(0, seed=prof.seed, chunk_size=n, input_shape=(1, 28, 28), device=torch.device("cpu"))
        return x, None
    if base == "images":
        test = load_dataset(dataset, "test", limit=n)
        return minmax_scale(test.images).float(), test.labels
    raise ValueError(f"base must be 'noise' or 'images', got {base!r}")


def study_gamma_curve(s: Subject, *, curve: str = "noise_ci", ci_kind: str = "uniform", colormap: str | None = None,
                      weights: Sequence[float] = PAPER_WEIGHTS, weighted: bool = False,
                      refresh: bool = False) -> dict[str, torch.Tensor]:
    """One of the paper's gamma curves for the trained model ``s``, cached.

    Args:
        s: the trained model (:func:`~wna_helpers.book.studies.subject`).
        curve: a key of :data:`GAMMA_CURVES`: ``"noise_ci"``, ``"images_ci"``, ``"noise_mean"`` or
            ``"images_mean"``.
        ci_kind: the noise the CIs come from (``"ci"`` curves only); default ``"uniform"``.
        colormap: the paper's colour-map round trip of the patterns (:func:`colormap_roundtrip`, the mean over
            the four RGBA channels); default None.
        weights: default the paper's 0, 0.1, ..., 1.
        weighted: the CI curves with uniform-noise CIs weighted by the top output (:func:`study_weighted_ci`, as
            the paper's folders held them) instead of plain means; default False.

    Returns:
        :func:`~wna_helpers.paper.gamma_curves`' dict (``share``, ``mean``, and for image bases
        ``share_other``, ``mean_other``).
    """
    if curve not in GAMMA_CURVES:
        raise ValueError(f"unknown gamma curve {curve!r}; the curves are {list(GAMMA_CURVES)}")
    prof = s.profile
    base, pattern = GAMMA_CURVES[curve]
    if weighted and pattern == "ci":
        if ci_kind != "uniform":
            raise ValueError("weighted CIs come from uniform noise, as the paper's did; leave ci_kind='uniform'")
        pattern = "weighted_ci"
    kind = ci_kind if pattern in ("ci", "weighted_ci") else None
    w = [float(v) for v in weights]
    params = s.params(curve=curve, ci_kind=kind, signal_weights=w, inputs=prof.gamma_inputs, pattern=pattern,
                      ci_n=kind_samples(s.arch, kind, prof) if kind else None, colormap=colormap)

    def compute() -> dict[str, torch.Tensor]:
        x, labels = gamma_base(s.dataset, prof, base=base)
        pats = gamma_patterns(s, pattern=pattern, ci_kind=ci_kind, colormap=colormap).float()
        return gamma_curves(s.model, pats, x, w, base_labels=labels)
    return cached("gamma", params, compute, refresh=refresh)


def ci_templates_accuracy(model: torch.nn.Module, ci: ClassificationImages, images: torch.Tensor,
                          labels: torch.Tensor) -> dict[str, float]:
    """The CIs' worth as templates on ``images`` (the paper's recipe, its RMS variant and the centred
    one: :func:`~wna_helpers.book.noise_study.template_accuracy`) and ``feedback_diagonal``: how many
    min-max-scaled CIs the model gives back their own class."""
    out: dict[str, float] = {r: template_accuracy(ci, images, labels, recipe=r) for r in ("paper", "rms", "centred")}
    fb = feed_back(model, minmax_scale(ci.images))
    out["feedback_diagonal"] = int((fb == torch.arange(ci.num_classes)).sum())
    return out


def study_snapshots(s: Subject, *, kinds: Sequence[str] = ("uniform", "gabor"), steps: Sequence[int] | None = None,
                    refresh: bool = False, progress: bool = False) -> list[dict[str, object]]:
    """CI templates through training: for every snapshot of the training of ``s``
    (:func:`~wna_helpers.zoo.snapshots.training_snapshots`, the profile's recipe), the test accuracy and,
    per noise kind, the CIs of ``profile.snapshot_samples`` noise images and their worth as templates.

    Args:
        s: the trained model (:func:`~wna_helpers.book.studies.subject`): the snapshots' end point.
        kinds: :data:`~wna_helpers.book.noise_study.NOISE_KINDS` names; default uniform and Gabor.
        steps: default the snapshots' default steps.
        refresh: recompute even if cached.
        progress: show progress bars; default False.

    Returns:
        One dict per snapshot: ``step``, ``epoch``, ``test_accuracy`` and per kind ``k``:
        ``{k}_paper``, ``{k}_rms``, ``{k}_centred`` (template accuracies on the test set),
        ``{k}_feedback`` (fed-back diagonal), ``{k}_top`` (class with most noise), ``{k}_share``,
        ``{k}_entropy``.
    """
    prof = s.profile
    stims = {k: noise_kind(k, s.dataset) for k in kinds}
    params = s.params(kinds={k: st.describe() for k, st in stims.items()},
                      steps=list(steps) if steps is not None else None, n=prof.snapshot_samples)

    def compute() -> list[dict[str, object]]:
        snaps = training_snapshots(s.arch, s.dataset, prof, steps=steps, progress=progress)
        test = load_dataset(s.dataset, "test")
        run = s.run(progress)
        rows = []
        for snap in snaps:
            model = model_at(s.arch, snap, device=s.device)
            row: dict[str, object] = {"step": snap["step"], "epoch": snap["epoch"],
                                      "test_accuracy": snap["test_accuracy"]}
            for k, stim in stims.items():
                ci = classification_images(model, prof.snapshot_samples, noise=stim, run=run)
                acc = ci_templates_accuracy(model, ci, test.images, test.labels)
                row.update({f"{k}_paper": acc["paper"], f"{k}_rms": acc["rms"], f"{k}_centred": acc["centred"],
                            f"{k}_feedback": acc["feedback_diagonal"], f"{k}_top": int(ci.counts.argmax()),
                            f"{k}_share": float(ci.proportions.max()), f"{k}_entropy": ci.entropy})
            rows.append(row)
        return rows
    return cached("snapshots", params, compute, refresh=refresh)
