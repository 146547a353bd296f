"""The paper side by side (chapter 8): its gamma curves, CI templates through training, and its numbers
next to this book's measurements under the same protocol, cached like the other studies.

The paper's own numbers come from :func:`~wna_helpers.paper.paper_numbers` (one data file with their
sources); the measurements from the trained models of the profile.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..methods.ci import ClassificationImages, classification_images
from ..config import Profile
from ..zoo.data import class_names, load_dataset
from .noise_study import noise_kind, template_accuracy
from .overview import train_class_means
from ..paper import (PAPER_WEIGHTS, cite, colormap_roundtrip, compare, feed_back, gamma_curves, minmax_scale,
                     paper_numbers, weighted_classification_images)
from .report import dataset_label
from .results_cache import cached
from ..zoo.snapshots import model_at, training_snapshots
from ..engine.stimuli import Uniform
from .studies import Subject, side_samples, study_ci, subject

__all__ = ["GAMMA_CURVES", "colormap_roundtrip", "study_weighted_ci", "gamma_patterns", "gamma_base", "study_gamma_curve", "ci_templates_accuracy",
           "study_snapshots", "side_by_side"]

#: The paper's four gamma curves: name -> (base, pattern), as in the paper's data file.
GAMMA_CURVES: dict[str, tuple[str, str]] = {"noise_ci": ("noise", "ci"), "images_ci": ("images", "ci"),
                                            "noise_mean": ("noise", "mean"), "images_mean": ("images", "mean")}


def _kind_n(arch: str, kind: str, prof: Profile) -> int:
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
        pats = study_ci(s, noise=noise_kind(ci_kind, s.dataset), n_samples=_kind_n(s.arch, ci_kind, s.profile)).images
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
    params = s.params(curve=curve, ci_kind=kind, weights=w, inputs=prof.gamma_inputs, pattern=pattern,
                      ci_n=_kind_n(s.arch, kind, prof) if kind else None, colormap=colormap)

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


def _verdict(ok: bool, partly: bool = False) -> str:
    return "reproduced" if ok else ("partly" if partly else "not reproduced")


def _top(counts: torch.Tensor, names: Sequence[str], k: int = 1) -> str:
    p = counts.double() / counts.sum()
    order = torch.argsort(p, descending=True)[:k]
    return ", ".join(f"{names[int(c)]}: {float(p[c]):.1%}" for c in order)


def side_by_side(prof: Profile, *, arch: str = "paper_cnn", tolerance: float = 0.05,
                 curve_tolerance: float = 0.1) -> list[dict[str, str]]:
    """Every number of the paper's sections on white noise, Gabor noise, templates, feed-back and the
    gamma curves next to this book's measurement of ``arch`` under the same protocol.

    Verdicts: the same top class (histograms); within ``tolerance`` (shares, accuracies: 5 points);
    within one class (feed-back); every point of a gamma curve within ``curve_tolerance`` (0.1;
    ``"partly"`` within 0.25). Template accuracies more than ``tolerance`` off but above twice chance,
    as the paper claims, and a Gabor histogram with the paper's top class but another share count as
    ``"partly"``.

    Returns:
        One dict per comparison: ``section``, ``quantity``, ``paper``, ``ours`` (text), ``verdict``
        (``"reproduced"``, ``"partly"``, ``"not reproduced"``), ``why`` (for the rows not reproduced: what
        differs, computed from the measurements; empty otherwise) and ``source`` (the paper's notebook).
    """
    sides = {d: _Side(subject(arch, d, prof)) for d in ("mnist", "fashion_mnist")}
    P = paper_numbers()
    return (_white_noise_rows(sides, P) + _gabor_rows(sides, P, tolerance) + _template_rows(sides, P, tolerance)
            + _feedback_rows(sides, P) + _gamma_rows(sides, P, curve_tolerance))


class _Side:
    """One trained model's measurements for the side-by-side table."""

    def __init__(self, s: Subject) -> None:
        self.s = s

    def ci(self, kind: str) -> ClassificationImages:
        return study_ci(self.s, noise=noise_kind(kind, self.s.dataset), n_samples=_kind_n(self.s.arch, kind,
                                                                                        self.s.profile))


def _row(section: str, quantity: str, paper: str, ours: str, verdict: str, entry: dict,
         why: str = "") -> dict[str, str]:
    return {"section": section, "quantity": quantity, "paper": paper, "ours": ours, "verdict": verdict,
            "why": why if verdict != "reproduced" else "", "source": cite(entry)}


def _white_noise_rows(sides: dict[str, _Side], P: dict) -> list[dict[str, str]]:
    """Where uniform noise goes."""
    rows = []
    for d, side in sides.items():
        names, ci = class_names(d), side.ci("uniform")
        hists = [h for h in P["white_noise"]["histograms"] if h["dataset"] == d]
        others = "; ".join(f"{h['top']['name']} {h['top']['share']:.1%}" for h in hists)
        for h in hists:
            n = f"n = {h['n']:,}" if h.get("n") else "n not given"
            rows.append(_row(
                "white noise", f"{dataset_label(d)}: top class of U[0, 1] noise ({n})",
                f"{h['top']['name']}: {h['top']['share']:.1%}", f"{_top(ci.counts, names, 1)} (n = {ci.n_samples:,})",
                _verdict(int(ci.counts.argmax()) == h["top"]["class"]), h,
                f"the paper's own {dataset_label(d)} runs disagree ({others}; the second from a wider network); "
                f"which class collects the noise depends on the network and its training"))
    return rows


def _gabor_rows(sides: dict[str, _Side], P: dict, tolerance: float) -> list[dict[str, str]]:
    """Where Gabor noise goes, and the variance its PCA keeps."""
    rows = []
    for d, side in sides.items():
        names, ci = class_names(d), side.ci("gabor")
        for e in [e for e in P["gabor_noise"]["prediction_shares"] if e["dataset"] == d]:
            top = e["classes"][0]
            share = float(ci.proportions[top["class"]])
            ok = int(ci.counts.argmax()) == top["class"]
            rows.append(_row(
                "Gabor noise", f"{dataset_label(d)}: predicted class of Gabor noise",
                ", ".join(f"{c['name']}: {c['share']:.0%}" for c in e["classes"]),
                f"{_top(ci.counts, names, len(e['classes']))} (n = {ci.n_samples:,})",
                _verdict(ok and compare(share, top["share"], tolerance=tolerance)["reproduced"], ok), e,
                (f"the same top class, {100 * (share - top['share']):+.0f} points in its share: our network is "
                 f"{'more' if share > top['share'] else 'less'} biased; under "
                 f"uniform noise it sends {float(side.ci('uniform').proportions.max()):.0%} to one class")
                if ok else "another top class: the paper's network and training differ from ours"))
    pv = P["gabor_noise"]["pca_variance_explained"]
    ev = float(getattr(noise_kind("gabor", pv["dataset"]), "explained_variance", float("nan")))
    rows.append(_row("Gabor noise", f"{dataset_label(pv['dataset'])}: variance of the Gabor weights kept by "
                     f"{pv['components']} components", f"{pv['share']:.0%}", f"{ev:.1%}",
                     _verdict(compare(ev, pv["share"], tolerance=0.02)["reproduced"]), pv,
                     "our PCA is exact, scikit-learn's randomized"))
    return rows


def _template_rows(sides: dict[str, _Side], P: dict, tolerance: float) -> list[dict[str, str]]:
    """Gabor-noise CIs as templates, with the paper's recipe for each dataset (RMS images on MNIST, plain means on
    Fashion-MNIST)."""
    rows = []
    for e in [e for e in P["templates"]["accuracy"] if e["dataset"] in sides]:
        d = e["dataset"]
        split, ci = load_dataset(d, e["split"]), sides[d].ci("gabor")
        acc = template_accuracy(ci, split.images, split.labels, recipe=e["recipe"])  # the paper's own per dataset
        image = "RMS" if e["recipe"] == "rms" else "mean"
        rows.append(_row(
            "templates", f"{dataset_label(d)}: Gabor-CI templates ({image}, min-max, L2, dot product) on the "
            f"{e['split']} set", f"{e['accuracy']:.1%}", f"{acc:.1%}",
            _verdict(compare(acc, e["accuracy"], tolerance=tolerance)["reproduced"], acc >= 2 * e["chance"]), e,
            f"above twice chance, as the paper claims, {100 * (acc - e['accuracy']):+.1f} points from its number; our "
            f"CIs come from {ci.n_samples:,} samples, {int((ci.counts > 0).sum())} classes have one"))
    return rows


def _feedback_rows(sides: dict[str, _Side], P: dict) -> list[dict[str, str]]:
    """Min-max-scaled uniform-noise CIs fed back to their model."""
    rows = []
    for e in P["feed_back"]["results"]:
        d = e["dataset"]
        ci = sides[d].ci("uniform")
        fb = feed_back(sides[d].s.model, minmax_scale(ci.images))
        diag, have = int((fb == torch.arange(ci.num_classes)).sum()), int((ci.counts > 0).sum())
        rows.append(_row(
            "fed back", f"{dataset_label(d)}: min-max-scaled uniform-noise CIs called their own class",
            f"{e['correct']} of {e['of']}", f"{diag} of {ci.num_classes}",
            _verdict(compare(diag, e["correct"], tolerance=1)["reproduced"]), e,
            f"only {have} classes receive any of the {ci.n_samples:,} noise images, so at most {have} CIs can come "
            f"back; {diag} of those {have} do"))
    return rows


def _gamma_rows(sides: dict[str, _Side], P: dict, curve_tolerance: float) -> list[dict[str, str]]:
    """The paper's four gamma curves (MNIST), and the colour-map round trip of its CI files."""
    rows = []
    g = P["gamma_curves"]
    s = sides[g["dataset"]].s
    for name, c in g["curves"].items():
        ours = study_gamma_curve(s, curve=name)["mean"]
        paper = torch.tensor(c["values"], dtype=torch.float64)
        diff = compare(ours, paper, tolerance=curve_tolerance)["max_abs_diff"]
        why = "the base inputs and patterns are the paper's; the network is not"
        if GAMMA_CURVES[name][1] == "ci":
            rt = study_gamma_curve(s, curve=name, colormap="viridis")["mean"]
            rt_diff = compare(rt, paper, tolerance=curve_tolerance)["max_abs_diff"]
            lo, hi = colormap_roundtrip(torch.tensor([[0.0, 1.0]])).flatten().tolist()
            exact = study_gamma_curve(s, curve=name, colormap="viridis", weighted=True)["mean"]
            exact_diff = compare(exact, paper, tolerance=curve_tolerance)["max_abs_diff"]
            why = (f"the paper added its CIs after a colour-map round trip (viridis RGBA PNG, mean over its four "
                   f"channels), which maps [0, 1] onto [{lo:.2f}, {hi:.2f}]; with that round trip ours give "
                   f"{float(rt[5]):.3f} / {float(rt[8]):.3f} (largest difference {rt_diff:.3f}); with CIs weighted by "
                   f"the top output as well, as its folders held them, {float(exact[5]):.3f} / {float(exact[8]):.3f} "
                   f"(largest difference {exact_diff:.3f})")
        rows.append(_row(
            "gamma curves", f"{dataset_label(g['dataset'])}: {c['what'].split(':')[0]}, share called c at w = 0.5 / 0.8",
            f"{float(paper[5]):.3f} / {float(paper[8]):.3f}",
            f"{float(ours[5]):.3f} / {float(ours[8]):.3f} (largest difference {diff:.3f})",
            _verdict(diff <= curve_tolerance, diff <= 2.5 * curve_tolerance), c, why))
    return rows
