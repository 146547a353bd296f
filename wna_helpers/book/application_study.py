"""The cached studies of chapter 9 (applications): black-box attacks with CIs, microstimulation as
psychometric curves, and the two-class design. The trojan study is :mod:`~wna_helpers.book.trojan_study`.

Each study takes (architecture or dataset, profile), computes from the book's trained models and the
CIs of :func:`~wna_helpers.book.studies.study_ci_convergence` (uniform noise, the paper's), and is cached
with every setting, the weights' digest and the code (:mod:`~wna_helpers.book.results_cache`).

Example:
    >>> import wna_helpers as wna
    >>> out = wna.applications.study_attacks("paper_cnn", "mnist", "quick")  # doctest: +SKIP
    >>> out["l2"]["ci"].mean  # doctest: +SKIP
"""
from __future__ import annotations

import math

import torch

from ..applications.attacks import (blend_attack, ci_directions, mean_image_directions, other_class_directions,
                                   perturbation_attack, random_directions, shuffled_directions)
from ..config import Profile
from ..zoo.data import load_dataset
from ..paper.recipes import minmax_scale
from ..applications.microstimulation import (class_inhibition, microstimulate, paired_sign_test, random_inhibition,
                                             unit_activation)
from ..methods.psychometrics import fit_psychometric, psychometric_curve
from .results_cache import cached
from .studies import Subject, study_ci_convergence
from ..methods.two_class import two_class_ci

__all__ = ["ATTACK_CONTROLS", "ATTACK_KINDS", "MICRO_LAYERS", "MICRO_SCALES", "MICRO_NORMALISED", "TWO_CLASS_PAIRS",
           "TWO_CLASS_WEIGHTS", "study_attacks",
           "study_microstimulation", "study_two_class", "attack_images", "threshold_shifts", "class_shifts",
           "paired_shifts"]

#: The attack directions compared, in the book's order: the CI (minus the mean noise image), the logit CI,
#: the class's mean training image (minus the mean of all), and the CI's controls.
ATTACK_KINDS: tuple[str, ...] = ("ci", "logit", "mean", "random", "shuffled", "other")
#: The controls of the CI direction, each of the CI's norm: a random direction, the CI's pixels shuffled, and
#: another class's CI (absent when only one class has a CI).
ATTACK_CONTROLS: tuple[str, ...] = ("random", "shuffled", "other")
#: Layers of ``paper_cnn`` inhibited in the microstimulation study and the paper's scale of each.
MICRO_LAYERS: tuple[str, ...] = ("conv1", "conv2", "fc1")
MICRO_SCALES: dict[str, float] = {"conv1": 0.1, "conv2": 1.0, "fc1": 0.01}
#: Whether the paper divides a layer's class activations by their maximum before scaling (its conv layers do,
#: fc1 does not: ``bias -= 0.01 * k * a``).
MICRO_NORMALISED: dict[str, bool] = {"conv1": True, "conv2": True, "fc1": False}
#: The two classes of the two-class design: the paper's 5 vs 6 on MNIST; T-shirt/top vs shirt on Fashion-MNIST.
TWO_CLASS_PAIRS: dict[str, tuple[int, int]] = {"mnist": (5, 6), "fashion_mnist": (0, 6)}
#: The signal weights of the two-class design (the paper's).
TWO_CLASS_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
#: Alphas of the paper's blend attack (it used 0.3); 0 shows what the pattern alone does.
BLEND_ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)


def attack_images(dataset: str, prof: Profile) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked images: ``prof.attack_images`` test images from the *end* of the test set (the
    first ``n_real`` serve the real-image statistics), and their labels."""
    test = load_dataset(dataset, "test")
    return test.images[-prof.attack_images:], test.labels[-prof.attack_images:]


def study_attacks(s: Subject, *, refresh: bool = False, progress: bool = False) -> dict[str, object]:
    """Black-box targeted attacks on the trained model ``s`` from its uniform-noise CIs.

    Returns:
        dict: ``blend`` (the paper's ``alpha * x + minmax(CI_t)``, :class:`~wna_helpers.applications.attacks.BlendAttack`),
        ``blend_paper`` (the paper's exact case on MNIST: 100 test images of 9, alpha 0.3; None on
        Fashion-MNIST), ``l2`` and ``linf`` (kind -> :class:`~wna_helpers.applications.attacks.PerturbationAttack` for
        :data:`ATTACK_KINDS` over ``profile.attack_l2`` / ``attack_linf``, every kind over the same targets: the
        classes with a CI; ``"other"`` missing when only one class has a CI), ``queries`` (the noise samples
        of each CI of the convergence series, ``(S,)``), ``query_success`` (mean success of the CI attack at
        ``query_budget`` for the CIs of each size, ``(S,)``), ``query_budget`` (the L2 budget used).
    """
    prof, model, dataset = s.profile, s.model, s.dataset
    conv = study_ci_convergence(s, progress=progress)
    params = s.params(study="attacks", sizes=list(conv.sizes), alphas=BLEND_ALPHAS, kinds=list(ATTACK_KINDS),
                      targets="the classes with a CI, for every kind")

    def compute() -> dict[str, object]:
        x, y = attack_images(dataset, prof)
        final = conv.snapshot(conv.sizes[-1])
        train = load_dataset(dataset, "train", limit=prof.train_subset)
        dirs = {"ci": ci_directions(final), "logit": final.logit_images.float(),
                "mean": mean_image_directions(train.images, train.labels, final.num_classes)}
        dirs["random"] = random_directions(dirs["ci"], seed=prof.seed)
        dirs["shuffled"] = shuffled_directions(dirs["ci"], seed=prof.seed)
        dirs["other"] = other_class_directions(dirs["ci"])
        flat = dirs["ci"].flatten(1)
        targets = [c for c in range(final.num_classes) if not bool(flat[c].isnan().any()) and bool((flat[c] != 0).any())]
        if len(targets) < 2:
            del dirs["other"]
        out: dict[str, object] = {"blend": blend_attack(model, x, y, minmax_scale(final.images).float(),
                                                        alphas=BLEND_ALPHAS)}
        out["blend_paper"] = None
        if dataset == "mnist":
            test = load_dataset(dataset, "test")
            nines = test.images[test.labels == 9][-100:]
            out["blend_paper"] = blend_attack(model, nines, torch.full((len(nines),), 9),
                                              minmax_scale(final.images).float(), alphas=(0.3,))
        for norm, budgets in (("l2", prof.attack_l2), ("linf", prof.attack_linf)):
            out[norm] = {k: perturbation_attack(model, x, y, d, budgets, norm=norm, targets=targets)
                         for k, d in dirs.items()}
        # what the queries buy: the CI attack at one L2 budget with the CIs of each size of the series
        l2_ci = out["l2"]["ci"].mean  # type: ignore[index]
        budgets = torch.tensor(prof.attack_l2, dtype=torch.float64)
        reach = torch.nonzero(l2_ci >= 0.5).flatten()
        budget = float(budgets[reach[0]] if len(reach) else budgets[-1])
        out["query_budget"] = budget
        out["queries"] = torch.tensor(conv.sizes, dtype=torch.int64)
        out["query_success"] = torch.stack([
            perturbation_attack(model, x, y, ci_directions(conv.snapshot(n)), (budget,), norm="l2").mean[0]
            for n in conv.sizes])
        return out
    return cached("attacks", params, compute, refresh=refresh)


def study_microstimulation(s: Subject, *, refresh: bool = False, progress: bool = False) -> dict[str, object]:
    """Inhibit the units of ``conv1``, ``conv2`` and ``fc1`` most active for class c and measure the shift
    of c's psychometric threshold, against inhibiting randomly chosen units as much.

    For every class c: ``a`` = each unit's mean activation (after ReLU; conv: per channel) over 1,000
    training images of c; the inhibition is ``-scale * k * a / max(a)`` added to the layer's bias (``-scale * k * a``
    for fc1: the paper's recipe and scales, :data:`MICRO_SCALES`, :data:`MICRO_NORMALISED`), and the control
    assigns the same values to
    randomly permuted units. Curves: ``(1 - w) * U[0, 1] + w * (test image of c)``, share called c, at
    ``profile.micro_weights`` with ``profile.micro_trials`` stimuli per weight (the same stimuli in every
    condition); logistic fits with bootstrap intervals (:func:`~wna_helpers.methods.psychometrics.fit_psychometric`).

    Returns:
        dict: ``ks`` (the nonzero k), ``layers``, ``weights`` (W,), ``base_shares`` (K, W), ``base_threshold`` (K,),
        ``shares`` / ``thresholds`` / ``threshold_lo`` / ``threshold_hi``: dicts keyed by
        ``(layer, k, "class" | "random")`` of (K, W) and (K,) tensors.
    """
    prof, model, dataset = s.profile, s.model, s.dataset
    ks = [float(k) for k in prof.micro_ks if k > 0]
    params = s.params(study="microstimulation", layers=MICRO_LAYERS, scales=MICRO_SCALES, normalised=MICRO_NORMALISED)

    def compute() -> dict[str, object]:
        train = load_dataset(dataset, "train", limit=prof.train_subset)
        test = load_dataset(dataset, "test")
        weights = list(prof.micro_weights)
        num_classes = len(train.classes)

        def curve(c: int) -> torch.Tensor:
            return psychometric_curve(model, test.images[test.labels == c], c, weights, noise="uniform",
                                      n_per_weight=prof.micro_trials, seed=prof.seed + c).shares

        def fit(shares: torch.Tensor) -> tuple[float, float, float]:
            f = fit_psychometric(weights, shares, n_trials=prof.micro_trials, seed=prof.seed)
            return f.threshold, f.threshold_ci[0], f.threshold_ci[1]

        base = torch.stack([curve(c) for c in range(num_classes)])
        base_fit = torch.tensor([fit(s) for s in base], dtype=torch.float64)
        shares, th, lo, hi = {}, {}, {}, {}
        for layer in MICRO_LAYERS:
            for c in range(num_classes):
                act = unit_activation(model, layer, train.images[train.labels == c][:1000])
                for k in ks:
                    delta = class_inhibition(act, k, scale=MICRO_SCALES[layer], normalize=MICRO_NORMALISED[layer])
                    for kind, d in (("class", delta), ("random", random_inhibition(delta, seed=prof.seed + c))):
                        with microstimulate(model, {layer: d}):
                            s = curve(c)
                        key = (layer, k, kind)
                        shares.setdefault(key, []).append(s)
                        t, a, b = fit(s)
                        th.setdefault(key, []).append(t)
                        lo.setdefault(key, []).append(a)
                        hi.setdefault(key, []).append(b)
        def as_t(d: dict, stack: bool = False) -> dict:
            return {k: (torch.stack(v) if stack else torch.tensor(v, dtype=torch.float64)) for k, v in d.items()}
        return {"ks": ks, "layers": list(MICRO_LAYERS), "weights": torch.tensor(weights, dtype=torch.float64),
                "base_shares": base, "base_threshold": base_fit[:, 0], "base_lo": base_fit[:, 1],
                "base_hi": base_fit[:, 2], "shares": as_t(shares, True), "thresholds": as_t(th),
                "threshold_lo": as_t(lo), "threshold_hi": as_t(hi)}
    return cached("microstim", params, compute, refresh=refresh)


def class_shifts(micro: dict[str, object], layer: str, k: float, kind: str = "class") -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, the shift of the fitted threshold (inhibited minus uninhibited) of one condition, as
    :func:`threshold_shifts` counts it: ``+inf`` for an abolished response, ``-inf`` for a threshold more than one
    weight range below the weights, NaN for a class left out (its uninhibited threshold lies that far out).

    Returns:
        ``(shift, abolished)``: float64 ``(K,)`` and bool ``(K,)``.
    """
    shares = micro["shares"][layer, k, kind]  # type: ignore[index]
    w = micro["weights"]  # type: ignore[index]
    lo_w, hi_w = float(w.min()) - 1.0, float(w.max()) + 1.0  # a fit further out is an unsupported extrapolation
    base, th = micro["base_threshold"], micro["thresholds"][layer, k, kind]  # type: ignore[index]
    abolished = (shares.amax(1) < 0.5) | (th > hi_w)
    shift = torch.where(abolished, torch.full_like(th, math.inf), th - base)
    shift = torch.where(~abolished & (th < lo_w), torch.full_like(th, -math.inf), shift)
    left_out = (base < lo_w) | (base > hi_w) | torch.isnan(th)
    return torch.where(left_out, torch.full_like(th, math.nan), shift), abolished


def paired_shifts(micro: dict[str, object], layer: str, k: float) -> dict[str, float]:
    """The class units against the random units of the same class, paired: the exact sign test of the per-class
    threshold shifts (:func:`~wna_helpers.applications.microstimulation.paired_sign_test`; an abolished response
    is the largest shift, two abolished ones a tie)."""
    return paired_sign_test(class_shifts(micro, layer, k, "class")[0], class_shifts(micro, layer, k, "random")[0])


def threshold_shifts(micro: dict[str, object], layer: str, k: float, kind: str = "class", *, n_boot: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Summary over the classes of one condition of :func:`study_microstimulation`: the shift of the fitted
    threshold (inhibited minus uninhibited).

    A strong inhibition can abolish a class's response (its curve never reaches 0.5 and the fitted threshold
    runs off to a huge value), so the summary is the **median** shift with a bootstrap interval over the
    classes (percentile, 95 %; the lower median of each resample), and the count of *abolished* classes:
    the inhibited curve stays below 0.5 at every weight, or its fitted threshold lies more than one weight
    range beyond the largest weight. Such a class's shift counts as ``+inf`` (beyond any finite shift): its
    fitted threshold is an unsupported extrapolation (a flat or non-monotone curve puts it anywhere, even at
    a huge negative value). An inhibited threshold more than one range below the smallest weight counts as
    ``-inf``; a class whose *uninhibited* threshold is that far out (noise alone already calls it) has no
    shift to report and is left out.

    Returns:
        dict: ``median``, ``lo``, ``hi`` (``inf`` when half the classes or more, or of a resample, are
        abolished), ``abolished`` (classes among ``classes`` whose response was abolished), ``classes`` (with
        a defined shift).
    """
    shift, abolished = class_shifts(micro, layer, k, kind)
    n_abolished = int((abolished & ~torch.isnan(shift)).sum())  # among the classes reported, not the ones left out
    s = shift[~torch.isnan(shift)]
    if len(s) == 0:
        return {"median": math.nan, "lo": math.nan, "hi": math.nan, "abolished": n_abolished, "classes": 0}
    gen = torch.Generator().manual_seed(seed)
    boot = s[torch.randint(len(s), (n_boot, len(s)), generator=gen)].sort(1).values[:, (len(s) - 1) // 2].sort().values
    return {"median": float(s.sort().values[(len(s) - 1) // 2]), "lo": float(boot[int(0.025 * (n_boot - 1))]),
            "hi": float(boot[int(math.ceil(0.975 * (n_boot - 1)))]), "abolished": n_abolished,
            "classes": len(s)}


def study_two_class(s: Subject, *, refresh: bool = False, progress: bool = False) -> dict[float, object]:
    """The two-class design on the trained model ``s`` (the book's: ``paper_cnn``): the model restricted to the two logits of
    :data:`TWO_CLASS_PAIRS`, stimuli ``(1 - w) * U[0, 1] + w * image`` (test images of the two classes),
    ``profile.two_class_samples`` trials per weight of :data:`TWO_CLASS_WEIGHTS`.

    Returns:
        weight -> :class:`~wna_helpers.methods.two_class.TwoClassCI`.
    """
    prof, model, dataset = s.profile, s.model, s.dataset
    a, b = TWO_CLASS_PAIRS[dataset]
    params = s.params(study="two_class", pair=[a, b], signal_weights=TWO_CLASS_WEIGHTS)

    def compute() -> dict[float, object]:
        test = load_dataset(dataset, "test")
        return {w: two_class_ci(model, test.images[test.labels == a], test.images[test.labels == b], classes=(a, b),
                                weight=w, n_samples=prof.two_class_samples, noise="uniform", seed=prof.seed)
                for w in TWO_CLASS_WEIGHTS}
    return cached("twoclass", params, compute, refresh=refresh)
