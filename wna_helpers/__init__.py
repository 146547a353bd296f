"""wna_helpers: white-noise analysis of PyTorch classifiers.

Classification images, spike-triggered averages and activation statistics from a
streaming, vectorized engine (:mod:`wna_helpers.kernel`), plus the data, models,
training cache, plots and widgets the book's chapters call.
"""
from .activations import ActivationStatistics, activation_statistics
from .analysis import (bias_curve, class_means, confusion_matrix, correlation_matrix, entropy_bits, feed_back,
                       template_classify)
from .ci import ClassificationImages, classification_images
from .config import PROFILES, Profile, default_device, get_profile
from .data import DataIntegrityError, Dataset, DatasetNotFoundError, class_names, dataset_names, load_dataset
from .kernel import Accumulator, run_engine
from .models import CNN_NAMES, MODELS, build_model, conv_layer_names, layer_table, model_names
from .noise import NOISE_KINDS, ImageSource, NoiseSource
from .sta import (ReceptiveField, SpikeTriggeredAverage, filter_correlation, pearson, receptive_field,
                  spike_triggered_average)
from .training import TrainResult, checkpoint_path, evaluate, get_trained_model, train

__version__ = "0.1.0"

__all__ = [
    "ActivationStatistics", "activation_statistics", "bias_curve", "class_means", "confusion_matrix",
    "correlation_matrix", "entropy_bits", "feed_back", "template_classify", "ClassificationImages",
    "classification_images", "PROFILES", "Profile", "default_device", "get_profile", "DataIntegrityError",
    "Dataset", "DatasetNotFoundError", "class_names", "dataset_names", "load_dataset", "Accumulator",
    "run_engine", "CNN_NAMES", "MODELS", "build_model", "conv_layer_names", "layer_table", "model_names",
    "NOISE_KINDS", "ImageSource", "NoiseSource", "ReceptiveField", "SpikeTriggeredAverage",
    "filter_correlation", "pearson", "receptive_field", "spike_triggered_average", "TrainResult",
    "checkpoint_path", "evaluate", "get_trained_model", "train",
]
