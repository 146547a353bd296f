"""zoo: the book's models and datasets, and how they are trained. Imports engine and config.

The architectures (:mod:`~wna_helpers.zoo.models`), MNIST and Fashion-MNIST with their checksums
(:mod:`~wna_helpers.zoo.data`), training with its cache (:mod:`~wna_helpers.zoo.training`; its forward pass
pools before the ReLU, :mod:`~wna_helpers.zoo.pool_first`), snapshots during training
(:mod:`~wna_helpers.zoo.snapshots`) and networks trained the paper's way (:mod:`~wna_helpers.zoo.paper_recipe`).
"""
