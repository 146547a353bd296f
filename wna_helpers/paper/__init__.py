"""paper: Borji & Lin's numbers, their recipes and their gamma curves. Imports methods, engine and zoo; never book.

- :mod:`~wna_helpers.paper.numbers`: every number the paper's code printed, its source, and how one of ours is
  compared with it;
- :mod:`~wna_helpers.paper.recipes`: min-max scaling, the paper's templates and template classifier, feeding
  CIs back, biasing along a CI, the colour-map round trip of its CI files;
- :mod:`~wna_helpers.paper.gamma`: the pattern-plus-noise experiment (gamma curves);
- :mod:`~wna_helpers.paper.weighted`: the CIs its later cells used, each noise image weighted by the top output;
- :mod:`~wna_helpers.paper.verdicts`: the one rule by which a paper number counts as reproduced.
"""
from .gamma import gamma_curves
from .numbers import PAPER_WEIGHTS, cite, compare, paper_numbers, paper_weights
from .recipes import (ROUNDTRIP_CHANNELS, bias_curve, colormap_roundtrip, feed_back, minmax_scale, paper_templates,
                      template_classify)
from .verdicts import VERDICTS, printed_verdict, spread, verdict
from .weighted import weighted_classification_images

__all__ = ["PAPER_WEIGHTS", "ROUNDTRIP_CHANNELS", "bias_curve", "cite", "colormap_roundtrip", "compare", "feed_back",
           "gamma_curves", "minmax_scale", "paper_numbers", "paper_templates", "paper_weights", "printed_verdict",
           "spread", "template_classify", "verdict", "VERDICTS", "weighted_classification_images"]
