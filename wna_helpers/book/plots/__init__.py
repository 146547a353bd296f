"""Matplotlib figures of the book's chapters.

Every function returns its :class:`~matplotlib.figure.Figure` (the notebooks call
``plt.show()``). Conventions: signed maps (classification images, STAs, filters) use
the diverging ``RdBu_r`` colormap centred at zero (``vmin = -vmax``) with one shared
colorbar per scale; class axes carry class names (pass ``class_names(dataset)``);
titles say model, dataset, noise kind and ``n`` where they apply (see :func:`run_label`).

The package holds :mod:`~wna_helpers.book.plots.layout` (colormaps, labels, array helpers and the
panel layout), :mod:`~wna_helpers.book.plots.images` (image grids) and :mod:`~wna_helpers.book.plots.charts`
(histograms, confusion matrices, curves, bars, the benchmark); their public names are re-exported
here. Markdown tables and prose are in :mod:`wna_helpers.book.report`, the benchmark's results in
:mod:`wna_helpers.book.perf_report`.
"""
from . import charts, images, layout
from .charts import *  # noqa: F401,F403
from .images import *  # noqa: F401,F403
from .layout import *  # noqa: F401,F403

__all__ = [*layout.__all__, *images.__all__, *charts.__all__]
