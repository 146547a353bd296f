"""Classification images as templates and fed back, and one overview row per model and dataset."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

from ..methods.ci import ClassificationImages
from ..methods.summaries import class_means, confusion_matrix
from ..config import Profile
from ..zoo.data import dataset_names, load_dataset
from ..zoo.models import CNN_NAMES, model_names
from ..paper.recipes import feed_back, minmax_scale, paper_templates, template_classify
from ..methods.sta import filter_correlation
from ..engine.stimuli import Stimulus
from .measures import poisson_binomial_tail
from .studies import Subject, study_ci, study_sta, subject

__all__ = ["train_class_means", "feedback_null", "template_report", "overview_row", "overview_rows"]


@lru_cache(maxsize=4)
def train_class_means(dataset: str, k: int = 10) -> torch.Tensor:
    """The mean training image of each of the ``k`` classes of ``dataset``, float64 ``(k, 1, 28, 28)``,
    computed once per process (templates, gamma-curve patterns)."""
    train = load_dataset(dataset, "train")
    return class_means(train.images, train.labels, k)


def feedback_null(model: torch.nn.Module, ci: ClassificationImages, diagonal: int) -> dict[str, object]:
    """The feed-back's control: the label-permuted null CIs of ``ci`` (same class counts, no relation between the
    noise and the answers), min-max scaled and fed back like the CIs.

    Returns:
        ``rate``: float64 ``(K,)``, per class with samples the share of its null CIs the model calls that class
        (add-one smoothed, ``(hits + 1) / (P + 2)``; NaN for classes without samples); ``expected``: their sum, the
        diagonal a model without any CI structure gives on average; ``p``: the chance that such a model gives back
        ``diagonal`` or more (the classes taken as independent trials: a Poisson-binomial tail); NaN without nulls.
    """
    k = ci.num_classes
    nulls = ci.null_images
    has = ci.counts > 0
    if nulls is None or not len(nulls):
        nan = torch.full((k,), float("nan"), dtype=torch.float64)
        return {"rate": nan, "expected": float("nan"), "p": float("nan")}
    p_ = len(nulls)
    flat = minmax_scale(nulls.reshape(p_ * k, *nulls.shape[2:]).nan_to_num()).float()
    pred = feed_back(model, flat).view(p_, k)
    hits = (pred == torch.arange(k)).sum(0).double()
    rate = torch.where(has, (hits + 1) / (p_ + 2), torch.full_like(hits, float("nan")))
    q = rate[has]
    return {"rate": rate, "expected": float(q.sum()), "p": poisson_binomial_tail(q, diagonal)}


def template_report(s: Subject, *, noise: Stimulus | str | None = None, center: bool = False) -> dict[str, object]:
    """The CIs of the trained model ``s`` used as templates on the real test set, against class-mean
    templates and chance.

    Args:
        s: the trained model (:func:`~wna_helpers.book.studies.subject`).
        noise: the stimulus of the CIs (:func:`~wna_helpers.book.studies.study_ci`); default the profile's.
        center: False (default): the paper's recipe, each template min-max scaled to [0, 1] and
            L2-normalised, the images L2-normalised, the largest dot product
            (:func:`~wna_helpers.paper.paper_templates`); True: templates and images each
            mean-centred first (a correlation).

    Returns:
        dict with ``ci_accuracy``, ``mean_accuracy`` (class-mean templates from the training
        set), ``chance``, ``ci_confusion`` and ``mean_confusion`` (int64 ``(K, K)``, row = true),
        ``feedback`` (int64 ``(K,)``: the model's answer on each CI, min-max scaled to [0, 1] as the
        paper fed them back; -1 for an empty class),
        ``feedback_diagonal`` (how many CIs the model gives their own class), ``feedback_null``
        (:func:`feedback_null`: what the label-permuted null CIs give back), ``templates_used``
        ``n_test`` (test images classified) and ``n_samples`` (noise samples behind the CIs).
    """
    ci = study_ci(s, noise=noise)
    test = load_dataset(s.dataset, "test")
    k = ci.num_classes
    means = train_class_means(s.dataset, k)
    valid = ci.counts > 0
    templates = ci.images if center else paper_templates(ci.images)
    ci_pred = torch.full((len(test),), -1, dtype=torch.int64)
    if valid.any():  # classes without samples have no template
        ci_pred = torch.nonzero(valid).flatten()[template_classify(test.images, templates[valid], center=center)]
    mean_pred = template_classify(test.images, means if center else paper_templates(means), center=center)
    fb = feed_back(s.model, minmax_scale(ci.images))
    return {"ci_accuracy": float((ci_pred == test.labels).double().mean()),
            "mean_accuracy": float((mean_pred == test.labels).double().mean()),
            "chance": 1.0 / k,
            "ci_confusion": confusion_matrix(test.labels, ci_pred.clamp_min(0), k),
            "mean_confusion": confusion_matrix(test.labels, mean_pred, k),
            "feedback": fb, "feedback_diagonal": int((fb == torch.arange(k)).sum()),
            "feedback_null": feedback_null(s.model, ci, int((fb == torch.arange(k)).sum())),
            "templates_used": int(valid.sum()), "n_test": len(test), "n_samples": ci.n_samples}


def overview_row(s: Subject) -> dict[str, object]:
    """One row of the results overview for the trained model ``s``: accuracy, noise-bias entropy,
    CI-template accuracy, CI fed-back diagonal, first-layer STA-filter correlation (CNNs only)."""
    ci = study_ci(s)
    rep = template_report(s)
    row: dict[str, object] = {
        "model": s.arch, "dataset": s.dataset, "test_accuracy": s.meta["test_accuracy"],
        "noise_entropy_bits": ci.entropy, "top_noise_class": int(ci.counts.argmax()),
        "top_noise_share": float(ci.proportions.max()), "ci_template_accuracy": rep["ci_accuracy"],
        "mean_template_accuracy": rep["mean_accuracy"], "feedback_diagonal": rep["feedback_diagonal"],
        "sta_filter_r": float("nan"), "n_noise": ci.n_samples}
    if s.arch in CNN_NAMES:
        sta = study_sta(s, "conv1")
        row["sta_filter_r"] = float(filter_correlation(sta.pooled, s.model.conv1.weight).nanmean())
    return row


def overview_rows(prof: Profile, models: Sequence[str] | None = None,
                  datasets: Sequence[str] | None = None) -> list[dict[str, object]]:
    """:func:`overview_row` for every model and dataset (datasets outer), each with ``cis`` added:
    the number of classes that have a classification image (received at least one noise sample)."""
    rows = []
    for d in datasets or dataset_names():
        for a in models or model_names():
            s = subject(a, d, prof)
            row = overview_row(s)
            row["cis"] = int((study_ci(s, progress=False).counts > 0).sum())
            rows.append(row)
    return rows
