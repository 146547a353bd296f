"""The book's computations for one (architecture, dataset, profile), cached on disk.

Every chapter calls these, so each chapter runs standalone: it trains or loads the
models it needs, and results one chapter computed are reused by the next through the
results cache (:mod:`wna_helpers.book.results_cache`), keyed by the profile's settings, the
model's weights, the stimulus, the statistics and the code.

A study's result does not depend on what was called before it: where one noise pass
serves several results (the convergence series holds the CI of every size in it; the
STA convergence pass holds the final STAs and the noise activation maps), the result is
*always* taken from that pass, whether or not it is cached yet.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..methods.activations import ActivationStatistics, activation_statistics
from ..methods.ci import ClassificationImages, classification_images
from ..config import Profile, default_device, get_profile
from ..methods.convergence import (CIConvergence, STAConvergence, ci_convergence, geometric_sizes, sta_convergence_with_activations)
from ..zoo.data import load_dataset
from ..engine.fingerprint import state_digest
from ..zoo.models import conv_layer_names
from ..engine.options import RunOptions
from .results_cache import cached
from ..methods.sta import SpikeTriggeredAverage, spike_triggered_average
from ..methods.stc import SpikeTriggeredCovariance, spike_triggered_covariance
from ..engine.stimuli import Images, Mixture, Stimulus, as_stimulus
from ..zoo.training import get_trained_model, recipe_digest

__all__ = ["as_profile", "trained", "study_params", "study_ci", "study_ci_convergence", "study_ci_mixing",
           "study_sta", "study_sta_convergence", "study_activations", "convergence_sizes", "side_samples",
           "mix_samples", "mix_gammas", "sta_layers", "study_stc"]

#: Stimuli of every real-data statistic: the first ``n`` test images.
REAL = "real"
_MODELS: dict[tuple[str, str], tuple[nn.Module, dict]] = {}


def as_profile(profile: Profile | str | None) -> Profile:
    """``profile`` itself, the profile of that name, or ``$WNA_PROFILE``'s."""
    return profile if isinstance(profile, Profile) else get_profile(profile)


def trained(arch: str, dataset: str, profile: Profile | str | None = None,
            device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """:func:`~wna_helpers.zoo.training.get_trained_model`, memoised in this process by the training
    recipe (every training setting, not the profile's name) and the device.

    Returns:
        ``(model, meta)``; ``meta["weights_sha256"]`` is the digest of the model's weights.
    """
    prof = as_profile(profile)
    dev = torch.device(device) if device is not None else default_device()
    key = (recipe_digest(arch, dataset, prof), str(dev))
    if key not in _MODELS:
        model, meta = get_trained_model(arch, dataset, prof, device=dev)
        _MODELS[key] = (model, {**meta, "weights_sha256": state_digest(model)})
    return _MODELS[key]


def study_params(arch: str, dataset: str, prof: Profile, **params: object) -> dict[str, object]:
    """A results-cache key: the pair, every setting of the profile, the weights' digest, the device,
    and ``params`` (the stimulus and the statistics)."""
    model, meta = trained(arch, dataset, prof)
    return {"arch": arch, "dataset": dataset, "profile": prof.settings(), "weights": meta["weights_sha256"],
            "device": next(model.parameters()).device.type, **params}


def _run(prof: Profile, progress: bool) -> RunOptions:
    return RunOptions(seed=prof.seed, batch_size=prof.noise_batch, progress=progress)


def _device(prof: Profile, arch: str, dataset: str) -> torch.device:
    return next(trained(arch, dataset, prof)[0].parameters()).device


# ---------------------------------------------------------------- sample counts of the book's runs

def side_samples(arch: str, profile: Profile | str | None = None, device: torch.device | str | None = None) -> int:
    """Noise samples of the side comparison (uniform against Gaussian CIs, chapter 3):
    ``profile.side_fraction`` of :meth:`~wna_helpers.config.Profile.noise_samples`, at least 1,000."""
    prof = as_profile(profile)
    return max(1000, int(round(prof.side_fraction * prof.noise_samples(arch, device))))


def mix_samples(arch: str, profile: Profile | str | None = None, device: torch.device | str | None = None) -> int:
    """Noise samples per gamma of the noise-plus-signal CIs: ``profile.mix_fraction`` of
    :meth:`~wna_helpers.config.Profile.noise_samples`, at least 1,000."""
    prof = as_profile(profile)
    return max(1000, int(round(prof.mix_fraction * prof.noise_samples(arch, device))))


def mix_gammas(profile: Profile | str | None = None) -> list[float]:
    """The signal weights of the noise-plus-signal CIs (``profile.mix_gammas``)."""
    return [float(g) for g in as_profile(profile).mix_gammas]


def convergence_sizes(arch: str, profile: Profile | str | None = None,
                      device: torch.device | str | None = None) -> list[int]:
    """Sizes of the CI convergence series: :func:`~wna_helpers.methods.convergence.geometric_sizes` up to
    the profile's ``noise_samples(arch)`` from ``profile.convergence_start``, plus
    :func:`side_samples` and :func:`mix_samples`, so that those CIs come from the same run."""
    prof = as_profile(profile)
    n = prof.noise_samples(arch, device)
    sizes = geometric_sizes(n, prof.convergence_start)
    extra = [side_samples(arch, prof, device), mix_samples(arch, prof, device)]
    return sorted(set(sizes + [m for m in extra if m <= n]))


def sta_layers(model: nn.Module) -> list[str]:
    """The conv layers the book's STA convergence pass covers: the first and the last."""
    convs = conv_layer_names(model)
    return list(dict.fromkeys([convs[0], convs[-1]])) if convs else []


# ---------------------------------------------------------------- classification images

def study_ci_convergence(arch: str, dataset: str, profile: Profile | str | None = None, *,
                         noise: Stimulus | str | None = None, refresh: bool = False,
                         progress: bool = False) -> CIConvergence:
    """:func:`~wna_helpers.methods.convergence.ci_convergence` of the trained ``arch`` on ``dataset`` over
    :func:`convergence_sizes`, cached. Its snapshots are :func:`study_ci`'s results for those sizes.

    Args:
        noise: the stimulus or a shorthand; default the profile's ``noise``.
        refresh: recompute even if cached (and everything computed from it).
        progress: show a progress bar; default False.
    """
    prof = as_profile(profile)
    model, _ = trained(arch, dataset, prof)
    stim = as_stimulus(noise or prof.noise)
    sizes = convergence_sizes(arch, prof, _device(prof, arch, dataset))
    params = study_params(arch, dataset, prof, noise=stim.describe(), sizes=sizes)
    return cached("ciconv", params, lambda: ci_convergence(model, sizes, noise=stim, run=_run(prof, progress)),
                  refresh=refresh)


def study_ci(arch: str, dataset: str, profile: Profile | str | None = None, *, noise: Stimulus | str | None = None,
             n_samples: int | None = None, gamma: float = 0.0, refresh: bool = False,
             progress: bool = False) -> ClassificationImages:
    """Classification images of the trained ``arch`` on ``dataset``.

    The profile's main noise at one of the :func:`convergence_sizes` (the default ``n`` is one) comes
    from :func:`study_ci_convergence`'s one pass; other noise, other sizes and mixtures are computed
    on their own.

    Args:
        noise: the stimulus or a shorthand; default the profile's ``noise``.
        n_samples: default the profile's count for ``arch`` on the current device.
        gamma: mix ``(1 - gamma) * noise + gamma * image`` with the first 10,000 training images;
            default 0.
        refresh: recompute even if cached (and everything computed from it).
        progress: show a progress bar; default False.
    """
    prof = as_profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = _device(prof, arch, dataset)
    stim = as_stimulus(noise or prof.noise)
    n = int(n_samples or prof.noise_samples(arch, dev))
    main = stim.describe() == as_stimulus(prof.noise).describe()
    if main and gamma == 0 and n in convergence_sizes(arch, prof, dev):
        return study_ci_convergence(arch, dataset, prof, noise=stim, refresh=refresh, progress=progress).snapshot(n)
    if gamma > 0:
        stim = Mixture(stim, load_dataset(dataset, "train", limit=10_000).images, gamma)  # type: ignore[arg-type]
    params = study_params(arch, dataset, prof, noise=stim.describe(), n=n)
    return cached("ci", params, lambda: classification_images(model, n, noise=stim, run=_run(prof, progress)),
                  refresh=refresh)


def study_ci_mixing(arch: str, dataset: str, profile: Profile | str | None = None, *,
                    gammas: Sequence[float] | None = None, n_samples: int | None = None,
                    progress: bool = False) -> dict[float, ClassificationImages]:
    """Classification images from ``(1 - gamma) * noise + gamma * training image``, per gamma.

    Args:
        gammas: default :func:`mix_gammas`.
        n_samples: default :func:`mix_samples` of ``arch``.

    Returns:
        gamma -> :class:`~wna_helpers.methods.ci.ClassificationImages` (each from :func:`study_ci`).
    """
    prof = as_profile(profile)
    n = int(n_samples or mix_samples(arch, prof))
    return {float(g): study_ci(arch, dataset, prof, gamma=float(g), n_samples=n, progress=progress)
            for g in (gammas if gammas is not None else mix_gammas(prof))}


# ---------------------------------------------------------------- STAs and activation maps

def study_sta_convergence(arch: str, dataset: str, profile: Profile | str | None = None, *,
                          refresh: bool = False, progress: bool = False) -> dict[str, STAConvergence]:
    """STAs of :func:`sta_layers` after the first ``n`` samples of the profile's noise, for
    :func:`~wna_helpers.methods.convergence.geometric_sizes` up to the profile's ``sta_samples(arch)`` from
    ``profile.sta_convergence_start``; one pass, cached. The same pass accumulates the noise
    activation maps of every conv layer (:func:`study_activations`' noise result).

    Returns:
        layer -> :class:`~wna_helpers.methods.convergence.STAConvergence`.
    """
    return _sta_pass(arch, dataset, as_profile(profile), refresh, progress)["sta"]  # type: ignore[return-value]


def _sta_pass(arch: str, dataset: str, prof: Profile, refresh: bool, progress: bool) -> dict[str, object]:
    model, _ = trained(arch, dataset, prof)
    layers, convs = sta_layers(model), conv_layer_names(model)
    if not layers:
        raise ValueError(f"{arch} has no conv layer; STAs need one")
    sizes = geometric_sizes(prof.sta_samples(arch, _device(prof, arch, dataset)), prof.sta_convergence_start)
    stim = as_stimulus(prof.noise)
    params = study_params(arch, dataset, prof, noise=stim.describe(), layers=layers, sizes=sizes, activations=convs)

    def compute() -> dict[str, object]:
        out, stats = sta_convergence_with_activations(model, layers, sizes, noise=stim, input_shape=(1, 28, 28),
                                                      run=_run(prof, progress), activation_layers=convs)
        return {"sta": out, "activations": stats}
    return cached("staconv", params, compute, refresh=refresh)


def study_sta(arch: str, dataset: str, layer: str, profile: Profile | str | None = None, *,
              stimulus: str = "noise", noise: Stimulus | str | None = None, n_samples: int | None = None,
              refresh: bool = False, progress: bool = False) -> SpikeTriggeredAverage:
    """STA of conv ``layer`` of the trained ``arch``, over noise or real test images.

    The STA of the profile's noise for a :func:`sta_layers` layer at the profile's ``n`` is the final
    snapshot of :func:`study_sta_convergence`; anything else is computed on its own.

    Args:
        stimulus: ``"noise"`` or ``"real"`` (the first ``n`` test images).
        noise: the noise of ``stimulus="noise"`` (a stimulus or a shorthand); default the profile's.
        n_samples: default the profile's STA count (noise) or ``n_real`` (real).
        refresh: recompute even if cached.
        progress: show a progress bar; default False.
    """
    if stimulus not in ("noise", REAL):
        raise ValueError(f"stimulus must be 'noise' or 'real', got {stimulus!r}")
    prof = as_profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = _device(prof, arch, dataset)
    n = int(n_samples or (prof.sta_samples(arch, dev) if stimulus == "noise" else prof.n_real))
    main = noise is None or as_stimulus(noise).describe() == as_stimulus(prof.noise).describe()
    if stimulus == "noise" and main and n == prof.sta_samples(arch, dev) and layer in sta_layers(model):
        conv = study_sta_convergence(arch, dataset, prof, refresh=refresh, progress=progress)[layer]
        return conv.snapshot(n)
    stim = as_stimulus(noise) if stimulus == "noise" and noise is not None else _stimulus(stimulus, dataset, n, prof)
    params = study_params(arch, dataset, prof, layer=layer, noise=stim.describe(), n=n)
    return cached("sta", params, lambda: spike_triggered_average(model, layer, n, noise=stim, run=_run(prof, progress)),
                  refresh=refresh)


def study_stc(arch: str, dataset: str, layer: str, profile: Profile | str | None = None, *,
              n_samples: int | None = None, refresh: bool = False, progress: bool = False) -> SpikeTriggeredCovariance:
    """Spike-triggered covariance of conv ``layer`` of the trained ``arch`` from the profile's noise,
    with its null band (:func:`~wna_helpers.methods.stc.spike_triggered_covariance`), cached.

    Args:
        n_samples: default the profile's STA count for ``arch``.
        refresh: recompute even if cached.
        progress: show a progress bar; default False.
    """
    prof = as_profile(profile)
    model, _ = trained(arch, dataset, prof)
    n = int(n_samples or prof.sta_samples(arch, _device(prof, arch, dataset)))
    stim = as_stimulus(prof.noise)
    params = study_params(arch, dataset, prof, layer=layer, noise=stim.describe(), n=n)
    return cached("stc", params, lambda: spike_triggered_covariance(model, layer, n, noise=stim,
                                                                     run=_run(prof, progress)), refresh=refresh)


def study_activations(arch: str, dataset: str, profile: Profile | str | None = None, *,
                      layers: Sequence[str] | None = None, stimulus: str = "noise",
                      n_samples: int | None = None, refresh: bool = False,
                      progress: bool = False) -> ActivationStatistics:
    """Per-class mean activation maps of ``layers`` (default: every conv layer, else ``fc1``).

    Noise is grouped by predicted class, real test images by label. The noise maps of every conv
    layer at the profile's STA count come from :func:`study_sta_convergence`'s pass.
    """
    if stimulus not in ("noise", REAL):
        raise ValueError(f"stimulus must be 'noise' or 'real', got {stimulus!r}")
    prof = as_profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = _device(prof, arch, dataset)
    convs = conv_layer_names(model)
    layers = list(layers or convs or ["fc1"])
    n = int(n_samples or (prof.sta_samples(arch, dev) if stimulus == "noise" else prof.n_real))
    if stimulus == "noise" and convs and layers == convs and n == prof.sta_samples(arch, dev):
        return _sta_pass(arch, dataset, prof, refresh, progress)["activations"]  # type: ignore[return-value]
    stim = _stimulus(stimulus, dataset, n, prof)
    params = study_params(arch, dataset, prof, layers=layers, noise=stim.describe(), n=n)
    return cached("act", params, lambda: activation_statistics(model, layers, n, noise=stim, run=_run(prof, progress)),
                  refresh=refresh)


def _stimulus(stimulus: str, dataset: str, n: int, prof: Profile) -> Stimulus:
    if stimulus == REAL:
        test = load_dataset(dataset, "test", limit=n)
        return Images(test.images, test.labels)
    return as_stimulus(prof.noise)
