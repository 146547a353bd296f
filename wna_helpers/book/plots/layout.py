"""Panel layout and array helpers shared by the figures of :mod:`wna_helpers.book.plots`.

The colormaps of the book, the titles of figures (:func:`run_label`), arrays made ready for
display (:func:`to_panels`, :func:`symmetric_limit`, :func:`normalize_panels`, :func:`channel_maps`)
and the layout machinery: :class:`PanelGrid` draws image grids by hand (one Axes per row, panels
placed in inches), :func:`subplot_grid` sets up a constrained-layout grid of chart axes.
"""
from __future__ import annotations

import math
import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..report import DATASET_LABELS, dataset_label

__all__ = ["SIGNED_CMAP", "UNSIGNED_CMAP", "ACTIVATION_CMAP", "PAGE_WIDTH", "ArrayLike", "DATASET_LABELS", "dataset_label",
           "run_label", "to_panels", "symmetric_limit", "normalize_panels", "channel_maps"]

#: Colormap of signed maps (CIs, STAs, filters), centred at zero.
SIGNED_CMAP = "RdBu_r"
#: Colormap of unsigned images (class means).
UNSIGNED_CMAP = "gray"
#: Colormap of non-negative activation maps.
ACTIVATION_CMAP = "viridis"
#: Width in inches of a figure that fills the rendered page's text column (772 px at 100 dpi)
#: without being scaled down.
PAGE_WIDTH = 7.5

ArrayLike = torch.Tensor | np.ndarray


def run_label(arch: str | None = None, dataset: str | None = None, noise: str | None = None,
              n: int | None = None) -> str:
    """The run a figure shows, for titles: ``"paper_cnn on MNIST, gaussian noise, n = 20,000"``.

    Args:
        arch: model name; default None (left out).
        dataset: dataset name (written with :func:`dataset_label`); default None.
        noise: noise kind (``"gaussian"``, ``"uniform"``) or any stimulus description; default None.
        n: number of stimuli; default None.

    Returns:
        The parts that are given, joined with commas.
    """
    head = " on ".join(p for p in (arch, dataset_label(dataset) if dataset else None) if p)
    parts = [head] if head else []
    if noise:
        parts.append(f"{noise} noise" if noise in ("gaussian", "uniform") else noise)
    if n is not None:
        parts.append(f"n = {int(n):,}")
    return ", ".join(parts)


def as_array(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def to_panels(images: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
    """Images as a float64 array ``(N, H, W)`` for display.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or a sequence of ``(H, W)`` / ``(1, H, W)``
            arrays; several channels ``(N, C, H, W)`` are averaged over ``C``.

    Returns:
        float64 ``(N, H, W)``.

    Raises:
        ValueError: for any other shape.
    """
    if isinstance(images, (list, tuple)):
        items = [as_array(im) for im in images]
        arr = np.stack([im.mean(0) if im.ndim == 3 else im for im in items])
    else:
        arr = as_array(images)
    if arr.ndim == 4:
        arr = arr.mean(1)
    if arr.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    return arr


def symmetric_limit(values: ArrayLike, quantile: float = 1.0) -> float:
    """``max |value|`` ignoring NaN (or that quantile of ``|value|``); 1.0 when nothing is finite or all zero.

    The colour limit of a signed map: ``vmin = -limit``, ``vmax = limit``.

    Args:
        values: any array.
        quantile: use this quantile of ``|value|`` instead of the maximum; default 1.0 (the maximum).

    Returns:
        The limit, always positive.
    """
    a = np.abs(as_array(values))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    v = float(np.quantile(a, quantile)) if quantile < 1.0 else float(a.max())
    return v if v > 0 else 1.0


def normalize_panels(images: ArrayLike) -> np.ndarray:
    """Each panel divided by its own ``max |value|`` (all-NaN or zero panels unchanged).

    Args:
        images: anything :func:`to_panels` accepts.

    Returns:
        A new float64 array ``(N, H, W)``.
    """
    arr = to_panels(images).copy()
    for i in range(len(arr)):
        finite = np.isfinite(arr[i])
        if finite.any():
            m = np.abs(arr[i][finite]).max()
            if m > 0:
                arr[i] /= m
    return arr


def channel_maps(means: ArrayLike, channel: int | None = None) -> np.ndarray:
    """Per-class maps ``(K, H, W)`` from mean activations ``(K, C, H, W)``.

    Args:
        means: float ``(K, C, H, W)`` (a conv layer) or ``(K, D)`` (a dense layer, returned as ``(K, 1, D)``).
        channel: the channel to show; default None: the mean over channels.

    Returns:
        float64 ``(K, H, W)``.

    Raises:
        ValueError: bad shape or channel out of range.
    """
    m = as_array(means)
    if m.ndim == 2:
        return m[:, None, :]
    if m.ndim != 4:
        raise ValueError(f"expected mean activations of shape (K, C, H, W) or (K, D), got {m.shape}")
    if channel is None:
        return m.mean(1)
    if not 0 <= int(channel) < m.shape[1]:
        raise ValueError(f"channel {channel} out of range: the layer has {m.shape[1]} channels")
    return m[:, int(channel)]


def grid_shape(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = max(1, min(n, ncols or n))
    return math.ceil(n / ncols), ncols


def subplot_grid(n: int, ncols: int, panel_w: float, panel_h: float,
                  extra_w: float = 0.0) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with ``n`` axes, ``ncols`` per row (``panel_w x panel_h`` inches each,
    plus ``extra_w`` inches of width); the slots after the ``n``-th are switched off.

    Returns:
        ``(fig, axes)`` with ``axes`` the full ``(nrows, ncols)`` array.
    """
    nrows, ncols = grid_shape(n, ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols + extra_w, panel_h * nrows), squeeze=False,
                             layout="constrained")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def show_panel(ax: Axes, panel: np.ndarray, norm: Normalize, cmap: str, empty_text: str = "no samples"):
    im = ax.imshow(np.ma.masked_invalid(panel), cmap=cmap, norm=norm, interpolation="nearest")
    if not np.isfinite(panel).any():
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def panel_norm(arr: np.ndarray, signed: bool, vmax: float | None) -> Normalize:
    if signed:
        lim = float(vmax) if vmax is not None else symmetric_limit(arr)
        return Normalize(-lim, lim)
    finite = arr[np.isfinite(arr)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1.0)


class _Panel:
    """One image slot of a :class:`PanelGrid` row (the row is one Axes; data units are inches)."""

    def __init__(self, ax: Axes, x0: float, w: float, h: float) -> None:
        self.ax, self.x0, self.w, self.h = ax, x0, w, h
        self.images: list = []

    def show(self, panel: np.ndarray, norm: Normalize, cmap: str, empty_text: str = "no samples"):
        im = self.ax.imshow(np.ma.masked_invalid(panel), cmap=cmap, norm=norm, interpolation="nearest",
                            extent=(self.x0, self.x0 + self.w, self.h, 0), aspect="auto")
        self.images.append(im)
        self.ax.add_patch(Rectangle((self.x0, 0), self.w, self.h, fill=False, linewidth=0.6, edgecolor="black",
                                    clip_on=False))
        if not np.isfinite(panel).any():
            self.ax.text(self.x0 + self.w / 2, self.h / 2, empty_text, ha="center", va="center",
                         fontsize=8 if self.w >= 0.7 else 6)
        return im

    def outline(self, mask: np.ndarray, color: str = "black", linewidth: float = 0.7) -> None:
        """Draw the pixel edges around the True pixels of ``mask`` ``(H, W)`` over the last image."""
        from matplotlib.collections import LineCollection
        m = np.pad(np.asarray(mask, dtype=bool), 1)
        hh, ww = m.shape[0] - 2, m.shape[1] - 2
        sy, sx = self.h / hh, self.w / ww
        rows, cols = np.nonzero(m[1:, 1:-1] != m[:-1, 1:-1])           # edge above pixel row i
        segs = [((self.x0 + c * sx, r * sy), (self.x0 + (c + 1) * sx, r * sy)) for r, c in zip(rows, cols)]
        rows, cols = np.nonzero(m[1:-1, 1:] != m[1:-1, :-1])           # edge left of pixel column j
        segs += [((self.x0 + c * sx, r * sy), (self.x0 + c * sx, (r + 1) * sy)) for r, c in zip(rows, cols)]
        if segs:
            self.ax.add_collection(LineCollection(segs, colors=color, linewidths=linewidth))

    def set_title(self, text: str, fontsize: float = 8) -> None:
        self.ax.text(self.x0 + self.w / 2, -0.04, text, ha="center", va="bottom", fontsize=fontsize)

    def set_xlabel(self, text: str, fontsize: float = 6, **_: object) -> None:
        self.ax.text(self.x0 + self.w / 2, self.h + 0.03, text, ha="center", va="top", fontsize=fontsize)

    def set_ylabel(self, text: str, fontsize: float = 8) -> None:
        """The row's label, written horizontally in the left margin (0.8 in), lines wrapped to fit it."""
        lines = [w for line in str(text).split("\n") for w in (textwrap.wrap(line, 15) or [""])]
        self.ax.set_ylabel("\n".join(lines), fontsize=min(fontsize, 7), rotation=0, ha="right", va="center",
                           labelpad=4)

    def axis(self, *_: object) -> None:
        """An unused slot draws nothing."""


class PanelGrid:
    """Image panels laid out by hand, in inches, one Axes per row.

    Constrained layout with one Axes per panel takes seconds per figure; the image grids of the
    book have up to 120 panels, so each row is one Axes whose data units are inches and each panel
    an ``imshow`` with its own extent. ``axes[r, c]`` is a :class:`_Panel`. Panels are at most
    ``panel_w`` inches and shrink (to no less than ``MIN_PANEL``) so that the figure is at most
    :data:`PAGE_WIDTH` wide: the page then shows it unscaled, its fonts at their size.
    """

    GAP_W = 0.07
    MIN_PANEL = 0.45

    def __init__(self, nrows: int, ncols: int, panel_w: float, *, col_title_lines: int = 0,
                 panel_title_lines: int = 0, note_lines: int = 0, row_labels: bool = False,
                 suptitle: str = "") -> None:
        title_h, note_h = 0.14 * panel_title_lines, 0.12 * note_lines
        self.gh = 0.08 + title_h + note_h
        self.left = 0.8 if row_labels else 0.12
        self.right = 1.05  # room for the colorbars
        # panels shrink (down to MIN_PANEL) so that the figure fits the page and is shown unscaled
        fit = (PAGE_WIDTH - self.left - self.right - (ncols - 1) * self.GAP_W) / ncols
        self.pw = self.ph = max(min(panel_w, fit), self.MIN_PANEL)
        row_w = ncols * self.pw + (ncols - 1) * self.GAP_W
        self.width = self.left + row_w + self.right
        chars = max(20, int(self.width * 11.5))
        sup = "\n".join(textwrap.fill(line, chars) for line in suptitle.split("\n")) if suptitle else ""
        sup_lines = sup.count("\n") + 1 if sup else 0
        self.top = 0.12 + 0.21 * sup_lines + 0.14 * col_title_lines + title_h
        self.height = self.top + nrows * self.ph + (nrows - 1) * self.gh + 0.1 + note_h
        self.fig = plt.figure(figsize=(self.width, self.height))
        self.axes = np.empty((nrows, ncols), dtype=object)
        for r in range(nrows):
            ax = self.fig.add_axes(self._rect(self.left, self.top + r * (self.ph + self.gh), row_w, self.ph))
            ax.set_xlim(0, row_w)
            ax.set_ylim(self.ph, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            for c in range(ncols):
                self.axes[r, c] = _Panel(ax, c * (self.pw + self.GAP_W), self.pw, self.ph)
        if sup:
            self.fig.suptitle(sup, y=1 - 0.08 / self.height, va="top", fontsize=11)

    def _rect(self, x: float, y_top: float, w: float, h: float) -> list[float]:
        """Figure-fraction rectangle of a box ``w x h`` inches whose top-left corner is at (x, y_top)."""
        return [x / self.width, 1 - (y_top + h) / self.height, w / self.width, h / self.height]

    def colorbar(self, im, rows: Sequence[int], label: str) -> None:
        """One colorbar to the right of ``rows`` (first to last)."""
        y0 = self.top + min(rows) * (self.ph + self.gh)
        y1 = self.top + max(rows) * (self.ph + self.gh) + self.ph
        x = self.width - self.right + 0.15
        cax = self.fig.add_axes(self._rect(x, y0, 0.13, y1 - y0), label="<colorbar>")
        cb = self.fig.colorbar(im, cax=cax)
        cb.set_label(label, fontsize=8)
        cax.tick_params(labelsize=7)


def count_lines(texts: Sequence[str] | None) -> int:
    return max((str(t).count("\n") + 1 for t in texts), default=0) if texts else 0

