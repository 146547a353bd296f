"""Every costly setting of the project, in one place (nanoGPT style); imports only the engine.

Two profiles exist: ``quick`` (tests, CI, laptops: minutes for the whole book)
and ``full`` (the numbers the book reports). Pick one with the environment
variable ``WNA_PROFILE``; the default is ``full``. The device follows
``WNA_DEVICE`` (``cpu``, ``cuda``, ``cuda:1`` ...) and defaults to CUDA when
it is present.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace

import torch

from .engine.places import cache_root, data_root, default_device

__all__ = ["Profile", "PROFILES", "SETTINGS", "ACCURACY_TARGETS", "get_profile", "default_device", "data_root",
           "cache_root"]


@dataclass(frozen=True)
class Profile:
    """Costly settings of one profile; every setting of the project is a field here.

    Attributes:
        name: a label (``"quick"``, ``"full"``); caches key on the settings, not on it.
        train_subset: number of training images used (``None``: all 60,000).
        epochs: training epochs, keyed by dataset name or ``"arch/dataset"`` (which wins);
            see :meth:`epochs_for`.
        batch_size: training batch size.
        lr: Adam learning rate; ``lr_overrides`` (keyed like ``epochs``) changes it for some pairs.
        seed: seed of training and of every noise run in the book.
        n_noise: noise samples per architecture (``"default"`` for the others) for classification
            images on CPU; ``n_noise_gpu`` is used instead on CUDA.
        n_sta: noise samples for spike-triggered averages and noise activation maps, per architecture, on CPU;
            ``n_sta_gpu`` on CUDA (default None: ``n_noise_gpu``).
        n_real: real (test) images used for real-data STAs and activation views.
        noise_batch: batch size of the white-noise engine (``None``: engine default).
        noise: the noise of the book's main runs, a shorthand (``"uniform"``: U[0, 1], the paper's and
            the range the models were trained on; ``"gaussian"``: N(0, 1)): the CIs and their convergence
            series, the templates, the STAs and the noise activation maps; default ``"uniform"``.
        lr_overrides: learning rates of some pairs; default none.
        side_fraction: the noise study (chapter 3) compares every noise kind at this fraction of
            ``noise_samples`` (the main noise's CIs at that ``n`` are snapshots of the main run); default 0.25.
        mix_fraction: each noise-plus-signal gamma (chapter 3) uses this fraction; default 0.125.
        mix_gammas: the signal weights of the noise-plus-signal CIs; default (0.1, 0.3, 0.5).
        bias_inputs: inputs per stimulus kind of the biasing experiment (chapter 4); default None:
            ``min(n_real, max(50, noise_samples // 200))``.
        bias_gammas: the weights of the biasing experiment; default (0, 0.05, 0.1, 0.2, 0.4, 0.8).
        gamma_inputs: base inputs (noise images, test images) per weight and class of the paper's
            gamma curves (chapter 8); default 500.
        snapshot_samples: noise samples per noise kind of the CIs of every training snapshot (chapter 8);
            default 10,000.
        convergence_start: first size of the CI convergence series; default 500.
        sta_convergence_start: first size of the STA convergence series; default 16.
        attack_images: test images of the black-box attacks (chapter 9; those of the target class are left
            out for each target); default 100.
        attack_l2: the L2 budgets of the additive attacks; default (0, 1, 2, 3, 4, 6, 8, 12).
        attack_linf: the L-infinity budgets of the additive attacks; default (0, 0.05, 0.1, 0.2, 0.3, 0.5).
        trojan_models: clean and trojaned ``paper_cnn`` models each of the detection study; default 2.
        trojan_epochs: training epochs of those models, by dataset (the profile's batch size and learning
            rate); default 1 each.
        trojan_samples: uniform and Gabor noise samples per model of the detection study on CPU;
            ``trojan_samples_gpu`` on CUDA (the paper's scale, 10^7); defaults 10,000 and 10^7.
        micro_ks: the inhibition multipliers k of the microstimulation curves; default (0, 10).
        micro_weights: the signal weights w of the psychometric curves; default 0, 0.1, ..., 1 (the full
            profile: 0, 0.05, ..., 1, the paper's 21).
        micro_trials: stimuli per weight of each psychometric curve; default 100.
        two_class_samples: trials per signal weight of the two-class design; default 5,000.
        stc_null_samples: the STC's null band (chapter 5): this many nulls that pair each window with the activations
            of another stimulus (:func:`~wna_helpers.methods.stc.spike_triggered_covariance`'s ``null_samples``);
            a null-like extreme eigenvalue leaves a band of ``S`` nulls with probability ``1 / (S + 1)`` per side;
            default 39.
        observer_weights: the signal weights of the simulated observer's two-alternative task (chapter 10); the
            main run uses the one whose accuracy lies nearest 75 %; default 0.02 to 0.3.
        observer_sweep_trials: trials per weight of that sweep; default 2,000.
        observer_trials: trials of the main run at the chosen weight; default 10,000.
        paper_seeds: ``paper_cnn`` networks trained the paper's way per dataset, one per seed (chapter 8 compares
            each paper number with their spread; :mod:`~wna_helpers.zoo.paper_recipe`); default 2.
        paper_epochs: their training epochs; default 15 (the paper's).

    Raises:
        TypeError: an unknown setting (the message lists the known ones).
    """

    name: str
    train_subset: int | None
    epochs: dict[str, int]
    batch_size: int
    lr: float
    seed: int
    n_noise: dict[str, int]
    n_noise_gpu: dict[str, int]
    n_sta: dict[str, int]
    n_real: int
    n_sta_gpu: dict[str, int] | None = None
    noise_batch: int | None = None
    noise: str = "uniform"
    lr_overrides: dict[str, float] = field(default_factory=dict)
    side_fraction: float = 0.25
    mix_fraction: float = 0.125
    mix_gammas: tuple[float, ...] = (0.1, 0.3, 0.5)
    bias_inputs: int | None = None
    bias_gammas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
    gamma_inputs: int = 500
    snapshot_samples: int = 10_000
    convergence_start: int = 500
    sta_convergence_start: int = 16
    attack_images: int = 100
    attack_l2: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
    attack_linf: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
    trojan_models: int = 2
    trojan_epochs: dict[str, int] = field(default_factory=lambda: {"mnist": 1, "fashion_mnist": 1})
    trojan_samples: int = 10_000
    trojan_samples_gpu: int = 10_000_000
    micro_ks: tuple[float, ...] = (0.0, 10.0)
    micro_weights: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    micro_trials: int = 100
    two_class_samples: int = 5_000
    stc_null_samples: int = 39
    observer_weights: tuple[float, ...] = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)
    observer_sweep_trials: int = 2_000
    observer_trials: int = 10_000
    paper_seeds: int = 2
    paper_epochs: int = 15

    def epochs_for(self, arch: str, dataset: str) -> int:
        """Training epochs of ``arch`` on ``dataset``."""
        return int(self.epochs.get(f"{arch}/{dataset}", self.epochs[dataset]))

    def lr_for(self, arch: str, dataset: str) -> float:
        """Adam learning rate of ``arch`` on ``dataset``."""
        return float(self.lr_overrides.get(f"{arch}/{dataset}", self.lr_overrides.get(arch, self.lr)))

    def noise_samples(self, arch: str, device: torch.device | str | None = None) -> int:
        """Noise samples for classification images of ``arch`` on ``device``."""
        dev = torch.device(device) if device is not None else default_device()
        table = self.n_noise_gpu if dev.type == "cuda" else self.n_noise
        return int(table.get(arch, table["default"]))

    def sta_samples(self, arch: str, device: torch.device | str | None = None) -> int:
        """Noise samples for spike-triggered averages of ``arch`` on ``device``."""
        dev = torch.device(device) if device is not None else default_device()
        if dev.type == "cuda":
            if self.n_sta_gpu is None:
                return self.noise_samples(arch, dev)
            return int(self.n_sta_gpu.get(arch, self.n_sta_gpu["default"]))
        return int(self.n_sta.get(arch, self.n_sta["default"]))

    def settings(self) -> dict[str, object]:
        """Every setting but the name, JSON-ready: what caches key on."""
        d = asdict(self)
        d.pop("name")
        return d

    def updated(self, **changes: object) -> "Profile":
        """A copy with some settings changed, e.g. ``prof.updated(epochs={"mnist": 2, "fashion_mnist": 2})``.

        Raises:
            TypeError: an unknown setting (the message lists the known ones).
        """
        return replace(self, **changes)  # type: ignore[arg-type]


SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(Profile))
_dataclass_init = Profile.__init__


def _checked_init(self: Profile, *args: object, **kwargs: object) -> None:
    unknown = sorted(set(kwargs) - set(SETTINGS))
    if unknown:
        raise TypeError(f"unknown profile setting(s) {unknown}; the settings are {list(SETTINGS)}")
    _dataclass_init(self, *args, **kwargs)  # type: ignore[arg-type]


Profile.__init__ = _checked_init  # type: ignore[method-assign]


_HEAVY = ("alexnet_small", "net3")

PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        train_subset=4000,
        epochs={"mnist": 1, "fashion_mnist": 1},
        batch_size=32,
        lr=1e-3,
        seed=0,
        n_noise={"default": 20_000, **{a: 5_000 for a in _HEAVY}},
        n_noise_gpu={"default": 100_000},
        n_sta={"default": 10_000, **{a: 2_500 for a in _HEAVY}},
        n_real=1000,
        paper_epochs=3,  # 4,000 images at batch 256: 48 steps
        # chapters 5, 8 and 9 at CI scale (they only have to run every code path): with the defaults their
        # gamma curves (500 inputs), trojan study (10^4 samples per model and kind), microstimulation (100
        # trials), STC nulls (39), snapshot CIs (10^4), two-class trials (5,000) and attacks (100 images) took
        # 50, 37, 19, 25, 14, 7 and 14 s of a cold quick build on this 2-core CPU (cProfile, 2026-12-04)
        gamma_inputs=100,
        trojan_samples=4_000,
        micro_trials=40,
        stc_null_samples=19,
        snapshot_samples=4_000,
        two_class_samples=2_000,
        attack_images=50,
    ),
    "full": Profile(
        name="full",
        train_subset=None,
        # about 50 min for all twelve CNN and dense pairs on a 2-core CPU, 4 more for the GRU (at 4 and 6
        # epochs it reached 96.4 % and 86.2 %, too close to its targets); cheap models get more epochs
        epochs={"mnist": 4, "fashion_mnist": 6, "lenet/mnist": 8, "alexnet_small/mnist": 3, "alexnet_small/fashion_mnist": 5,
                "mlp/mnist": 10, "mlp/fashion_mnist": 10, "logreg/mnist": 10, "logreg/fashion_mnist": 10,
                "lenet/fashion_mnist": 15, "gru/mnist": 8, "gru/fashion_mnist": 12},
        lr_overrides={"lenet/fashion_mnist": 2e-3},  # LeNet's average pooling learns slowly
        batch_size=128,
        lr=1e-3,
        seed=0,
        n_noise={"default": 1_000_000, **{a: 200_000 for a in _HEAVY}},
        n_noise_gpu={"default": 10_000_000},
        # STAs: 10^5 noise samples already give pooled first-layer STAs at r = 1.000 with the filters;
        # 2 x 10^5 (10^5 for the heavy CNNs) made chapter 5 take 26 minutes of the first full build
        n_sta={"default": 100_000, **{a: 50_000 for a in _HEAVY}},
        # on CUDA 10^6, ten times a CPU's: at n_noise_gpu's 10^7 the STA pass of chapter 5 ran over 250 s on an
        # H200 and did not finish within the device time (benchmarks/results/build_gpu.json), for STAs that
        # 10^5 samples already give at r = 1.000 with the filters
        n_sta_gpu={"default": 1_000_000},
        n_real=10_000,
        # 500 test images and 500 noise images per kind give each biasing share to about 2.2 %; 1,000 made
        # chapter 4 take 7.8 minutes of the cold full build of 2026-12-03 (AlexNet alone 3.6), the default
        # (n_noise / 200 = 5,000) 13 minutes of the first full build
        bias_inputs=500,
        # the noise study's four other kinds at 10 % of n (10^5 samples; 2 x 10^4 for the heavy CNNs), each
        # noise-plus-signal gamma at 5 % (defaults 25 % and 12.5 %): at 20 % the side runs took about 9 of
        # chapter 3's 21 minutes in the cold full build of 2026-12-03
        side_fraction=0.1,
        mix_fraction=0.05,
        # the gamma curves: 1,000 inputs per weight and class put each share within about 1.6 % (the paper
        # used 10,000); CIs of every training snapshot from 5 x 10^4 samples per noise kind (2,000 and
        # 10^5 took 9.3 of chapter 8's 15.6 minutes in the cold full build of 2026-12-03)
        gamma_inputs=1000,
        snapshot_samples=50_000,
        # chapter 9: 500 attacked images put each share within about 2.5 %; five clean, five trojaned and
        # five relabelled models per dataset (the minimum) at two epochs each (about 20 s per model
        # on a 2-core CPU), probed with 10^5 samples per noise kind on the CPU (2 x 10^5 took 15 of chapter
        # 9's 24 minutes in the cold full build of 2026-12-03; the trojaned models send 10-70 % of uniform
        # noise to the target, the clean ones under 0.1 %)
        attack_images=500,
        trojan_models=5,
        trojan_epochs={"mnist": 2, "fashion_mnist": 2},
        trojan_samples=100_000,
        micro_ks=(0.0, 2.0, 5.0, 10.0),
        micro_weights=tuple(round(0.05 * i, 2) for i in range(21)),
        # 21 weights x 100 trials per curve (200 made the microstimulation 4.3 minutes of that build)
        micro_trials=100,
        two_class_samples=50_000,
        # three networks per dataset trained the paper's way (15 epochs at batch 256, about 2 min each here)
        paper_seeds=3,
        # the simulated observer: 10,000 trials per weight of the sweep, 100,000 in the main run (a few seconds)
        observer_sweep_trials=10_000,
        observer_trials=100_000,
    ),
}


#: Test accuracy the full profile must reach, by (dataset, architecture) (``benchmarks/train_accuracy.py``
#: checks them). The recurrent ``gru``: the paper's RNN reached 96.36 % on MNIST.
ACCURACY_TARGETS: dict[tuple[str, str], float] = {
    **{("mnist", a): 0.99 for a in ("paper_cnn", "lenet", "alexnet_small", "net3")},
    ("mnist", "mlp"): 0.98, ("mnist", "logreg"): 0.92, ("mnist", "gru"): 0.96,
    **{("fashion_mnist", a): 0.90 for a in ("paper_cnn", "lenet", "alexnet_small", "net3")},
    ("fashion_mnist", "gru"): 0.85,
}


def get_profile(name: str | None = None) -> Profile:
    """Return the profile ``name``, else ``$WNA_PROFILE``, else ``full``.

    Raises:
        ValueError: for a name that is not a profile (the message lists them).
    """
    name = name or os.environ.get("WNA_PROFILE") or "full"
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r} (from the argument or WNA_PROFILE); "
            f"valid profiles: {sorted(PROFILES)}"
        ) from None
