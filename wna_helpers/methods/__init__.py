"""methods: what white-noise analysis measures. Imports engine only.

Classification images and their statistics (:mod:`~wna_helpers.methods.ci`,
:mod:`~wna_helpers.methods.ci_stats`, :mod:`~wna_helpers.methods.ci_compare`), spike-triggered averages and
covariances (:mod:`~wna_helpers.methods.sta`, :mod:`~wna_helpers.methods.stc`), activation statistics
(:mod:`~wna_helpers.methods.activations`), convergence series (:mod:`~wna_helpers.methods.convergence`),
psychophysics' two-class design, its trials as a list with CIs from any observer's answers to them, and
psychometric curves (:mod:`~wna_helpers.methods.two_class`, :mod:`~wna_helpers.methods.two_class_trials`,
:mod:`~wna_helpers.methods.psychometrics`), summaries of predictions (:mod:`~wna_helpers.methods.summaries`), and
the same statistics for any observer's recorded answers (:mod:`~wna_helpers.methods.responses`) with trials
exported as image files and answers read back (:mod:`~wna_helpers.methods.trials`).
"""
