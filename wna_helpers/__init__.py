"""wna_helpers: white-noise analysis of PyTorch classifiers.

Engine (bottom): stimuli (:mod:`~wna_helpers.stimuli`), run options
(:mod:`~wna_helpers.options`) and the streaming engine (:mod:`~wna_helpers.kernel`), with the
methods built on it: classification images (:mod:`~wna_helpers.ci`), spike-triggered averages
(:mod:`~wna_helpers.sta`), their statistics (:mod:`~wna_helpers.ci_stats`: permutation null,
reliability, logit images; :mod:`~wna_helpers.stc`: spike-triggered covariance), activation statistics (:mod:`~wna_helpers.activations`), convergence
series (:mod:`~wna_helpers.convergence`) and their uses (:mod:`~wna_helpers.analysis`); how the
engine runs a model at the hardware's limit is :mod:`~wna_helpers.speed`.
Applications: CIs as black-box attacks (:mod:`~wna_helpers.attacks`), comparing two CIs
(:mod:`~wna_helpers.ci_compare`), trojans (:mod:`~wna_helpers.trojan`), microstimulation
(:mod:`~wna_helpers.microstimulation`), psychometric curves (:mod:`~wna_helpers.psychometrics`) and the two-class design
(:mod:`~wna_helpers.two_class`).
Book helpers (top): the cached studies (:mod:`~wna_helpers.studies`, :mod:`~wna_helpers.biasing`,
:mod:`~wna_helpers.overview`, :mod:`~wna_helpers.applications`, :mod:`~wna_helpers.trojan_study`), measures,
plots, reports and widgets the chapters call.
"""
from . import chapter, ci_stats, paper, trojan
from .attacks import (BlendAttack, PerturbationAttack, blend_attack, ci_directions, mean_image_directions,
                      perturbation_attack, random_directions)
from .ci_compare import CIComparison, compare_classification_images
from .microstimulation import class_inhibition, microstimulate, random_inhibition, unit_activation
from .psychometrics import PsychometricCurve, PsychometricFit, fit_psychometric, psychometric_curve
from .two_class import TwoClassCI, two_class_ci
from .activations import ActivationStatistics, activation_statistics
from .analysis import (bias_curve, class_means, confusion_matrix, correlation_matrix, entropy_bits, feed_back,
                       template_classify)
from .ci import ClassificationImages, classification_images
from .ci_stats import ClusterTest
from .config import PROFILES, SETTINGS, Profile, default_device, get_profile
from .convergence import CIConvergence, STAConvergence, ci_convergence, geometric_sizes, sta_convergence
from .data import DataIntegrityError, Dataset, DatasetNotFoundError, class_names, dataset_names, load_dataset
from .fingerprint import code_digest, state_digest, tensor_digest
from .kernel import Accumulator, run_engine
from .models import CNN_NAMES, MODELS, build_model, conv_layer_names, layer_table, model_names
from .options import RunOptions
from .paper import (PAPER_WEIGHTS, cite, compare, gamma_curves, minmax_scale, paper_numbers, paper_templates,
                    paper_weights)
from .snapshots import model_at, snapshot_path, training_snapshots
from .speed import allocator_status, tune_allocator
from .sta import (ReceptiveField, SpikeTriggeredAverage, filter_correlation, pearson, receptive_field,
                  spike_triggered_average)
from .stc import SpikeTriggeredCovariance, spike_triggered_covariance
from .stimuli import Gaussian, Images, Mixture, Noise, Stimulus, Uniform, as_stimulus
from .structured_noise import GaborNoise, Sinusoid, gabor_dictionary
from .training import TrainResult, checkpoint_path, evaluate, get_trained_model, train

from . import applications, trojan_study  # noqa: E402  (the book's studies, after the API they use)

__version__ = "0.3.0"

__all__ = [
    "chapter", "ActivationStatistics", "activation_statistics", "bias_curve", "class_means", "confusion_matrix",
    "correlation_matrix", "entropy_bits", "feed_back", "template_classify", "ClassificationImages",
    "classification_images", "ci_stats", "ClusterTest", "SpikeTriggeredCovariance", "spike_triggered_covariance",
    "PROFILES", "SETTINGS", "Profile", "default_device", "get_profile",
    "CIConvergence", "STAConvergence", "ci_convergence", "geometric_sizes", "sta_convergence",
    "DataIntegrityError", "Dataset", "DatasetNotFoundError", "class_names", "dataset_names", "load_dataset",
    "code_digest", "state_digest", "tensor_digest", "Accumulator", "run_engine", "CNN_NAMES", "MODELS",
    "build_model", "conv_layer_names", "layer_table", "model_names", "RunOptions", "paper", "PAPER_WEIGHTS",
    "cite", "compare", "gamma_curves", "minmax_scale", "paper_numbers", "paper_templates", "paper_weights",
    "ReceptiveField",
    "allocator_status", "tune_allocator", "SpikeTriggeredAverage", "filter_correlation", "pearson", "receptive_field", "spike_triggered_average",
    "Gaussian", "Images", "Mixture", "Noise", "Stimulus", "Uniform", "as_stimulus",
    "GaborNoise", "Sinusoid", "gabor_dictionary", "TrainResult",
    "checkpoint_path", "evaluate", "get_trained_model", "train", "model_at", "snapshot_path", "training_snapshots",
    "trojan", "applications", "trojan_study", "BlendAttack", "PerturbationAttack", "blend_attack", "ci_directions",
    "mean_image_directions", "perturbation_attack", "random_directions", "CIComparison",
    "compare_classification_images", "PsychometricCurve", "PsychometricFit", "class_inhibition", "fit_psychometric",
    "microstimulate", "psychometric_curve", "random_inhibition", "unit_activation", "TwoClassCI", "two_class_ci",
]
