"""Every criterion the book's chapters judge by, named once.

The chapters' tables, sentences and figures read these; nothing typed in a notebook cell decides a verdict.
"""
from __future__ import annotations

__all__ = ["FWER", "MIN_COUNT", "R_LEVEL", "FILTER_MATCH", "ABOVE_CHANCE", "COLLAPSED", "HALF",
           "CLUSTER_Z", "DETECTION_AUC", "DETECTION_P", "FLAT_BITS", "PEAK_DROP", "UNIT_YLIM", "SHARE_YLIM",
           "PATTERN_GAP", "ACCURACY_YLIM",
           "FINAL_SHARE",
           "REACHED", "ABOVE_NULL", "DENSITY_CLIP"]

#: Family-wise error rate of every pixel test (z-maps, Holm masks, cluster tests).
FWER = 0.05
#: Fewest samples behind a CI that the book compares or shows: fewer give a CI that is mostly noise.
MIN_COUNT = 50
#: Correlation (or reliability) the book calls agreement: convergence curves, "stable from".
R_LEVEL = 0.9
#: Correlation at which a first-layer STA counts as matching its filter.
FILTER_MATCH = 0.95
#: Templates count as useful when their accuracy is more than this many times chance.
ABOVE_CHANCE = 2.0
#: Share of the noise in one class at which a model counts as sending (almost) all noise there.
COLLAPSED = 0.9
#: The half-way share: curves "reach" it, biasing "moves half" the inputs.
HALF = 0.5
#: The absolute z above which neighbouring pixels join a cluster of the cluster-mass test.
CLUSTER_Z = 3.0
#: Chapter 9: a detection score finds the trigger at an AUC of at least this with p at most DETECTION_P.
DETECTION_AUC = 0.9
DETECTION_P = 0.05
#: Chapter 9: the query count "buys" the attack once it reaches this share of the final CIs' success.
FINAL_SHARE = 0.9
#: Chapter 3: a class counts as reached by the noise when it gets at least this share of it.
REACHED = 0.01
#: Chapter 3: a CI's convergence curve is clearly above the no-signal curve when its r exceeds it by more.
ABOVE_NULL = 0.1
#: Chapter 3: pixel-value densities are drawn clipped at this (most training pixels are exactly 0).
DENSITY_CLIP = 4.0
#: Chapter 3: entropy (bits) below which a model gives most stimuli one answer.
FLAT_BITS = 1.0
#: Chapter 8: a drop of the template accuracy from its peak larger than this counts as "worse at the end".
PEAK_DROP = 0.05
#: Chapter 8: a CI counts as the weaker pattern when the mean-image gamma curve lies on average more than
#: this above the CI curve (noise as the base).
PATTERN_GAP = 0.05
#: y-axis range of figures of correlations, reliabilities and shares in [0, 1].
UNIT_YLIM = (-0.05, 1.02)
SHARE_YLIM = (-0.02, 1.02)
#: y-axis range of figures of accuracies (template accuracies through training).
ACCURACY_YLIM = (0, 1)
