"""The book's computations for one trained model of a profile (a :class:`Subject`), cached on disk.

Every chapter calls these, so each chapter runs standalone: it trains or loads the
models it needs, and results one chapter computed are reused by the next through the
results cache (:mod:`wna_helpers.book.results_cache`), keyed by the profile's settings, the
model's weights, the stimulus, the statistics and the code.

The profile is resolved once, by the chapter (:func:`~wna_helpers.book.chapter.setup`); a study receives
the :class:`Subject` (the pair, the resolved :class:`~wna_helpers.config.Profile`, the trained model and its
training record) and never resolves a name again.

A study's result does not depend on what was called before it: where one noise pass
serves several results (the convergence series holds the CI of every size in it; the
STA convergence pass holds the final STAs and the noise activation maps), the result is
*always* taken from that pass, whether or not it is cached yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..methods.activations import ActivationStatistics, activation_statistics
from ..methods.ci import ClassificationImages, classification_images
from ..config import Profile, default_device
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

__all__ = ["Subject", "subject", "study_ci", "study_ci_convergence", "study_ci_mixing", "study_sta",
           "study_sta_convergence", "study_activations", "study_stc", "convergence_sizes", "side_samples",
           "mix_samples", "mix_gammas", "sta_layers", "REAL", "SUBJECT_KEYS"]

#: The names :meth:`Subject.params` puts in every cache key; a study's own parameters may not reuse them.
SUBJECT_KEYS: tuple[str, ...] = ("arch", "dataset", "profile", "weights", "device")
#: Stimuli of every real-data statistic: the first ``n`` test images.
REAL = "real"
_MODELS: dict[tuple[str, str], tuple[nn.Module, dict]] = {}


@dataclass(frozen=True)
class Subject:
    """One trained model of the book: what every study computes on.

    Attributes:
        arch: the architecture's name (:func:`~wna_helpers.zoo.models.model_names`).
        dataset: the dataset's name.
        profile: the resolved :class:`~wna_helpers.config.Profile` it was trained and is studied with.
        model: the trained model, in eval mode, on its device.
        meta: its training record (:func:`~wna_helpers.zoo.training.get_trained_model`), with
            ``weights_sha256``, the digest of its weights.
    """

    arch: str
    dataset: str
    profile: Profile
    model: nn.Module = field(repr=False, compare=False)
    meta: dict = field(repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    def params(self, **params: object) -> dict[str, object]:
        """A results-cache key: the pair, every setting of the profile, the weights' digest, the device,
        and ``params`` (the stimulus and the statistics).

        Raises:
            ValueError: a name in ``params`` is one of the subject's own (:data:`SUBJECT_KEYS`): it would
                replace, say, the weights' digest in the key, and two models would share an entry.
        """
        clash = sorted(set(params) & set(SUBJECT_KEYS))
        if clash:
            raise ValueError(f"cache parameters {clash} would replace the subject's own in the key; the names "
                             f"{list(SUBJECT_KEYS)} are taken (call them, e.g., 'signal_weights')")
        return {"arch": self.arch, "dataset": self.dataset, "profile": self.profile.settings(),
                "weights": self.meta["weights_sha256"], "device": self.device.type, **params}

    def run(self, progress: bool) -> RunOptions:
        """The run options of the book's noise runs: the profile's seed and batch size."""
        return RunOptions(seed=self.profile.seed, batch_size=self.profile.noise_batch, progress=progress)


def subject(arch: str, dataset: str, prof: Profile, device: torch.device | str | None = None) -> Subject:
    """The trained ``arch`` on ``dataset`` under ``prof`` (:func:`~wna_helpers.zoo.training.get_trained_model`),
    memoised in this process by the training recipe (every training setting, not the profile's name) and
    the device.

    Args:
        prof: a resolved profile (:func:`~wna_helpers.config.get_profile` resolves a name).
        device: default :func:`~wna_helpers.config.default_device`.

    Raises:
        TypeError: ``prof`` is not a :class:`~wna_helpers.config.Profile`.
    """
    if not isinstance(prof, Profile):
        raise TypeError(f"prof must be a resolved Profile (wna.get_profile(name) gives one), got {prof!r}")
    dev = torch.device(device) if device is not None else default_device()
    key = (recipe_digest(arch, dataset, prof), str(dev))
    if key not in _MODELS:
        model, meta = get_trained_model(arch, dataset, prof, device=dev)
        _MODELS[key] = (model, {**meta, "weights_sha256": state_digest(model)})
    model, meta = _MODELS[key]
    return Subject(arch, dataset, prof, model, meta)


# ---------------------------------------------------------------- sample counts of the book's runs

def side_samples(arch: str, prof: Profile, device: torch.device | str | None = None) -> int:
    """Noise samples of the side comparison (uniform against Gaussian CIs, chapter 3):
    ``prof.side_fraction`` of :meth:`~wna_helpers.config.Profile.noise_samples`, at least 1,000."""
    return max(1000, int(round(prof.side_fraction * prof.noise_samples(arch, device))))


def mix_samples(arch: str, prof: Profile, device: torch.device | str | None = None) -> int:
    """Noise samples per gamma of the noise-plus-signal CIs: ``prof.mix_fraction`` of
    :meth:`~wna_helpers.config.Profile.noise_samples`, at least 1,000."""
    return max(1000, int(round(prof.mix_fraction * prof.noise_samples(arch, device))))


def mix_gammas(prof: Profile) -> list[float]:
    """The signal weights of the noise-plus-signal CIs (``prof.mix_gammas``)."""
    return [float(g) for g in prof.mix_gammas]


def convergence_sizes(arch: str, prof: Profile, device: torch.device | str | None = None) -> list[int]:
    """Sizes of the CI convergence series: :func:`~wna_helpers.methods.convergence.geometric_sizes` up to
    the profile's ``noise_samples(arch)`` from ``prof.convergence_start``, plus
    :func:`side_samples` and :func:`mix_samples`, so that those CIs come from the same run."""
    n = prof.noise_samples(arch, device)
    sizes = geometric_sizes(n, prof.convergence_start)
    extra = [side_samples(arch, prof, device), mix_samples(arch, prof, device)]
    return sorted(set(sizes + [m for m in extra if m <= n]))


def sta_layers(model: nn.Module) -> list[str]:
    """The conv layers the book's STA convergence pass covers: the first and the last."""
    convs = conv_layer_names(model)
    return list(dict.fromkeys([convs[0], convs[-1]])) if convs else []


# ---------------------------------------------------------------- classification images

def study_ci_convergence(s: Subject, *, noise: Stimulus | str | None = None, refresh: bool = False,
                         progress: bool = False) -> CIConvergence:
    """:func:`~wna_helpers.methods.convergence.ci_convergence` of the subject over :func:`convergence_sizes`,
    cached. Its snapshots are :func:`study_ci`'s results for those sizes.

    Args:
        s: the trained model (:func:`subject`).
        noise: the stimulus or a shorthand; default the profile's ``noise``.
        refresh: recompute even if cached (and everything computed from it).
        progress: show a progress bar; default False.
    """
    stim = as_stimulus(noise or s.profile.noise)
    sizes = convergence_sizes(s.arch, s.profile, s.device)
    return cached("ciconv", s.params(noise=stim.describe(), sizes=sizes),
                  lambda: ci_convergence(s.model, sizes, noise=stim, run=s.run(progress)), refresh=refresh)


def study_ci(s: Subject, *, noise: Stimulus | str | None = None, n_samples: int | None = None, gamma: float = 0.0,
             refresh: bool = False, progress: bool = False) -> ClassificationImages:
    """Classification images of the subject.

    The profile's main noise at one of the :func:`convergence_sizes` (the default ``n`` is one) comes
    from :func:`study_ci_convergence`'s one pass; other noise, other sizes and mixtures are computed
    on their own.

    Args:
        s: the trained model (:func:`subject`).
        noise: the stimulus or a shorthand; default the profile's ``noise``.
        n_samples: default the profile's count for the architecture on the model's device.
        gamma: mix ``(1 - gamma) * noise + gamma * image`` with the first 10,000 training images;
            default 0.
        refresh: recompute even if cached (and everything computed from it).
        progress: show a progress bar; default False.
    """
    prof = s.profile
    stim = as_stimulus(noise or prof.noise)
    n = int(n_samples or prof.noise_samples(s.arch, s.device))
    main = stim.describe() == as_stimulus(prof.noise).describe()
    if main and gamma == 0 and n in convergence_sizes(s.arch, prof, s.device):
        return study_ci_convergence(s, noise=stim, refresh=refresh, progress=progress).snapshot(n)
    if gamma > 0:
        stim = Mixture(stim, load_dataset(s.dataset, "train", limit=10_000).images, gamma)  # type: ignore[arg-type]
    return cached("ci", s.params(noise=stim.describe(), n=n),
                  lambda: classification_images(s.model, n, noise=stim, run=s.run(progress)), refresh=refresh)


def study_ci_mixing(s: Subject, *, gammas: Sequence[float] | None = None, n_samples: int | None = None,
                    progress: bool = False) -> dict[float, ClassificationImages]:
    """Classification images from ``(1 - gamma) * noise + gamma * training image``, per gamma.

    Args:
        s: the trained model (:func:`subject`).
        gammas: default :func:`mix_gammas`.
        n_samples: default :func:`mix_samples` of the architecture.

    Returns:
        gamma -> :class:`~wna_helpers.methods.ci.ClassificationImages` (each from :func:`study_ci`).
    """
    n = int(n_samples or mix_samples(s.arch, s.profile))
    return {float(g): study_ci(s, gamma=float(g), n_samples=n, progress=progress)
            for g in (gammas if gammas is not None else mix_gammas(s.profile))}


# ---------------------------------------------------------------- STAs and activation maps

def study_sta_convergence(s: Subject, *, refresh: bool = False, progress: bool = False) -> dict[str, STAConvergence]:
    """STAs of :func:`sta_layers` after the first ``n`` samples of the profile's noise, for
    :func:`~wna_helpers.methods.convergence.geometric_sizes` up to the profile's ``sta_samples(arch)`` from
    ``profile.sta_convergence_start``; one pass, cached. The same pass accumulates the noise
    activation maps of every conv layer (:func:`study_activations`' noise result).

    Returns:
        layer -> :class:`~wna_helpers.methods.convergence.STAConvergence`.
    """
    return _sta_pass(s, refresh, progress)["sta"]  # type: ignore[return-value]


def _sta_pass(s: Subject, refresh: bool, progress: bool) -> dict[str, object]:
    layers, convs = sta_layers(s.model), conv_layer_names(s.model)
    if not layers:
        raise ValueError(f"{s.arch} has no conv layer; STAs need one")
    sizes = geometric_sizes(s.profile.sta_samples(s.arch, s.device), s.profile.sta_convergence_start)
    stim = as_stimulus(s.profile.noise)

    def compute() -> dict[str, object]:
        out, stats = sta_convergence_with_activations(s.model, layers, sizes, noise=stim, input_shape=(1, 28, 28),
                                                      run=s.run(progress), activation_layers=convs)
        return {"sta": out, "activations": stats}
    return cached("staconv", s.params(noise=stim.describe(), layers=layers, sizes=sizes, activations=convs), compute,
                  refresh=refresh)


def study_sta(s: Subject, layer: str, *, stimulus: str = "noise", noise: Stimulus | str | None = None,
              n_samples: int | None = None, refresh: bool = False, progress: bool = False) -> SpikeTriggeredAverage:
    """STA of conv ``layer`` of the subject, over noise or real test images.

    The STA of the profile's noise for a :func:`sta_layers` layer at the profile's ``n`` is the final
    snapshot of :func:`study_sta_convergence`; anything else is computed on its own.

    Args:
        s: the trained model (:func:`subject`).
        layer: a conv layer's name.
        stimulus: ``"noise"`` or ``"real"`` (the first ``n`` test images).
        noise: the noise of ``stimulus="noise"`` (a stimulus or a shorthand); default the profile's.
        n_samples: default the profile's STA count (noise) or ``n_real`` (real).
        refresh: recompute even if cached.
        progress: show a progress bar; default False.
    """
    if stimulus not in ("noise", REAL):
        raise ValueError(f"stimulus must be 'noise' or 'real', got {stimulus!r}")
    prof = s.profile
    full_n = prof.sta_samples(s.arch, s.device)
    n = int(n_samples or (full_n if stimulus == "noise" else prof.n_real))
    main = noise is None or as_stimulus(noise).describe() == as_stimulus(prof.noise).describe()
    if stimulus == "noise" and main and n == full_n and layer in sta_layers(s.model):
        return study_sta_convergence(s, refresh=refresh, progress=progress)[layer].snapshot(n)
    stim = as_stimulus(noise) if stimulus == "noise" and noise is not None else _stimulus(stimulus, s, n)
    return cached("sta", s.params(layer=layer, noise=stim.describe(), n=n),
                  lambda: spike_triggered_average(s.model, layer, n, noise=stim, run=s.run(progress)), refresh=refresh)


def study_stc(s: Subject, layer: str, *, n_samples: int | None = None, refresh: bool = False,
              progress: bool = False) -> SpikeTriggeredCovariance:
    """Spike-triggered covariance of conv ``layer`` of the subject from the profile's noise,
    with a null band of ``profile.stc_null_samples`` sample-rolled nulls
    (:func:`~wna_helpers.methods.stc.spike_triggered_covariance`), cached.

    Args:
        s: the trained model (:func:`subject`).
        n_samples: default the profile's STA count for the architecture.
        refresh: recompute even if cached.
        progress: show a progress bar; default False.
    """
    n = int(n_samples or s.profile.sta_samples(s.arch, s.device))
    stim = as_stimulus(s.profile.noise)
    nulls = int(s.profile.stc_null_samples)
    return cached("stc", s.params(layer=layer, noise=stim.describe(), n=n, null_samples=nulls),
                  lambda: spike_triggered_covariance(s.model, layer, n, noise=stim, null_shifts=0, null_samples=nulls,
                                                     run=s.run(progress)),
                  refresh=refresh)


def study_activations(s: Subject, *, layers: Sequence[str] | None = None, stimulus: str = "noise",
                      n_samples: int | None = None, refresh: bool = False,
                      progress: bool = False) -> ActivationStatistics:
    """Per-class mean activation maps of ``layers`` (default: every conv layer, else ``fc1``).

    Noise is grouped by predicted class, real test images by label. The noise maps of every conv
    layer at the profile's STA count come from :func:`study_sta_convergence`'s pass.
    """
    if stimulus not in ("noise", REAL):
        raise ValueError(f"stimulus must be 'noise' or 'real', got {stimulus!r}")
    prof = s.profile
    convs = conv_layer_names(s.model)
    layers = list(layers or convs or ["fc1"])
    full_n = prof.sta_samples(s.arch, s.device)
    n = int(n_samples or (full_n if stimulus == "noise" else prof.n_real))
    if stimulus == "noise" and convs and layers == convs and n == full_n:
        return _sta_pass(s, refresh, progress)["activations"]  # type: ignore[return-value]
    stim = _stimulus(stimulus, s, n)
    return cached("act", s.params(layers=layers, noise=stim.describe(), n=n),
                  lambda: activation_statistics(s.model, layers, n, noise=stim, run=s.run(progress)), refresh=refresh)


def _stimulus(stimulus: str, s: Subject, n: int) -> Stimulus:
    if stimulus == REAL:
        test = load_dataset(s.dataset, "test", limit=n)
        return Images(test.images, test.labels)
    return as_stimulus(s.profile.noise)
