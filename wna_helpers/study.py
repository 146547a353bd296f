"""The book's computations for one (architecture, dataset), cached on disk.

Every chapter calls these functions, so each chapter runs standalone (it trains or
loads the models it needs) and the results one chapter computed are reused by the
next. Results live under ``<cache>/results/<profile>/`` and are keyed by the
trained checkpoint and every parameter; writes are atomic.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
import json
import os
from typing import Callable, TypeVar

import torch
from torch import nn

from ._io import atomic_torch_save
from .activations import ActivationStatistics, activation_statistics
from .analysis import class_means, confusion_matrix, feed_back, template_classify
from .ci import ClassificationImages, classification_images
from .config import Profile, cache_root, default_device, get_profile
from .data import load_dataset
from .models import CNN_NAMES, conv_layer_names
from .sta import SpikeTriggeredAverage, filter_correlation, spike_triggered_average
from .training import get_trained_model

__all__ = ["trained", "study_ci", "study_sta", "study_activations", "template_report", "overview_row"]

T = TypeVar("T")
_MODELS: dict[tuple, tuple[nn.Module, dict]] = {}


def _profile(profile: Profile | str | None) -> Profile:
    return profile if isinstance(profile, Profile) else get_profile(profile)


def trained(arch: str, dataset: str, profile: Profile | str | None = None,
            device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """:func:`~wna_helpers.training.get_trained_model`, memoised in this process."""
    prof = _profile(profile)
    dev = torch.device(device) if device is not None else default_device()
    key = (arch, dataset, prof.name, str(dev))
    if key not in _MODELS:
        _MODELS[key] = get_trained_model(arch, dataset, prof, device=dev)
    return _MODELS[key]


def _cached(kind: str, arch: str, dataset: str, prof: Profile, params: dict, compute: Callable[[], T],
            refresh: bool = False) -> T:
    _, meta = trained(arch, dataset, prof)
    key = json.dumps({"kind": kind, "arch": arch, "dataset": dataset, "profile": prof.name, **params,
                      "model": [meta.get("test_accuracy"), meta.get("train_seconds")]}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_root() / "results" / prof.name / f"{arch}-{dataset}-{kind}-{digest}.pt"
    if path.exists() and not refresh:
        try:
            blob = torch.load(path, weights_only=False)  # our own cache files
            if blob.get("key") == key:
                return blob["value"]
        except Exception:
            pass  # unreadable: recompute
    value = compute()
    atomic_torch_save({"key": key, "value": value}, path)
    return value


def study_ci(arch: str, dataset: str, profile: Profile | str | None = None, *, noise: str = "gaussian",
             n_samples: int | None = None, gamma: float = 0.0, refresh: bool = False,
             progress: bool = True) -> ClassificationImages:
    """Classification images of the trained ``arch`` on ``dataset``.

    Args:
        noise: ``"gaussian"`` (mean 0, std 1) or ``"uniform"`` ([0, 1]); default gaussian.
        n_samples: default the profile's count for ``arch`` on the current device.
        gamma: mix ``(1 - gamma) * noise + gamma * image`` with training images; default 0.
        refresh: recompute even if cached.
    """
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = next(model.parameters()).device
    n = int(n_samples or prof.noise_samples(arch, dev))
    params = {"noise": noise, "n": n, "gamma": gamma, "seed": prof.seed, "device": dev.type}

    def compute() -> ClassificationImages:
        signal = load_dataset(dataset, "train", limit=10_000).images if gamma > 0 else None
        return classification_images(model, n, noise=noise, gamma=gamma, signal=signal, seed=prof.seed,
                                     batch_size=prof.noise_batch, progress=progress)
    return _cached("ci", arch, dataset, prof, params, compute, refresh)


def study_sta(arch: str, dataset: str, layer: str, profile: Profile | str | None = None, *,
              stimulus: str = "noise", n_samples: int | None = None, refresh: bool = False,
              progress: bool = True) -> SpikeTriggeredAverage:
    """STA of conv ``layer`` of the trained ``arch``, over Gaussian noise or real test images.

    Args:
        stimulus: ``"noise"`` (N(0, 1)) or ``"real"`` (the first ``profile.n_real`` test images).
        n_samples: default the profile's STA count (noise) or ``n_real`` (real).
    """
    if stimulus not in ("noise", "real"):
        raise ValueError(f"stimulus must be 'noise' or 'real', got {stimulus!r}")
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = next(model.parameters()).device
    n = int(n_samples or (prof.sta_samples(arch, dev) if stimulus == "noise" else prof.n_real))
    params = {"layer": layer, "stimulus": stimulus, "n": n, "seed": prof.seed, "device": dev.type}

    def compute() -> SpikeTriggeredAverage:
        if stimulus == "real":
            images = load_dataset(dataset, "test", limit=n).images
            return spike_triggered_average(model, layer, images=images, batch_size=prof.noise_batch,
                                           progress=progress)
        return spike_triggered_average(model, layer, n, seed=prof.seed, batch_size=prof.noise_batch,
                                       progress=progress)
    return _cached("sta", arch, dataset, prof, params, compute, refresh)


def study_activations(arch: str, dataset: str, profile: Profile | str | None = None, *,
                      layers: list[str] | None = None, stimulus: str = "noise",
                      n_samples: int | None = None, refresh: bool = False,
                      progress: bool = True) -> ActivationStatistics:
    """Per-class mean activation maps of ``layers`` (default: every conv layer, else ``fc1``).

    Noise is grouped by predicted class, real test images by label.
    """
    if stimulus not in ("noise", "real"):
        raise ValueError(f"stimulus must be 'noise' or 'real', got {stimulus!r}")
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    layers = list(layers or conv_layer_names(model) or ["fc1"])
    dev = next(model.parameters()).device
    n = int(n_samples or (prof.sta_samples(arch, dev) if stimulus == "noise" else prof.n_real))
    params = {"layers": layers, "stimulus": stimulus, "n": n, "seed": prof.seed, "device": dev.type}

    def compute() -> ActivationStatistics:
        if stimulus == "real":
            data = load_dataset(dataset, "test", limit=n)
            return activation_statistics(model, layers, images=data.images, labels=data.labels,
                                         batch_size=prof.noise_batch, progress=progress)
        return activation_statistics(model, layers, n, seed=prof.seed, batch_size=prof.noise_batch,
                                     progress=progress)
    return _cached("act", arch, dataset, prof, params, compute, refresh)


@lru_cache(maxsize=4)
def _train_class_means(dataset: str, k: int) -> torch.Tensor:
    train = load_dataset(dataset, "train")
    return class_means(train.images, train.labels, k)


def template_report(arch: str, dataset: str, profile: Profile | str | None = None, *,
                    noise: str = "gaussian", center: bool = False) -> dict[str, object]:
    """CIs used as templates on the real test set, against class-mean templates and chance.

    Returns:
        dict with ``ci_accuracy``, ``mean_accuracy`` (class-mean templates from the training
        set), ``chance``, ``ci_confusion`` and ``mean_confusion`` (int64 ``(K, K)``, row = true),
        ``feedback`` (int64 ``(K,)``: the model's answer on each CI; -1 for an empty class),
        ``feedback_diagonal`` (how many CIs the model gives their own class).
    """
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    ci = study_ci(arch, dataset, prof, noise=noise)
    test = load_dataset(dataset, "test")
    k = ci.num_classes
    means = _train_class_means(dataset, k)
    valid = ci.counts > 0
    ci_pred = torch.full((len(test),), -1, dtype=torch.int64)
    if valid.any():  # classes without samples have no template
        ci_pred = torch.nonzero(valid).flatten()[template_classify(test.images, ci.images[valid], center=center)]
    mean_pred = template_classify(test.images, means, center=center)
    fb = feed_back(model, ci.images)
    return {"ci_accuracy": float((ci_pred == test.labels).double().mean()),
            "mean_accuracy": float((mean_pred == test.labels).double().mean()),
            "chance": 1.0 / k,
            "ci_confusion": confusion_matrix(test.labels, ci_pred.clamp_min(0), k),
            "mean_confusion": confusion_matrix(test.labels, mean_pred, k),
            "feedback": fb, "feedback_diagonal": int((fb == torch.arange(k)).sum()),
            "templates_used": int(valid.sum())}


def overview_row(arch: str, dataset: str, profile: Profile | str | None = None) -> dict[str, object]:
    """One row of the results overview: accuracy, noise-bias entropy, CI-template accuracy,
    CI fed-back diagonal, first-layer STA-filter correlation (CNNs only)."""
    prof = _profile(profile)
    model, meta = trained(arch, dataset, prof)
    ci = study_ci(arch, dataset, prof)
    rep = template_report(arch, dataset, prof)
    row: dict[str, object] = {
        "model": arch, "dataset": dataset, "test_accuracy": meta["test_accuracy"],
        "noise_entropy_bits": ci.entropy, "top_noise_class": int(ci.counts.argmax()),
        "top_noise_share": float(ci.proportions.max()), "ci_template_accuracy": rep["ci_accuracy"],
        "mean_template_accuracy": rep["mean_accuracy"], "feedback_diagonal": rep["feedback_diagonal"],
        "sta_filter_r": float("nan"), "n_noise": ci.n_samples}
    if arch in CNN_NAMES:
        sta = study_sta(arch, dataset, "conv1", prof)
        row["sta_filter_r"] = float(filter_correlation(sta.pooled, model.conv1.weight).nanmean())
    return row




# ---------------------------------------------------------------------------
# Convergence with n, and biasing with classification images (chapters 03-05).
# Added at the end of the module; nothing above depends on it.
# ---------------------------------------------------------------------------

import math  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402
from typing import Sequence  # noqa: E402

import torch.distributed as _dist  # noqa: E402

from .activations import ActivationAccumulator  # noqa: E402
from .analysis import bias_curve  # noqa: E402
from .ci import CIAccumulator  # noqa: E402
from .kernel import Accumulator, check_n_samples, run_engine  # noqa: E402
from .noise import NoiseSource  # noqa: E402
from .sta import STAAccumulator, receptive_field  # noqa: E402

__all__ += ["geometric_sizes", "PrefixSnapshots", "CIConvergence", "ci_convergence", "STAConvergence",
            "sta_convergence", "study_ci_convergence", "study_sta_convergence", "bias_directions",
            "bias_inputs", "study_bias", "mix_gammas", "study_ci_mixing", "side_samples", "mix_samples",
            "convergence_sizes", "first_reaching", "feedback_matrix", "activation_similarity", "environment_info",
            "noise_bias", "class_correlation", "stable_from",
            "activation_specificity", "overview_rows"]


def geometric_sizes(n_final: int, start: int = 500, factor: float = 2.0) -> list[int]:
    """Sample counts ``start, start*factor, ...`` below ``n_final``, then ``n_final`` itself.

    Args:
        n_final: the last (largest) size.
        start: the first size (clipped to ``n_final``); default 500.
        factor: ratio between sizes (> 1); default 2.

    Returns:
        Strictly increasing ints ending with ``n_final``.

    Raises:
        ValueError: ``n_final`` or ``start`` not positive, or ``factor <= 1``.
    """
    n_final, start = check_n_samples(n_final), check_n_samples(start)
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    sizes: list[int] = []
    s = float(min(start, n_final))
    while round(s) < n_final:
        if not sizes or round(s) > sizes[-1]:
            sizes.append(int(round(s)))
        s *= factor
    return sizes + [n_final]


class PrefixSnapshots(Accumulator):
    """Wraps another accumulator and copies its totals after the first ``n`` samples, for each ``n`` in ``sizes``.

    The engine's sample ``i`` is the same for every run length (counter-based seeding), so the
    snapshot at ``n`` equals (up to float64 summation order) what a run of ``n`` samples gives:
    one pass of ``max(sizes)`` samples yields the whole convergence series. Batches are split at the
    boundaries. Single process only (with ``torch.distributed`` ranks see interleaved chunks), and
    not resumable from a checkpoint.
    """

    def __init__(self, inner: Accumulator, sizes: list[int]) -> None:
        super().__init__()
        if list(sizes) != sorted(set(sizes)) or not sizes or sizes[0] <= 0:
            raise ValueError(f"sizes must be strictly increasing positive integers, got {sizes!r}")
        self.inner, self.sizes = inner, [int(s) for s in sizes]
        self.taps, self.needs_logits = inner.taps, inner.needs_logits
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.seen = 0

    def describe(self):  # noqa: D102
        return {**super().describe(), "inner": self.inner.describe(), "sizes": self.sizes}

    def setup(self, num_classes, input_shape, device, tap_shapes):  # noqa: D102
        self.inner.setup(num_classes, input_shape, device, tap_shapes)
        self.acc = self.inner.acc  # the engine checkpoints and reduces the running totals

    def _feed(self, lo, hi, x, logits, taps, labels) -> None:
        if hi > lo:
            self.inner.update(x[lo:hi], None if logits is None else logits[lo:hi], {t: v[lo:hi] for t, v in taps.items()},
                              None if labels is None else labels[lo:hi])

    def update(self, x, logits, taps, labels):  # noqa: D102
        start, end, lo = self.seen, self.seen + len(x), 0
        while len(self.snapshots) < len(self.sizes) and self.sizes[len(self.snapshots)] <= end:
            cut = self.sizes[len(self.snapshots)] - start
            self._feed(lo, cut, x, logits, taps, labels)
            lo = cut
            self.snapshots.append({k: v.detach().cpu().clone() for k, v in self.inner.acc.items()})
        self._feed(lo, len(x), x, logits, taps, labels)
        self.seen = end


def _run_prefixes(model: nn.Module, inners: Accumulator | list[Accumulator], sizes: list[int], source: NoiseSource,
                  input_shape: tuple[int, ...], batch_size: int | None, progress: bool,
                  desc: str, extra: Sequence[Accumulator] = ()) -> list[dict] | list[list[dict]]:
    """Snapshots of one accumulator (a list of dicts) or of several in one pass (a list per accumulator).

    ``extra`` accumulators ride along on the same pass without snapshots (their totals are in them).
    """
    if _dist.is_available() and _dist.is_initialized() and _dist.get_world_size() > 1:
        raise RuntimeError("prefix snapshots need a single process (ranks see interleaved chunks)")
    many = isinstance(inners, list)
    snaps = [PrefixSnapshots(a, sizes) for a in (inners if many else [inners])]  # type: ignore[union-attr]
    run_engine(model, source, sizes[-1], [*snaps, *extra], input_shape=input_shape, batch_size=batch_size,
               progress=progress, desc=desc)
    for snap in snaps:
        if len(snap.snapshots) != len(sizes):  # cannot happen in one process; guard anyway
            raise RuntimeError(f"expected {len(sizes)} snapshots, got {len(snap.snapshots)}")
    return [snap.snapshots for snap in snaps] if many else snaps[0].snapshots


def _checked_sizes(sizes: list[int] | tuple[int, ...]) -> list[int]:
    out = [check_n_samples(s) for s in sizes]
    if not out or out != sorted(set(out)):
        raise ValueError(f"sizes must be strictly increasing positive integers, got {list(sizes)!r}")
    return out


@_dataclass
class CIConvergence:
    """Classification images after the first ``n`` noise samples, for each ``n`` in ``sizes``.

    Attributes:
        sizes: the sample counts ``(S,)``; the last is the final run length.
        counts: int64 ``(S, K)``: samples predicted as each class within the first ``n``.
        sums: float64 ``(S, K, *input_shape)``: per-class sums of those samples.
        sumsq: float64 ``(S, K, *input_shape)``: per-class sums of squares.
        noise: parameters of the noise.
    """

    sizes: list[int]
    counts: torch.Tensor
    sums: torch.Tensor
    sumsq: torch.Tensor
    noise: dict

    @property
    def images(self) -> torch.Tensor:
        """``(S, K, *input_shape)``: the CI at each size (NaN for a class without samples yet)."""
        return self.sums / self.counts.double().view(*self.counts.shape, *([1] * (self.sums.dim() - 2)))

    def snapshot(self, n: int) -> ClassificationImages:
        """The :class:`ClassificationImages` of the first ``n`` samples (``n`` must be one of ``sizes``)."""
        if n not in self.sizes:
            raise ValueError(f"n={n} is not one of the sizes {self.sizes}")
        i = self.sizes.index(n)
        return ClassificationImages(images=self.images[i], counts=self.counts[i], n_samples=int(n),
                                    sums=self.sums[i], sumsq=self.sumsq[i], noise=dict(self.noise))

    def correlation_with_final(self) -> torch.Tensor:
        """Pearson r ``(S, K)`` of each class's CI at size ``n`` with its CI at the final size.

        NaN where the class has fewer than two samples at ``n`` or none at the end. The last row
        is 1 for every class with at least two samples.
        """
        imgs = self.images.reshape(len(self.sizes), self.counts.shape[1], -1)
        final = imgs[-1]
        x = imgs - imgs.mean(-1, keepdim=True)
        f = final - final.mean(-1, keepdim=True)
        r = (x * f).sum(-1) / (x.norm(dim=-1) * f.norm(dim=-1))
        r[self.counts < 2] = float("nan")
        r[:, self.counts[-1] < 2] = float("nan")
        return r

    def null_correlation(self) -> torch.Tensor:
        """``(S,)``: ``sqrt(n / N)``, the expected correlation with the final CI of a CI that holds no
        signal at all (pure noise): the first ``n`` samples are shared with the final ``N``. A CI whose
        curve lies on this line tells nothing about the model."""
        return (torch.tensor(self.sizes, dtype=torch.float64) / self.sizes[-1]).sqrt()

    def class_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every (class, size) before the final one as a point ``(N_c at that size, r with the final CI)``,
        NaN dropped, sorted by ``N_c``: how the agreement grows with the samples a class received."""
        r = self.correlation_with_final()[:-1].flatten()
        n = self.counts[:-1].flatten().double()
        ok = ~torch.isnan(r)
        order = torch.argsort(n[ok])
        return n[ok][order], r[ok][order]

    def mean_correlation(self) -> torch.Tensor:
        """``(S,)``: the per-class correlations averaged with the final class counts as weights
        (classes the model (almost) never predicts do not count)."""
        r = self.correlation_with_final()
        w = self.counts[-1].double()
        ok = ~torch.isnan(r)
        return torch.where(ok, r, 0.0).mul(w).sum(1) / (ok.double() * w).sum(1)


def ci_convergence(model: nn.Module, sizes: list[int] | tuple[int, ...], *, noise: str = "gaussian",
                   seed: int = 0, input_shape: tuple[int, ...] = (1, 28, 28), batch_size: int | None = None,
                   progress: bool = False) -> CIConvergence:
    """Classification images after the first ``n`` samples for every ``n`` in ``sizes``, in one run.

    Args:
        model: classifier (left as found).
        sizes: strictly increasing sample counts, e.g. :func:`geometric_sizes`; costs ``max(sizes)`` samples.
        noise: ``"gaussian"`` (N(0, 1)) or ``"uniform"`` ([0, 1]); default gaussian.
        seed: default 0; with the same seed, the snapshot at ``n`` matches
            ``classification_images(model, n, seed=seed)``.
        input_shape: default ``(1, 28, 28)``.
        batch_size: default the engine's.
        progress: default False.

    Returns:
        :class:`CIConvergence`.
    """
    sizes = _checked_sizes(sizes)
    source = NoiseSource(kind=noise, seed=seed)
    snaps = _run_prefixes(model, CIAccumulator(), sizes, source, input_shape, batch_size, progress,
                          "CI convergence")
    k = len(snaps[0]["counts"])
    return CIConvergence(sizes=sizes, counts=torch.stack([s["counts"] for s in snaps]),
                         sums=torch.stack([s["sums"] for s in snaps]).view(len(sizes), k, *input_shape),
                         sumsq=torch.stack([s["sumsq"] for s in snaps]).view(len(sizes), k, *input_shape),
                         noise=source.describe())


@_dataclass
class STAConvergence:
    """Spike-triggered averages of one conv layer after the first ``n`` samples, for each ``n`` in ``sizes``.

    Attributes:
        layer: the conv layer.
        sizes: sample counts ``(S,)``.
        center: float64 ``(S, K, C, h, w)``: centre-unit STA at each size (NaN where it never fired).
        pooled: float64 ``(S, K, C, h, w)``: STA pooled over positions at each size.
        center_weight: float64 ``(S, K)``: total activation of the centre unit.
        pooled_weight: float64 ``(S, K)``: total activation over the pooled positions.
        act_sum: float64 ``(S, K)``: total activation over every position.
        rf: the layer's :class:`~wna_helpers.sta.ReceptiveField`.
        positions: positions pooled per channel.
        stimulus: parameters of the noise.
    """

    layer: str
    sizes: list[int]
    center: torch.Tensor
    pooled: torch.Tensor
    center_weight: torch.Tensor
    pooled_weight: torch.Tensor
    act_sum: torch.Tensor
    rf: object
    positions: int
    stimulus: dict

    def snapshot(self, n: int) -> SpikeTriggeredAverage:
        """The :class:`~wna_helpers.sta.SpikeTriggeredAverage` of the first ``n`` samples (one of ``sizes``)."""
        if n not in self.sizes:
            raise ValueError(f"n={n} is not one of the sizes {self.sizes}")
        i = self.sizes.index(n)
        oh, ow = self.rf.out_shape  # type: ignore[attr-defined]
        return SpikeTriggeredAverage(layer=self.layer, center=self.center[i], pooled=self.pooled[i],
                                     center_weight=self.center_weight[i], pooled_weight=self.pooled_weight[i],
                                     mean_activation=self.act_sum[i] / (n * oh * ow), rf=self.rf,  # type: ignore[arg-type]
                                     positions=self.positions, n_samples=int(n), stimulus=dict(self.stimulus))

    def filter_correlation(self, weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per size and channel, Pearson r of the centre and pooled STAs with the filters ``weight``.

        Returns:
            ``{"center": (S, K), "pooled": (S, K)}`` float64 (NaN for a channel that never fired).
        """
        w = weight.detach().cpu()
        return {kind: torch.stack([filter_correlation(s, w) for s in getattr(self, kind)])
                for kind in ("center", "pooled")}

    def correlation_with_final(self) -> dict[str, torch.Tensor]:
        """Per size and channel, Pearson r of the centre and pooled STAs with the *pooled* STA at the final size."""
        final = self.pooled[-1]
        return {kind: torch.stack([filter_correlation(s, final) for s in getattr(self, kind)])
                for kind in ("center", "pooled")}


def sta_convergence(model: nn.Module, layer: str | Sequence[str], sizes: list[int] | tuple[int, ...], *,
                    seed: int = 0, input_shape: tuple[int, ...] = (1, 28, 28), batch_size: int | None = None,
                    progress: bool = False) -> STAConvergence | dict[str, STAConvergence]:
    """Centre and pooled STAs of conv ``layer`` after the first ``n`` Gaussian samples, for every ``n`` in ``sizes``.

    One run of ``max(sizes)`` samples (for several layers too); the snapshot at ``n`` matches
    ``spike_triggered_average(model, layer, n, seed=seed)`` up to float32 rounding.

    Args:
        layer: one conv layer name, or several (one pass serves them all).

    Returns:
        :class:`STAConvergence` for one layer name, a dict layer -> :class:`STAConvergence` for a sequence.

    Raises:
        ValueError: a layer is not a conv layer of the model, or bad sizes.
    """
    out, _ = _sta_convergence(model, layer, sizes, seed=seed, input_shape=input_shape, batch_size=batch_size,
                              progress=progress)
    return out[layer] if isinstance(layer, str) else out


def _sta_convergence(model: nn.Module, layer: str | Sequence[str], sizes: list[int] | tuple[int, ...], *,
                     seed: int, input_shape: tuple[int, ...], batch_size: int | None, progress: bool,
                     activation_layers: Sequence[str] | None = None
                     ) -> tuple[dict[str, STAConvergence], ActivationStatistics | None]:
    """:func:`sta_convergence`, plus (optionally) the noise activation statistics of ``activation_layers``
    grouped by predicted class from the same pass (what :func:`activation_statistics` gives for the same
    ``n = max(sizes)`` and seed)."""
    sizes = _checked_sizes(sizes)
    layers = [layer] if isinstance(layer, str) else list(layer)
    modules = dict(model.named_modules())
    for name in layers:
        if not isinstance(modules.get(name), nn.Conv2d):
            raise ValueError(f"{name!r} is not a conv layer; conv layers: {conv_layer_names(model)}")
    inners = [STAAccumulator(name, receptive_field(model, name, input_shape), tuple(input_shape)) for name in layers]
    source = NoiseSource(seed=seed)
    act = ActivationAccumulator(list(activation_layers), "prediction") if activation_layers else None
    all_snaps = _run_prefixes(model, inners, sizes, source, input_shape, batch_size, progress,
                              f"STA convergence {', '.join(layers)}", extra=[act] if act is not None else [])
    out: dict[str, STAConvergence] = {}
    for name, inner, snaps in zip(layers, inners, all_snaps):
        shape = (-1, input_shape[0], *inner.rf.size)

        def stack(num: str, den: str, snaps: list[dict] = snaps, shape: tuple = shape) -> torch.Tensor:
            return torch.stack([(s[num] / s[den][:, None]).view(shape) for s in snaps])
        out[name] = STAConvergence(layer=name, sizes=sizes, center=stack("center_num", "center_den"),
                                   pooled=stack("pooled_num", "pooled_den"),
                                   center_weight=torch.stack([s["center_den"] for s in snaps]),
                                   pooled_weight=torch.stack([s["pooled_den"] for s in snaps]),
                                   act_sum=torch.stack([s["act_sum"] for s in snaps]), rf=inner.rf,
                                   positions=len(inner.rows) * len(inner.cols), stimulus=source.describe())
    stats = None
    if act is not None:  # as activation_statistics finishes its accumulator
        counts = act.acc["counts"].cpu()
        div = counts.double()[:, None]
        means = {t: (act.acc[f"sum:{t}"].cpu() / div).view(len(counts), *act.shapes[t]) for t in act.taps}
        stats = ActivationStatistics(means=means, counts=counts, group_by="prediction", n_samples=sizes[-1],
                                     stimulus=source.describe())
    return out, stats


def convergence_sizes(arch: str, profile: Profile | str | None = None,
                      device: torch.device | str | None = None) -> list[int]:
    """Default sizes of the CI convergence series: :func:`geometric_sizes` up to the profile's
    ``noise_samples(arch)`` from ``profile.extra["convergence_start"]`` (default 500), plus
    :func:`side_samples` and the mixing size, so that those CIs come from the same run."""
    prof = _profile(profile)
    n = prof.noise_samples(arch, device)
    sizes = geometric_sizes(n, int(prof.extra.get("convergence_start", 500)))  # type: ignore[call-overload]
    extra = [side_samples(arch, prof, device=device), mix_samples(arch, prof, device=device)]
    return sorted(set(sizes + [m for m in extra if m <= n]))


def side_samples(arch: str, profile: Profile | str | None = None, key: str = "side_fraction",
                 default_fraction: float = 0.25, device: torch.device | str | None = None) -> int:
    """Noise samples for side experiments (uniform noise).

    ``profile.extra[key]`` (a fraction of :meth:`Profile.noise_samples`) if present, else
    ``default_fraction``; at least 1,000 samples.
    """
    prof = _profile(profile)
    frac = float(prof.extra.get(key, default_fraction))  # type: ignore[arg-type]
    return max(1000, int(round(frac * prof.noise_samples(arch, device))))


def mix_samples(arch: str, profile: Profile | str | None = None, device: torch.device | str | None = None) -> int:
    """Noise samples per gamma of the noise-plus-signal experiment: ``profile.extra["mix_fraction"]``
    (default 0.125) of :meth:`Profile.noise_samples`, at least 1,000."""
    return side_samples(arch, profile, "mix_fraction", 0.125, device)


def study_ci_convergence(arch: str, dataset: str, profile: Profile | str | None = None, *,
                         noise: str = "gaussian", sizes: list[int] | None = None, refresh: bool = False,
                         progress: bool = False) -> CIConvergence:
    """:func:`ci_convergence` of the trained ``arch`` on ``dataset``, cached.

    Every snapshot is stored as the :func:`study_ci` result of its ``n`` when that is not cached
    yet (it is exactly that result), so calling this first makes ``study_ci(arch, dataset)`` and
    ``study_ci(..., n_samples=side_samples(arch))`` free.

    Args:
        sizes: default :func:`convergence_sizes`.
    """
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = next(model.parameters()).device
    if sizes is None:
        sizes = convergence_sizes(arch, prof, dev)
    sizes = _checked_sizes(sizes)
    params = {"noise": noise, "sizes": sizes, "seed": prof.seed, "device": dev.type}
    conv = _cached("ciconv", arch, dataset, prof, params,
                   lambda: ci_convergence(model, sizes, noise=noise, seed=prof.seed, batch_size=prof.noise_batch,
                                          progress=progress), refresh)
    # every snapshot is exactly what study_ci computes for that n: store the ones it has not cached yet
    for n in conv.sizes:
        ci_params = {"noise": noise, "n": n, "gamma": 0.0, "seed": prof.seed, "device": dev.type}
        _cached("ci", arch, dataset, prof, ci_params, lambda n=n: conv.snapshot(n))
    return conv


def study_sta_convergence(arch: str, dataset: str, profile: Profile | str | None = None, *,
                          layers: Sequence[str] | None = None, sizes: list[int] | None = None,
                          refresh: bool = False, progress: bool = False) -> dict[str, STAConvergence]:
    """:func:`sta_convergence` of the trained ``arch`` on ``dataset`` for several conv layers in one pass, cached.

    The final snapshot of each layer is exactly :func:`study_sta`'s noise STA at that ``n``; it is
    stored as that result when not cached yet, so ``study_sta(arch, dataset, layer)`` is then free.
    With the default sizes the same pass also computes the noise activation maps of every conv
    layer and stores them as :func:`study_activations`' noise result.

    Args:
        layers: default the first and the last conv layer.
        sizes: default :func:`geometric_sizes` up to the profile's ``sta_samples(arch)``
            from ``profile.extra["sta_convergence_start"]`` (default 16: pooled first-layer STAs
            are close to the filter after a few hundred samples already).

    Returns:
        layer -> :class:`STAConvergence`.
    """
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = next(model.parameters()).device
    convs = conv_layer_names(model)
    layers = list(layers) if layers is not None else list(dict.fromkeys([convs[0], convs[-1]]))
    if sizes is None:
        sizes = geometric_sizes(prof.sta_samples(arch, dev), int(prof.extra.get("sta_convergence_start", 16)))  # type: ignore[call-overload]
    sizes = _checked_sizes(sizes)
    n = sizes[-1]
    # the noise activation maps of every conv layer ride along when n is study_activations' default
    act_layers = convs if n == prof.sta_samples(arch, dev) else None
    params = {"layers": layers, "sizes": sizes, "seed": prof.seed, "device": dev.type, "activations": act_layers}

    def compute() -> dict[str, object]:
        out, stats = _sta_convergence(model, layers, sizes, seed=prof.seed, input_shape=(1, 28, 28),
                                      batch_size=prof.noise_batch, progress=progress, activation_layers=act_layers)
        return {"sta": out, "activations": stats}
    value = _cached("staconv", arch, dataset, prof, params, compute, refresh)
    out: dict[str, STAConvergence] = value["sta"]  # type: ignore[assignment]
    for layer, conv in out.items():
        sta_params = {"layer": layer, "stimulus": "noise", "n": n, "seed": prof.seed, "device": dev.type}
        _cached("sta", arch, dataset, prof, sta_params, lambda conv=conv: conv.snapshot(n))
    if value["activations"] is not None:
        act_params = {"layers": act_layers, "stimulus": "noise", "n": n, "seed": prof.seed, "device": dev.type}
        _cached("act", arch, dataset, prof, act_params, lambda: value["activations"])
    return out


def bias_directions(images: torch.Tensor, *, center: bool = True, rms: float = 1.0) -> torch.Tensor:
    """Classification images as perturbation directions of a fixed size.

    Each image (optionally minus the mean over classes, which removes what all CIs share;
    skipped when fewer than two classes have a CI, as it would leave nothing) is scaled to a root-mean-square pixel value of ``rms``, so ``gamma`` in
    ``x + gamma * direction`` is in pixel units (the noise has std 1, images lie in [0, 1]).

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


def bias_inputs(arch: str, profile: Profile | str | None = None) -> int:
    """Inputs per stimulus kind of the biasing experiment: ``profile.extra["bias_inputs"]`` if set,
    else ``min(n_real, max(50, noise_samples(arch) // 200))`` (quick: 100, heavy models 50)."""
    prof = _profile(profile)
    if prof.extra.get("bias_inputs"):
        return int(prof.extra["bias_inputs"])  # type: ignore[call-overload]
    return int(min(prof.n_real, max(50, prof.noise_samples(arch) // 200)))


def study_bias(arch: str, dataset: str, profile: Profile | str | None = None, *,
               gammas: list[float] | None = None, n_inputs: int | None = None, noise: str = "gaussian",
               center: bool = True, refresh: bool = False) -> dict[str, object]:
    """Bias the trained ``arch`` toward each class by adding ``gamma * direction_c`` to inputs.

    ``direction_c`` is the class's classification image from :func:`study_ci`, mean-centred over
    classes and scaled to RMS 1 (:func:`bias_directions`). Inputs are the first ``n_inputs`` test
    images and ``n_inputs`` Gaussian N(0, 1) noise images (seeded by the profile's seed). The
    shares at ``gamma = 0`` come from one unbiased pass; the others from
    :func:`~wna_helpers.analysis.bias_curve`.

    Args:
        gammas: default ``profile.extra["bias_gammas"]`` or ``[0, 0.05, 0.1, 0.2, 0.4, 0.8]``.
        n_inputs: default :func:`bias_inputs`.
        noise: noise kind of the classification images; default gaussian.
        center: mean-centre the CIs over classes first; default True.

    Returns:
        dict with ``gammas`` (list), ``test`` and ``noise``: float64 ``(G, K)``: share of the inputs
        predicted as class ``c`` after adding ``gamma * direction_c`` (NaN for a class without a CI);
        ``test_mean`` and ``noise_mean`` ``(G,)``: averaged over the classes that have a CI;
        ``n_inputs``.
    """
    prof = _profile(profile)
    model, _ = trained(arch, dataset, prof)
    dev = next(model.parameters()).device
    gammas = [float(g) for g in (gammas or prof.extra.get("bias_gammas") or [0.0, 0.05, 0.1, 0.2, 0.4, 0.8])]
    n = int(n_inputs or bias_inputs(arch, prof))
    params = {"gammas": gammas, "n": n, "noise": noise, "center": center, "seed": prof.seed, "device": dev.type}

    def compute() -> dict[str, object]:
        ci = study_ci(arch, dataset, prof, noise=noise, progress=False)
        dirs = bias_directions(ci.images, center=center)
        k = ci.num_classes
        test = load_dataset(dataset, "test", limit=n).images
        gen = torch.Generator().manual_seed(prof.seed)
        noise_in = torch.randn((n, *test.shape[1:]), generator=gen)
        nonzero = [g for g in gammas if g != 0.0]
        out: dict[str, object] = {"gammas": gammas, "n_inputs": n}
        for name, inputs in (("test", test), ("noise", noise_in)):
            share = torch.full((len(gammas), k), float("nan"), dtype=torch.float64)
            if len(nonzero) < len(gammas):  # gamma = 0: one pass serves every class
                pred = torch.cat([feed_back(model, inputs[i:i + 1000]) for i in range(0, len(inputs), 1000)])
                base = torch.bincount(pred, minlength=k).double() / len(inputs)
                share[[i for i, g in enumerate(gammas) if g == 0.0]] = base
            for c in range(k):
                if torch.isnan(dirs[c]).any():
                    share[:, c] = float("nan")
                    continue
                if nonzero:
                    share[[i for i, g in enumerate(gammas) if g != 0.0], c] = bias_curve(model, inputs, dirs[c], c,
                                                                                       nonzero)
            out[name] = share
            out[f"{name}_mean"] = share.nanmean(1)
        return out
    return _cached("bias", arch, dataset, prof, params, compute, refresh)


def mix_gammas(profile: Profile | str | None = None) -> list[float]:
    """The signal weights of the noise-plus-signal experiment: ``profile.extra["mix_gammas"]``
    or ``[0.1, 0.3, 0.5]``."""
    prof = _profile(profile)
    return [float(g) for g in (prof.extra.get("mix_gammas") or [0.1, 0.3, 0.5])]  # type: ignore[union-attr]


def study_ci_mixing(arch: str, dataset: str, profile: Profile | str | None = None, *,
                    gammas: list[float] | None = None, n_samples: int | None = None,
                    progress: bool = False) -> dict[float, ClassificationImages]:
    """Classification images from ``(1 - gamma) * noise + gamma * training image``, per gamma.

    Args:
        gammas: default :func:`mix_gammas`.
        n_samples: default :func:`mix_samples` of ``arch``.

    Returns:
        gamma -> :class:`ClassificationImages` (each cached by :func:`study_ci`).
    """
    prof = _profile(profile)
    n = int(n_samples or mix_samples(arch, prof))
    return {g: study_ci(arch, dataset, prof, gamma=g, n_samples=n, progress=progress)
            for g in (gammas or mix_gammas(prof))}


def first_reaching(x: list[float] | torch.Tensor, values: list[float] | torch.Tensor, level: float) -> float:
    """The first ``x`` at which ``values`` reaches ``level`` (``values[i] >= level``); NaN if never.

    Args:
        x: increasing positions (sample counts, gammas).
        values: one value per position (NaN counts as not reached).
        level: the threshold.
    """
    for xi, v in zip(torch.as_tensor(x, dtype=torch.float64).tolist(),
                     torch.as_tensor(values, dtype=torch.float64).tolist()):
        if v == v and v >= level:
            return float(xi)
    return float("nan")


def feedback_matrix(feedback: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The fed-back 10x10 matrix: row ``c`` (the class the CI came from) has a 1 in the column of
    the model's answer on ``CI_c``; a class without a CI (answer -1) gets an empty row.

    Returns:
        int64 ``(K, K)``.
    """
    fb = torch.as_tensor(feedback).long().cpu()
    k = int(num_classes or len(fb))
    m = torch.zeros(k, k, dtype=torch.int64)
    rows = torch.nonzero(fb >= 0).flatten()
    m[rows, fb[rows]] = 1
    return m


def activation_similarity(real: ActivationStatistics, noise: ActivationStatistics, layer: str) -> torch.Tensor:
    """Per class, Pearson r between the mean activation of ``layer`` over real images of the class
    and over the noise the model assigned to it. NaN for a class without noise samples.

    Returns:
        float64 ``(K,)``.
    """
    a = real.means[layer].reshape(len(real.counts), -1).double()
    b = noise.means[layer].reshape(len(noise.counts), -1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    r[(noise.counts == 0) | (real.counts == 0)] = float("nan")
    return r


def environment_info() -> dict[str, str]:
    """Versions of Python and the libraries the book uses, the device and the CPU threads."""
    import importlib.metadata as md
    import platform

    info = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "jupyter-book", "myst-nb",
                "nbmake", "wna-helpers"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    dev = default_device()
    info["device"] = str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    info["cpu threads (torch)"] = str(torch.get_num_threads())
    info["cpus"] = str(os.cpu_count())
    return info


def noise_bias(ci: ClassificationImages, classes: Sequence[str], min_share: float = 0.01) -> dict[str, object]:
    """Where a model sends pure noise: the top class, its share, the entropy, and the classes reached.

    Args:
        ci: classification images (their ``counts``).
        classes: class names.
        min_share: a class counts as reached with at least this share; default 1 %.

    Returns:
        dict with ``top_class`` (name), ``top_share``, ``entropy_bits``, ``max_entropy_bits``,
        ``classes_reached`` (int), ``empty_classes`` (names of the classes without any sample), ``n``.
    """
    p = ci.proportions
    top = int(ci.counts.argmax())
    return {"top_class": classes[top], "top_share": float(p[top]), "entropy_bits": ci.entropy,
            "max_entropy_bits": math.log2(ci.num_classes), "classes_reached": int((p >= min_share).sum()),
            "empty_classes": [classes[c] for c in range(ci.num_classes) if int(ci.counts[c]) == 0],
            "n": ci.n_samples}


def class_correlation(x: torch.Tensor, y: torch.Tensor, counts: torch.Tensor | Sequence[torch.Tensor] | None = None,
                      min_count: int = 50) -> torch.Tensor:
    """Per class, Pearson r between ``x[c]`` and ``y[c]`` (e.g. a CI and the class mean, or the
    Gaussian and the uniform CI). NaN where either is NaN or a count is below ``min_count``.

    Args:
        x, y: ``(K, ...)``.
        counts: ``(K,)`` samples behind each class, or several such tensors (the smallest counts);
            default no count filter.
        min_count: default 50 (a CI from fewer samples is mostly noise).

    Returns:
        float64 ``(K,)``.
    """
    a = x.reshape(len(x), -1).double()
    b = y.reshape(len(y), -1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    r = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    if counts is not None:
        cs = [counts] if isinstance(counts, torch.Tensor) else list(counts)
        low = torch.stack([torch.as_tensor(c) for c in cs]).min(0).values
        r[low < min_count] = float("nan")
    return r


def stable_from(x: list[float] | torch.Tensor, values: list[float] | torch.Tensor, level: float) -> float:
    """The smallest ``x`` from which on every value is at least ``level`` (points sorted by ``x``);
    NaN when the last value is below ``level`` or there are no points.

    Unlike :func:`first_reaching`, one lucky early point does not count.
    """
    xs = torch.as_tensor(x, dtype=torch.float64)
    vs = torch.as_tensor(values, dtype=torch.float64)
    order = torch.argsort(xs, stable=True)
    xs, vs = xs[order].tolist(), vs[order].tolist()
    out = float("nan")
    for xi, v in zip(reversed(xs), reversed(vs)):
        if not (v == v and v >= level):
            break
        out = float(xi)
    return out


def activation_specificity(real: ActivationStatistics, noise: ActivationStatistics, layer: str) -> dict[str, float]:
    """Is the match between noise and real activations class-specific?

    Correlates the mean activation of ``layer`` over the noise called ``c`` with the mean over real
    images of every class ``c'``.

    Returns:
        ``same``: mean r for ``c' = c``; ``other``: mean r for ``c' != c``; ``matched``: share of the
        noise classes whose most similar real class is their own. Over the classes that received noise.
    """
    from .analysis import correlation_matrix

    m = correlation_matrix(noise.means[layer], real.means[layer])  # (K noise, K real)
    ok = (noise.counts > 0).nonzero().flatten()
    if len(ok) == 0:
        return {"same": float("nan"), "other": float("nan"), "matched": float("nan")}
    sub = m[ok]
    same = sub[torch.arange(len(ok)), ok]
    mask = torch.ones_like(sub, dtype=torch.bool)
    mask[torch.arange(len(ok)), ok] = False
    return {"same": float(same.mean()), "other": float(sub[mask].mean()),
            "matched": float((sub.argmax(1) == ok).double().mean())}


def overview_rows(profile: Profile | str | None = None, models: Sequence[str] | None = None,
                  datasets: Sequence[str] | None = None) -> list[dict[str, object]]:
    """:func:`overview_row` for every model and dataset (datasets outer), each with ``cis`` added:
    the number of classes that have a classification image (received at least one noise sample)."""
    from .data import dataset_names
    from .models import model_names

    prof = _profile(profile)
    rows = []
    for d in datasets or dataset_names():
        for a in models or model_names():
            row = overview_row(a, d, prof)
            row["cis"] = int((study_ci(a, d, prof, progress=False).counts > 0).sum())
            rows.append(row)
    return rows
