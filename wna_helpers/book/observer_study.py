"""The simulated observer of chapter 10: a template matcher with internal noise in the two-alternative task, run
as a person would be (the noise level set for about 75 % correct), cached."""
from __future__ import annotations

import torch

from ..applications.observer import TemplateObserver
from ..config import Profile
from ..methods.sta import pearson
from ..methods.two_class import two_class_ci
from .criteria import FWER
from .overview import train_class_means
from .results_cache import cached

__all__ = ["TARGET_ACCURACY", "OBSERVER_CLASSES", "INTERNAL_NOISE", "observer", "choose_weight", "study_observer"]

#: The accuracy the noise level is set for: midway between chance and perfect, where a two-alternative task is
#: most informative.
TARGET_ACCURACY = 0.75
#: The task per dataset: "5 or 6?" and "T-shirt or shirt?".
OBSERVER_CLASSES: dict[str, tuple[int, int]] = {"mnist": (5, 6), "fashion_mnist": (0, 6)}
#: The observer's internal noise, relative to its template response to the noise (as much internal as external).
INTERNAL_NOISE = 1.0


def observer(dataset: str) -> tuple[TemplateObserver, torch.Tensor]:
    """The simulated observer of ``dataset``'s task and its internal template: the difference of the two classes'
    mean training images."""
    a, b = OBSERVER_CLASSES[dataset]
    means = train_class_means(dataset)
    template = (means[a] - means[b]).float()
    return TemplateObserver(template, classes=(a, b), internal_noise=INTERNAL_NOISE), template


def choose_weight(weights: list[float], accuracy: list[float], target: float = TARGET_ACCURACY) -> float:
    """The weight whose accuracy lies nearest ``target`` (the smaller weight on a tie)."""
    return min(zip(weights, accuracy), key=lambda wa: (abs(wa[1] - target), wa[0]))[0]


def study_observer(dataset: str, prof: Profile, *, refresh: bool = False) -> dict[str, object]:
    """The observer's psychometric sweep over ``prof.observer_weights`` (``prof.observer_sweep_trials`` each), the
    weight nearest :data:`TARGET_ACCURACY`, and the main run there (``prof.observer_trials``).

    Returns:
        dict: ``classes``, ``weights``, ``accuracy`` (per weight), ``weight`` (chosen), ``run`` (the
        :class:`~wna_helpers.methods.two_class.TwoClassCI` of the main run), ``template`` ``(C, H, W)``,
        ``ci`` (the combined noise-field CI), ``r`` (its Pearson r with the template), ``r_rows`` (of each true
        class's CI), ``significant`` (bool ``(2, C, H, W)``: Holm at :data:`~wna_helpers.book.criteria.FWER` per
        true class, noise fields).
    """
    a, b = OBSERVER_CLASSES[dataset]
    params = {"dataset": dataset, "classes": [a, b], "internal_noise": INTERNAL_NOISE, "target": TARGET_ACCURACY,
              "weights": list(prof.observer_weights), "sweep": prof.observer_sweep_trials,
              "trials": prof.observer_trials, "seed": prof.seed, "template": "class-mean difference"}

    def compute() -> dict[str, object]:
        obs, template = observer(dataset)
        means = train_class_means(dataset)
        base_a, base_b = means[a:a + 1].float(), means[b:b + 1].float()
        weights = [float(w) for w in prof.observer_weights]
        acc = [two_class_ci(obs, base_a, base_b, classes=(a, b), weight=w, n_samples=prof.observer_sweep_trials,
                            seed=prof.seed).accuracy for w in weights]
        w = choose_weight(weights, acc)
        run = two_class_ci(obs, base_a, base_b, classes=(a, b), weight=w, n_samples=prof.observer_trials,
                           seed=prof.seed + 1)
        ci = run.combined("noise")
        rows = run.ci("noise")
        return {"classes": (a, b), "weights": weights, "accuracy": acc, "weight": w, "run": run,
                "template": template.double(), "ci": ci, "r": float(pearson(ci, template)),
                "r_rows": [float(pearson(rows[i], template)) for i in range(2)],
                "significant": run.significant(FWER, "noise")}
    return cached("observer", params, compute, refresh=refresh)
