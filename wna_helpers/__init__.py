"""wna_helpers: white-noise analysis of PyTorch classifiers.

The library, in layers (each imports only the ones below it):

- :mod:`wna_helpers.engine`: stimuli, run options and the streaming kernel;
- :mod:`wna_helpers.methods`: classification images and their statistics, spike-triggered averages and
  covariances, activation statistics, convergence, the two-class design, psychometric curves;
- :mod:`wna_helpers.zoo`: the book's models and datasets and their training (with :mod:`wna_helpers.config`,
  every costly setting in one place);
- :mod:`wna_helpers.applications`: CIs as attacks, trojans, microstimulation;
- :mod:`wna_helpers.paper`: Borji & Lin's numbers, recipes and gamma curves.

The book's glue, :mod:`wna_helpers.book` (cached studies, tables, prose, figures, widgets), sits on top and is
never loaded by ``import wna_helpers``: a chapter imports it (``from wna_helpers import book``).
Every name below is also reachable where it lives; ``wna.trojan`` and ``wna.ci_stats`` are modules.
"""
from .applications.attacks import (BlendAttack, PerturbationAttack, blend_attack, ci_directions,
                                   mean_image_directions, other_class_directions, perturbation_attack,
                                   random_directions, shuffled_directions)
from .applications.microstimulation import class_inhibition, microstimulate, random_inhibition, unit_activation
from .config import PROFILES, Profile, SETTINGS, default_device, get_profile
from .engine.fingerprint import code_digest, state_digest, tensor_digest
from .engine.kernel import Accumulator, run_engine
from .engine.layers import conv_layer_names, layer_table
from .engine.options import RunOptions
from .engine.allocator import allocator_status, tune_allocator
from .engine.stimuli import Gaussian, Images, Mixture, Noise, Stimulus, Uniform, as_stimulus
from .engine.structured_noise import GaborNoise, Sinusoid, gabor_dictionary
from .methods.activations import ActivationStatistics, activation_statistics
from .methods.ci import ClassificationImages, classification_images
from .methods.ci_compare import CIComparison, compare_classification_images
from .methods.ci_stats import ClusterTest
from .methods.convergence import CIConvergence, STAConvergence, ci_convergence, geometric_sizes, sta_convergence
from .methods.responses import classification_images_from_responses
from .methods.trials import export_trials, read_responses, read_trial_images
from .methods.psychometrics import PsychometricCurve, PsychometricFit, fit_psychometric, psychometric_curve
from .methods.sta import (ReceptiveField, SpikeTriggeredAverage, filter_correlation, pearson, receptive_field,
                          spike_triggered_average)
from .methods.stc import SpikeTriggeredCovariance, spike_triggered_covariance
from .methods.summaries import class_means, confusion_matrix, correlation_matrix, entropy_bits
from .methods.two_class import TwoClassCI, two_class_ci
from .methods.two_class_trials import TwoClassTrials, two_class_from_responses, two_class_reliability, two_class_trials
from .paper import (PAPER_WEIGHTS, bias_curve, cite, compare, feed_back, gamma_curves, minmax_scale, paper_numbers,
                    paper_templates, paper_weights, template_classify)
from .zoo.data import DataIntegrityError, Dataset, DatasetNotFoundError, class_names, dataset_names, load_dataset
from .zoo.models import CNN_NAMES, MODELS, build_model, model_names
from .zoo.paper_recipe import PAPER_RECIPE, paper_recipe_model, paper_recipe_path, paper_recipe_seeds
from .zoo.snapshots import model_at, snapshot_path, training_snapshots
from .zoo.training import TrainResult, checkpoint_path, evaluate, get_trained_model, train
from .applications import trojan
from .methods import ci_stats

__version__ = "0.3.0"

__all__ = [
    "Accumulator", "activation_statistics", "ActivationStatistics", "allocator_status", "as_stimulus", "bias_curve",
    "blend_attack", "BlendAttack", "build_model", "checkpoint_path", "ci_convergence", "ci_directions",
    "CIComparison", "CIConvergence", "cite", "class_inhibition", "class_means", "class_names",
    "classification_images", "classification_images_from_responses", "ClassificationImages", "ClusterTest",
    "CNN_NAMES", "code_digest", "compare", "compare_classification_images", "confusion_matrix", "conv_layer_names",
    "correlation_matrix", "DataIntegrityError", "Dataset", "dataset_names", "DatasetNotFoundError", "default_device",
    "entropy_bits", "evaluate", "export_trials", "feed_back", "filter_correlation", "fit_psychometric",
    "gabor_dictionary", "GaborNoise", "gamma_curves", "Gaussian", "geometric_sizes", "get_profile",
    "get_trained_model", "Images", "layer_table", "load_dataset", "mean_image_directions", "microstimulate",
    "minmax_scale", "Mixture", "model_at", "model_names", "MODELS", "Noise", "other_class_directions",
    "paper_numbers", "PAPER_RECIPE", "paper_recipe_model", "paper_recipe_path", "paper_recipe_seeds",
    "paper_templates", "PAPER_WEIGHTS", "paper_weights", "pearson", "perturbation_attack", "PerturbationAttack",
    "Profile", "PROFILES",
    "psychometric_curve", "PsychometricCurve", "PsychometricFit", "random_directions", "random_inhibition",
    "read_responses", "read_trial_images", "receptive_field", "ReceptiveField", "run_engine", "RunOptions",
    "SETTINGS", "shuffled_directions", "Sinusoid", "snapshot_path", "spike_triggered_average",
    "spike_triggered_covariance", "SpikeTriggeredAverage", "SpikeTriggeredCovariance", "sta_convergence",
    "STAConvergence", "state_digest", "Stimulus", "template_classify", "tensor_digest", "train",
    "training_snapshots", "TrainResult", "tune_allocator", "two_class_ci", "two_class_from_responses",
    "two_class_reliability", "two_class_trials", "TwoClassCI", "TwoClassTrials", "Uniform", "unit_activation"
]
