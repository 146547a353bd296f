"""Biasing a model toward a class by adding its classification image to the inputs (chapter 4)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..applications.attacks import other_class_directions, random_directions
from ..paper.recipes import bias_curve, feed_back
from ..config import Profile
from ..zoo.data import load_dataset
from .results_cache import cached
from ..engine.stimuli import Noise, Stimulus, as_stimulus
from .studies import Subject, study_ci

__all__ = ["bias_directions", "bias_inputs", "control_directions", "study_bias", "CLIP", "CONTROLS"]

#: The data's range: every biased input is clamped to it before the model sees it.
CLIP = (0.0, 1.0)
#: The directions of the biasing experiment: the class's CI and its two controls of the same size.
CONTROLS = ("random", "other")


def bias_directions(images: torch.Tensor, *, center: bool = True, rms: float = 1.0) -> torch.Tensor:
    """Classification images as perturbation directions of a fixed size.

    Each image (optionally minus the mean over classes, which removes what all CIs share;
    skipped when fewer than two classes have a CI, as it would leave nothing) is scaled to a root-mean-square
    pixel value of ``rms``, so ``gamma`` in ``x + gamma * direction`` is in pixel units (images lie in
    [0, 1]; N(0, 1) noise has std 1, U[0, 1] noise about 0.29).

    Args:
        images: ``(K, *shape)`` classification images (NaN rows: classes without samples).
        center: subtract the mean over the classes that have samples; default True.
        rms: target root-mean-square value; default 1.

    Returns:
        float64 ``(K, *shape)``; NaN rows stay NaN.
    """
    x = images.double().reshape(len(images), -1)
    ok = ~torch.isnan(x).any(1)
    if center and int(ok.sum()) >= 2:
        x = x - x[ok].mean(0, keepdim=True)
    norm = x.square().mean(1, keepdim=True).sqrt()
    x = x / norm.clamp_min(1e-12) * rms
    x[~ok] = float("nan")
    return x.view_as(images.double())


def control_directions(dirs: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The controls of CI directions ``dirs`` ``(K, *shape)`` (RMS 1, NaN rows for classes without a CI), each of
    the same size and for the same classes (NaN where ``dirs`` is): ``random``, Gaussian pixels seeded with ``seed``
    scaled to RMS 1; ``other``, for
    class ``c`` the CI direction of the next class that has one (NaN when no other class has a CI), so the share
    still called ``c`` tells a class-specific push from a push that moves inputs to any class."""
    rand = bias_directions(random_directions(dirs, seed=int(seed)).double(), center=False)
    rand[torch.isnan(dirs).flatten(1).any(1)] = float("nan")
    other = other_class_directions(dirs)          # the attacks' control: the same rule
    return {"random": rand, "other": other}


def _shares(model: torch.nn.Module, inputs: torch.Tensor, dirs: torch.Tensor, gammas: list[float],
            base: torch.Tensor) -> torch.Tensor:
    """``(G, K)``: the share of ``inputs + gamma * dirs[c]`` (clamped to :data:`CLIP`) called ``c``; ``base`` at
    gamma 0; NaN for a class without a direction."""
    k = len(dirs)
    share = torch.full((len(gammas), k), float("nan"), dtype=torch.float64)
    zero = [i for i, g in enumerate(gammas) if g == 0.0]
    rest = [i for i, g in enumerate(gammas) if g != 0.0]
    for c in range(k):
        if torch.isnan(dirs[c]).any():
            continue
        share[zero, c] = base[c]
        if rest:
            share[rest, c] = bias_curve(model, inputs, dirs[c], c, [gammas[i] for i in rest], clip=CLIP)
    return share


def bias_inputs(arch: str, prof: Profile) -> int:
    """Inputs per stimulus kind of the biasing experiment: ``prof.bias_inputs`` if set,
    else ``min(n_real, max(50, noise_samples(arch) // 200))`` (quick: 100, heavy models 50)."""
    if prof.bias_inputs:
        return int(prof.bias_inputs)
    return int(min(prof.n_real, max(50, prof.noise_samples(arch) // 200)))


def study_bias(s: Subject, *, gammas: Sequence[float] | None = None, n_inputs: int | None = None,
               noise: Stimulus | str | None = None, center: bool = True, refresh: bool = False) -> dict[str, object]:
    """Bias the trained model ``s`` toward each class by adding ``gamma * direction_c`` to inputs, against two
    controls of the same size.

    ``direction_c`` is the class's classification image from :func:`study_ci`, mean-centred over
    classes and scaled to RMS 1 (:func:`bias_directions`); the controls are a random direction and another
    class's CI direction (:func:`control_directions`). Every biased input is clamped to the data's range
    (:data:`CLIP`). Inputs are the first ``n_inputs`` test images and ``n_inputs`` noise images drawn from the
    CIs' own stimulus (``noise``, default the profile's: the noise the CIs were measured on), sampled on the CPU in
    float32 from a generator seeded with the profile's seed. The shares at ``gamma = 0`` come from one unbiased
    pass. The cache key holds the noise inputs' :meth:`~wna_helpers.engine.stimuli.Stimulus.describe`.

    Args:
        s: the trained model (:func:`~wna_helpers.book.studies.subject`).
        gammas: default ``profile.bias_gammas``.
        n_inputs: default :func:`bias_inputs`.
        noise: the stimulus of the classification images and of the noise inputs (a shorthand or a
            noise kind); default the profile's ``noise``.
        center: mean-centre the CIs over classes first; default True.

    Returns:
        dict with ``gammas`` (list), ``n_inputs``, ``single`` (True when fewer than two classes have a CI: the one
        direction is then the mean noise, a global brightening, not a class's), and for ``test`` and ``noise``
        inputs: ``{name}`` float64 ``(G, K)``: share of the inputs predicted as class ``c`` after adding
        ``gamma * direction_c`` (NaN for a class without a CI), ``{name}_random`` and ``{name}_other`` the same
        for the controls, and each with ``_mean`` ``(G,)``: averaged over the classes that have a CI.

    Raises:
        ValueError: ``noise`` is not a noise kind (real images cannot be drawn as noise inputs).
    """
    prof, model = s.profile, s.model
    gammas = [float(g) for g in (gammas if gammas is not None else prof.bias_gammas)]
    n = int(n_inputs or bias_inputs(s.arch, prof))
    stim = as_stimulus(noise or prof.noise)
    if not isinstance(stim, Noise):
        raise ValueError(f"study_bias needs a noise kind to draw its noise inputs from, got {stim.label()}")
    params = s.params(gammas=gammas, n=n, noise=stim.describe(), center=center, clip=list(CLIP),
                      controls={"random": "Gaussian, RMS 1, seed + 1", "other": "the next class's CI direction"},
                      inputs={"test": "the first n test images", "noise": stim.describe(),
                              "sampled": "cpu, float32, one torch.Generator seeded with the profile's seed"})

    def compute() -> dict[str, object]:
        ci = study_ci(s, noise=noise, progress=False)
        dirs = bias_directions(ci.images, center=center)
        kinds = {"": dirs, **{f"_{c}": d for c, d in control_directions(dirs, prof.seed + 1).items()}}
        k = ci.num_classes
        test = load_dataset(s.dataset, "test", limit=n).images
        gen = torch.Generator().manual_seed(prof.seed)
        noise_in = stim.sample(gen, (n, *test.shape[1:]), torch.device("cpu"), torch.float32)
        out: dict[str, object] = {"gammas": gammas, "n_inputs": n, "single": int((ci.counts > 0).sum()) < 2}
        for name, inputs in (("test", test), ("noise", noise_in)):
            pred = torch.cat([feed_back(model, inputs[i:i + 1000].clamp(*CLIP)) for i in range(0, len(inputs), 1000)])
            base = torch.bincount(pred, minlength=k).double() / len(inputs)
            for suffix, d in kinds.items():
                share = _shares(model, inputs, d, gammas, base)
                out[f"{name}{suffix}"] = share
                out[f"{name}{suffix}_mean"] = share.nanmean(1)
        return out
    return cached("bias", params, compute, refresh=refresh)
