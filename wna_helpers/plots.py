"""Matplotlib figures of the book's chapters.

Every function returns its :class:`~matplotlib.figure.Figure` (the notebooks call
``plt.show()``). Conventions: signed maps (classification images, STAs, filters) use
the diverging ``RdBu_r`` colormap centred at zero (``vmin = -vmax``) with one shared
colorbar per scale; class axes carry class names (pass ``class_names(dataset)``);
titles say model, dataset, noise kind and ``n`` where they apply (see :func:`run_label`).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .analysis import entropy_bits

__all__ = ["DATASET_LABELS", "dataset_label", "run_label", "symmetric_limit", "to_panels",
           "normalize_panels", "channel_maps", "plot_images", "plot_image_rows", "plot_class_histogram",
           "plot_class_histograms", "plot_confusion", "plot_confusion_grid", "plot_curves",
           "plot_filters_vs_sta", "plot_activation_maps", "plot_activation_pair", "markdown_table",
           "plot_curve_grid", "plot_grouped_bars", "find_upward", "load_engine_benchmark", "benchmark_table",
           "plot_benchmark", "profile_table", "overview_markdown", "describe_biases", "count_notes",
           "benchmark_targets"]

#: How the book writes each dataset's name.
DATASET_LABELS: dict[str, str] = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "gray"
ACTIVATION_CMAP = "viridis"

ArrayLike = torch.Tensor | np.ndarray


def dataset_label(dataset: str) -> str:
    """Display name of a dataset (``"fashion_mnist"`` -> ``"Fashion-MNIST"``); unknown names pass through."""
    return DATASET_LABELS.get(dataset, dataset)


def run_label(arch: str | None = None, dataset: str | None = None, noise: str | None = None,
              n: int | None = None) -> str:
    """The run a figure shows, for titles: ``"paper_cnn on MNIST, gaussian noise, n = 20,000"``.

    Args:
        arch: model name, or None to leave it out.
        dataset: dataset name (written with :func:`dataset_label`), or None.
        noise: noise kind (``"gaussian"``, ``"uniform"``) or any stimulus description, or None.
        n: number of stimuli, or None.

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


def _np(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def to_panels(images: ArrayLike | Sequence[ArrayLike]) -> np.ndarray:
    """Images as a float64 array ``(N, H, W)`` for display.

    Accepts ``(N, H, W)``, ``(N, 1, H, W)`` or a sequence of ``(H, W)`` / ``(1, H, W)``
    arrays; several channels ``(N, C, H, W)`` are averaged over ``C``.

    Raises:
        ValueError: for any other shape.
    """
    if isinstance(images, (list, tuple)):
        items = [_np(im) for im in images]
        arr = np.stack([im.mean(0) if im.ndim == 3 else im for im in items])
    else:
        arr = _np(images)
    if arr.ndim == 4:
        arr = arr.mean(1)
    if arr.ndim != 3:
        raise ValueError(f"expected images of shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    return arr


def symmetric_limit(values: ArrayLike, quantile: float = 1.0) -> float:
    """``max |value|`` ignoring NaN (or that quantile of ``|value|``); 1.0 when nothing is finite or all zero.

    The colour limit of a signed map: ``vmin = -limit``, ``vmax = limit``.
    """
    a = np.abs(_np(values))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    v = float(np.quantile(a, quantile)) if quantile < 1.0 else float(a.max())
    return v if v > 0 else 1.0


def normalize_panels(images: ArrayLike) -> np.ndarray:
    """Each panel of ``(N, H, W)`` divided by its own ``max |value|`` (all-NaN or zero panels unchanged)."""
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
        channel: the channel to show; None averages over channels.

    Returns:
        float64 ``(K, H, W)``.

    Raises:
        ValueError: bad shape or channel out of range.
    """
    m = _np(means)
    if m.ndim == 2:
        return m[:, None, :]
    if m.ndim != 4:
        raise ValueError(f"expected mean activations of shape (K, C, H, W) or (K, D), got {m.shape}")
    if channel is None:
        return m.mean(1)
    if not 0 <= int(channel) < m.shape[1]:
        raise ValueError(f"channel {channel} out of range: the layer has {m.shape[1]} channels")
    return m[:, int(channel)]


def _grid(n: int, ncols: int | None) -> tuple[int, int]:
    ncols = max(1, min(n, ncols or n))
    return math.ceil(n / ncols), ncols


def _style_panel(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _show(ax: Axes, panel: np.ndarray, norm: Normalize, cmap: str, empty_text: str = "no samples"):
    im = ax.imshow(np.ma.masked_invalid(panel), cmap=cmap, norm=norm, interpolation="nearest")
    if not np.isfinite(panel).any():
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
    _style_panel(ax)
    return im


def _norm(arr: np.ndarray, signed: bool, vmax: float | None, vmin: float | None = None) -> Normalize:
    if signed:
        lim = float(vmax) if vmax is not None else symmetric_limit(arr)
        return Normalize(-lim, lim)
    finite = arr[np.isfinite(arr)]
    lo = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    return Normalize(lo, hi if hi > lo else lo + 1.0)


class _Panel:
    """One image slot of a :class:`_PanelGrid` row (the row is one Axes; data units are inches)."""

    def __init__(self, ax: Axes, x0: float, w: float, h: float) -> None:
        self.ax, self.x0, self.w, self.h = ax, x0, w, h
        self.images: list = []

    def show(self, panel: np.ndarray, norm: Normalize, cmap: str, empty_text: str = "no samples"):
        from matplotlib.patches import Rectangle

        im = self.ax.imshow(np.ma.masked_invalid(panel), cmap=cmap, norm=norm, interpolation="nearest",
                            extent=(self.x0, self.x0 + self.w, self.h, 0), aspect="auto")
        self.images.append(im)
        self.ax.add_patch(Rectangle((self.x0, 0), self.w, self.h, fill=False, linewidth=0.6, edgecolor="black",
                                    clip_on=False))
        if not np.isfinite(panel).any():
            self.ax.text(self.x0 + self.w / 2, self.h / 2, empty_text, ha="center", va="center", fontsize=8)
        return im

    def set_title(self, text: str, fontsize: float = 8) -> None:
        self.ax.text(self.x0 + self.w / 2, -0.04, text, ha="center", va="bottom", fontsize=fontsize)

    def set_xlabel(self, text: str, fontsize: float = 6, **_: object) -> None:
        self.ax.text(self.x0 + self.w / 2, self.h + 0.03, text, ha="center", va="top", fontsize=fontsize)

    def set_ylabel(self, text: str, fontsize: float = 8) -> None:
        self.ax.set_ylabel(text, fontsize=fontsize)

    def axis(self, *_: object) -> None:
        """An unused slot draws nothing."""


class _PanelGrid:
    """Image panels laid out by hand, in inches, one Axes per row.

    Constrained layout with one Axes per panel takes seconds per figure; the image grids of the
    book have up to 120 panels, so each row is one Axes whose data units are inches and each panel
    an ``imshow`` with its own extent. ``axes[r, c]`` is a :class:`_Panel`.
    """

    GAP_W = 0.07

    def __init__(self, nrows: int, ncols: int, panel_w: float, panel_h: float | None = None, *,
                 col_title_lines: int = 0, panel_title_lines: int = 0, note_lines: int = 0,
                 row_labels: bool = False, colorbar: bool = True, suptitle: str = "") -> None:
        import textwrap

        self.nrows, self.ncols = nrows, ncols
        self.pw, self.ph = panel_w, panel_h or panel_w
        title_h, note_h = 0.14 * panel_title_lines, 0.12 * note_lines
        self.gh = 0.08 + title_h + note_h
        self.left = 0.8 if row_labels else 0.12
        self.right = 1.05 if colorbar else 0.12
        row_w = ncols * self.pw + (ncols - 1) * self.GAP_W
        self.width = self.left + row_w + self.right
        chars = max(20, int(self.width * 11.5))
        sup = "\n".join(textwrap.fill(line, chars) for line in suptitle.split("\n")) if suptitle else ""
        sup_lines = sup.count("\n") + 1 if sup else 0
        self.top = 0.12 + 0.21 * sup_lines + 0.14 * col_title_lines + title_h
        self.height = self.top + nrows * self.ph + (nrows - 1) * self.gh + 0.1 + note_h
        self.fig = plt.figure(figsize=(self.width, self.height))
        self.rows: list[Axes] = []
        self.axes = np.empty((nrows, ncols), dtype=object)
        for r in range(nrows):
            ax = self.fig.add_axes(self._rect(self.left, self.top + r * (self.ph + self.gh), row_w, self.ph))
            ax.set_xlim(0, row_w)
            ax.set_ylim(self.ph, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            self.rows.append(ax)
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


def _lines(texts: Sequence[str] | None) -> int:
    return max((str(t).count("\n") + 1 for t in texts), default=0) if texts else 0


def plot_images(images: ArrayLike | Sequence[ArrayLike], titles: Sequence[str] | None = None,
                suptitle: str = "", *, signed: bool = True, ncols: int | None = 10,
                vmax: float | None = None, cmap: str | None = None, normalize: bool = False,
                colorbar_label: str | None = None, panel_size: float = 1.25) -> Figure:
    """A grid of images (classification images, STAs, means) with ONE shared colour scale.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or a sequence of 2-D images (see :func:`to_panels`).
            NaN panels (a class without samples) are drawn blank with the words "no samples".
        titles: one title per image (e.g. class names with counts); default none.
        suptitle: the figure title (say model, dataset, noise kind and n).
        signed: True: diverging ``RdBu_r`` centred at zero with ``vmin = -vmax``; False: ``gray``
            from the minimum to the maximum. Default True.
        ncols: panels per row; default 10.
        vmax: colour limit; default ``max |value|`` (signed) or the maximum (unsigned).
        cmap: override the colormap.
        normalize: divide each panel by its own ``max |value|`` first (shapes, not sizes, compared);
            the colorbar then reads "normalised value".
        colorbar_label: label of the shared colorbar; default "pixel value" (or "normalised value").
        panel_size: inches per panel; default 1.25.

    Returns:
        The figure (one axes per panel plus one colorbar axes).

    Raises:
        ValueError: bad image shape, or ``titles`` of the wrong length.
    """
    arr = normalize_panels(images) if normalize else to_panels(images)
    n = len(arr)
    if titles is not None and len(titles) != n:
        raise ValueError(f"{n} images but {len(titles)} titles")
    nrows, ncols = _grid(n, ncols)
    grid = _PanelGrid(nrows, ncols, panel_size, panel_title_lines=_lines(titles), suptitle=suptitle)
    norm = _norm(arr, signed, vmax)
    cm = cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP)
    im = None
    for i, ax in enumerate(grid.axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        im = ax.show(arr[i], norm, cm)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    grid.colorbar(im, range(nrows), colorbar_label or ("normalised value" if normalize else "pixel value"))
    return grid.fig


def plot_image_rows(rows: Sequence[tuple], col_titles: Sequence[str] | None = None,
                    suptitle: str = "", *, shared_signed_scale: bool = False, normalize: bool = False,
                    panel_size: float = 1.2, colorbar_label: str | None = None, min_count: int = 0,
                    empty_text: str = "no samples") -> Figure:
    """Rows of images, each row with its own colour scale and colorbar (e.g. CI next to class mean).

    Args:
        rows: ``(images, row_label, signed)`` per row, or ``(images, row_label, signed, counts)`` where
            ``counts`` holds the samples behind each panel (written under it as ``n=...``), or a list of
            short strings written as they are; every row has the same number of images.
        col_titles: one title per column (e.g. class names); default none.
        suptitle: the figure title.
        shared_signed_scale: give all signed rows the same ``vmax`` (and one colorbar for them),
            e.g. Gaussian and uniform CIs compared on one scale; default False.
        normalize: divide each panel by its own ``max |value|`` first.
        panel_size: inches per panel; default 1.2.
        colorbar_label: label of every colorbar; default "pixel value" (or "normalised value").
        min_count: panels with numeric counts below this do not set the colour limits (a CI from a
            handful of samples is mostly noise and would wash out the others; it saturates instead
            and its note says "few samples"); default 0.
        empty_text: written on an all-NaN panel; default "no samples" (for STAs: "never active").

    Returns:
        The figure.

    Raises:
        ValueError: rows of different lengths, or wrong number of column titles or counts.
    """
    panels = [(normalize_panels(row[0]) if normalize else to_panels(row[0]), row[1], row[2]) for row in rows]
    ncols = len(panels[0][0])
    if any(len(p[0]) != ncols for p in panels):
        raise ValueError(f"every row needs the same number of images, got {[len(p[0]) for p in panels]}")
    if col_titles is not None and len(col_titles) != ncols:
        raise ValueError(f"{ncols} columns but {len(col_titles)} column titles")
    notes: list[list[str] | None] = []
    scale_mask: list[np.ndarray] = []
    for row in rows:
        extra = row[3] if len(row) > 3 else None
        if extra is not None and len(extra) != ncols:
            raise ValueError(f"{len(extra)} counts or notes for {ncols} images")
        if extra is None or (len(extra) and isinstance(extra[0], str)):
            notes.append(None if extra is None else [str(t) for t in extra])
            scale_mask.append(np.ones(ncols, dtype=bool))
        else:
            cnt = _np(extra)
            notes.append([f"n={int(c):,}" + (" (few samples)" if 0 < c < min_count else "") for c in cnt])
            mask = cnt >= max(min_count, 1)
            scale_mask.append(mask if mask.any() else np.ones(ncols, dtype=bool))
    nrows = len(panels)
    grid = _PanelGrid(nrows, ncols, panel_size, col_title_lines=_lines(col_titles),
                      note_lines=1 if any(nt is not None for nt in notes) else 0, row_labels=True, suptitle=suptitle)
    fig, axes = grid.fig, grid.axes
    shared = None
    if shared_signed_scale:
        signed_vals = [p[0][m] for p, m in zip(panels, scale_mask) if p[2]]
        if signed_vals:
            shared = symmetric_limit(np.concatenate([v.ravel() for v in signed_vals]))
    label = colorbar_label or ("normalised value" if normalize else "pixel value")
    signed_rows = []
    for r, (arr, row_label, signed) in enumerate(panels):
        norm = _norm(arr[scale_mask[r]], signed, shared if signed else None)
        cm = SIGNED_CMAP if signed else UNSIGNED_CMAP
        im = None
        for c in range(ncols):
            ax = axes[r, c]
            im = ax.show(arr[c], norm, cm, empty_text)
            if r == 0 and col_titles is not None:
                ax.set_title(str(col_titles[c]), fontsize=8)
            if notes[r] is not None:
                ax.set_xlabel(notes[r][c], fontsize=6, labelpad=1)
        axes[r, 0].set_ylabel(row_label, fontsize=8)
        if signed and shared is not None:
            signed_rows.append(r)
        else:
            grid.colorbar(im, [r], label)
    if signed_rows:
        grid.colorbar(axes[signed_rows[0], 0].images[0], signed_rows, label)
    return fig


def _histogram(ax: Axes, counts: np.ndarray, classes: Sequence[str], title: str) -> None:
    total = counts.sum()
    share = counts / total if total > 0 else np.zeros_like(counts, dtype=float)
    h = entropy_bits(torch.as_tensor(counts)) if total > 0 else float("nan")
    bars = ax.bar(range(len(counts)), share, color="tab:blue")
    for b, c in zip(bars, counts):
        ax.annotate(f"{int(c):,}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=6, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(counts)), [str(c) for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of noise samples")
    ax.set_xlabel("predicted class")
    ax.set_title(f"{title}\nentropy {h:.2f} of {math.log2(len(counts)):.2f} bits", fontsize=9)


def plot_class_histogram(counts: ArrayLike, classes: Sequence[str], title: str) -> Figure:
    """Share of the noise samples predicted as each class, with the entropy in the title.

    Args:
        counts: int ``(K,)`` samples per predicted class (e.g. ``ClassificationImages.counts``).
        classes: the ``K`` class names (``class_names(dataset)``).
        title: what was measured (:func:`run_label`); the entropy is appended.

    Returns:
        The figure; bars are annotated with the counts.

    Raises:
        ValueError: ``counts`` and ``classes`` differ in length.
    """
    c = _np(counts)
    if len(c) != len(classes):
        raise ValueError(f"{len(c)} counts but {len(classes)} class names")
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    _histogram(ax, c, classes, title)
    return fig


def plot_class_histograms(panels: Mapping[str, ArrayLike], classes: Sequence[str], suptitle: str = "",
                          *, ncols: int = 3) -> Figure:
    """Several class histograms (e.g. one per model) in one figure; see :func:`plot_class_histogram`.

    Args:
        panels: panel title -> counts ``(K,)``.
        classes: the ``K`` class names.
        suptitle: the figure title (dataset, noise kind, n).
        ncols: panels per row; default 3.

    Returns:
        The figure.
    """
    names = list(panels)
    nrows, ncols = _grid(len(names), ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes.flat, names):
        c = _np(panels[name])
        if len(c) != len(classes):
            raise ValueError(f"{name}: {len(c)} counts but {len(classes)} class names")
        _histogram(ax, c, classes, name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def _confusion(ax: Axes, m: np.ndarray, classes: Sequence[str], title: str, xlabel: str, ylabel: str,
               norm: Normalize, annotate: bool | str, cmap: str):
    im = ax.imshow(m, cmap=cmap, norm=norm)
    k = len(classes)
    if annotate:
        mid = (norm.vmin + norm.vmax) / 2
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                v = m[i, j]
                if annotate == "nonzero" and v == 0:
                    continue
                txt = f"{int(v)}" if float(v).is_integer() else f"{v:.2f}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=6,
                        color="white" if v > mid else "black")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), [str(c) for c in classes], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return im


def plot_confusion(matrix: ArrayLike, classes: Sequence[str], title: str, xlabel: str = "predicted class",
                   ylabel: str = "true class", *, annotate: bool | str = True, cmap: str = "Blues",
                   colorbar_label: str = "count") -> Figure:
    """A confusion matrix with the counts written in the cells and a colorbar.

    Args:
        matrix: ``(K, K)``; row = ``ylabel``, column = ``xlabel``.
        classes: the ``K`` class names.
        title: what the matrix shows (model, dataset, noise, n).
        xlabel: default "predicted class".
        ylabel: default "true class".
        annotate: write the values in the cells (``"nonzero"``: only the non-zero ones); default True.
        cmap: default ``Blues``.
        colorbar_label: default "count".

    Returns:
        The figure.

    Raises:
        ValueError: a matrix that is not ``(K, K)`` for ``K = len(classes)``.
    """
    m = _np(matrix)
    k = len(classes)
    if m.shape != (k, k):
        raise ValueError(f"matrix shape {m.shape} does not match {k} classes")
    fig, ax = plt.subplots(figsize=(5.6, 4.8), layout="constrained")
    im = _confusion(ax, m, classes, title, xlabel, ylabel, Normalize(0, max(float(np.nanmax(m)), 1.0)),
                    annotate, cmap)
    fig.colorbar(im, ax=ax, label=colorbar_label)
    return fig


def plot_confusion_grid(matrices: Mapping[str, ArrayLike], classes: Sequence[str], suptitle: str = "",
                        xlabel: str = "predicted class", ylabel: str = "true class", *, ncols: int = 3,
                        annotate: bool | str = True, cmap: str = "Blues", colorbar_label: str = "count") -> Figure:
    """Several confusion matrices (e.g. one per model) on one colour scale with one colorbar.

    Args:
        matrices: panel title -> ``(K, K)`` matrix.
        classes, xlabel, ylabel, annotate, cmap, colorbar_label: as in :func:`plot_confusion`.
        suptitle: the figure title.
        ncols: panels per row; default 3.

    Returns:
        The figure.
    """
    names = list(matrices)
    k = len(classes)
    mats = {n: _np(matrices[n]) for n in names}
    for n, m in mats.items():
        if m.shape != (k, k):
            raise ValueError(f"{n}: matrix shape {m.shape} does not match {k} classes")
    nrows, ncols = _grid(len(names), ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols + 0.8, 4.0 * nrows), squeeze=False,
                             layout="constrained")
    norm = Normalize(0, max(max(float(np.nanmax(m)) for m in mats.values()), 1.0))
    im = None
    for ax, n in zip(axes.flat, names):
        im = _confusion(ax, mats[n], classes, n, xlabel, ylabel, norm, annotate, cmap)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, shrink=0.7, label=colorbar_label)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_curves(x: ArrayLike | Sequence[float] | None, curves: Mapping[str, ArrayLike], title: str, xlabel: str,
                ylabel: str, *, logx: bool = False, hline: float | None = None, hline_label: str | None = None,
                ylim: tuple[float, float] | None = None, ax: Axes | None = None,
                styles: Mapping[str, str] | None = None) -> Figure:
    """Line plot of several curves against one x axis (convergence, bias, mixing).

    Args:
        x: x values shared by the curves (None when every curve brings its own).
        curves: legend label -> y values (same length as ``x``), or ``(x_i, y_i)`` for a curve with its
            own x values; NaN values leave gaps.
        title, xlabel, ylabel: text of the axes.
        logx: logarithmic x axis; default False.
        hline: draw a dashed reference line at this y (e.g. chance); default None.
        hline_label: legend label of the reference line.
        ylim: y limits; default automatic.
        ax: draw into this axes instead of a new figure.
        styles: legend label (or a prefix of it) -> matplotlib format string (e.g. ``"o-"``); default ``"o-"``.

    Returns:
        The figure holding the axes.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
    else:
        fig = ax.figure
    for label, y in curves.items():
        if isinstance(y, tuple) and len(y) == 2:
            xs, ys = _np(y[0]), _np(y[1])
        else:
            xs, ys = _np(x), _np(y)
        if ys.shape != xs.shape:
            raise ValueError(f"curve {label!r} has {ys.shape} values for {xs.shape} x values")
        st = styles or {}
        fmt = st.get(label) or next((v for k, v in st.items() if label.startswith(k)), "o-")
        ax.plot(xs, ys, fmt, label=label, markersize=3)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle="--", linewidth=1, label=hline_label)
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if curves or hline_label:
        ax.legend(fontsize=7)
    return fig


def plot_filters_vs_sta(weights: ArrayLike, sta: ArrayLike | Mapping[str, ArrayLike], r: ArrayLike | None,
                        title: str, *, max_channels: int | None = 20, normalize: bool = True,
                        panel_size: float = 1.0) -> Figure:
    """Learned first-layer filters above their STAs, channel by channel, with the correlation r.

    Args:
        weights: conv filters ``(K, C, h, w)`` (channels averaged when ``C > 1``).
        sta: STAs ``(K, C, h, w)`` of the same layer, or several (row label -> STAs),
            e.g. ``{"noise, pooled": ..., "noise, centre": ..., "real, pooled": ...}``.
        r: per-channel correlation ``(K,)`` of the first STA row with the filters (shown
            in the column titles), or None.
        title: the figure title (model, dataset, layer, noise, n).
        max_channels: show at most this many channels; default 20.
        normalize: scale each panel to ``max |value| = 1`` (filters and STAs differ in scale);
            default True.
        panel_size: inches per panel.

    Returns:
        The figure: row 0 the filters, then one row per STA; signed ``RdBu_r`` colour scale.
    """
    rows_in = dict(sta) if isinstance(sta, Mapping) else {"STA": sta}
    w = to_panels(weights)
    k = len(w) if max_channels is None else min(len(w), max_channels)
    rr = None if r is None else _np(r)
    col_titles = [f"ch {i}" + (f"\nr={rr[i]:.2f}" if rr is not None and np.isfinite(rr[i]) else "")
                  for i in range(k)]
    rows = [(w[:k], "learned filter", True)] + [(to_panels(s)[:k], label, True) for label, s in rows_in.items()]
    return plot_image_rows(rows, col_titles, title, shared_signed_scale=True, normalize=normalize,
                           panel_size=panel_size, empty_text="never active",
                           colorbar_label="normalised value" if normalize else "value")


def plot_activation_maps(maps: ArrayLike | Mapping[str, ArrayLike], classes: Sequence[str], title: str,
                         *, channel: int | None = None, counts: Mapping[str, ArrayLike] | ArrayLike | None = None,
                         panel_size: float = 1.15, colorbar_label: str | None = None) -> Figure:
    """Per-class mean activation maps, one row per stimulus kind, on ONE colour scale.

    Args:
        maps: mean activations ``(K, C, H, W)`` / ``(K, D)`` or row label -> such tensors
            (e.g. ``{"real (by label)": ..., "noise (by prediction)": ...}``).
        classes: the ``K`` class names (column titles).
        title: the figure title (model, dataset, layer, n).
        channel: the channel shown; None averages over channels.
        counts: per row, the samples per class ``(K,)``, shown under the class names; optional.
        panel_size: inches per panel.
        colorbar_label: default "mean activation (channel k)" or "(mean over channels)".

    Returns:
        The figure. Sequential ``viridis`` for non-negative maps, ``RdBu_r`` centred at zero otherwise.
    """
    rows_in = dict(maps) if isinstance(maps, Mapping) else {"": maps}
    cnt = (dict(counts) if isinstance(counts, Mapping) else {next(iter(rows_in)): counts}) if counts is not None \
        else {}
    arrs = {label: channel_maps(m, channel) for label, m in rows_in.items()}
    k = len(classes)
    for label, a in arrs.items():
        if len(a) != k:
            raise ValueError(f"{label!r}: {len(a)} classes of maps but {k} class names")
    allv = np.concatenate([a.ravel() for a in arrs.values()])
    finite = allv[np.isfinite(allv)]
    signed = finite.size > 0 and finite.min() < 0
    norm = _norm(allv, signed, None)
    cm = SIGNED_CMAP if signed else ACTIVATION_CMAP
    nrows = len(arrs)
    dense = next(iter(arrs.values())).shape[1] == 1
    if dense:  # a dense layer: one class-by-unit heatmap per stimulus
        fig, axs = plt.subplots(nrows, 1, figsize=(9, 2.3 * nrows + 0.6), squeeze=False, layout="constrained")
        im = None
        for ax, (label, a) in zip(axs[:, 0], arrs.items()):
            im = ax.imshow(np.ma.masked_invalid(a[:, 0, :]), aspect="auto", cmap=cm, norm=norm,
                           interpolation="nearest")
            c_row = _np(cnt[label]) if label in cnt and cnt[label] is not None else None
            ticks = [f"{classes[j]}" + (f" (n={int(c_row[j]):,})" if c_row is not None else "") for j in range(k)]
            ax.set_yticks(range(k), ticks, fontsize=7)
            ax.set_xlabel("unit")
            ax.set_ylabel("class")
            ax.set_title(label.replace("\n", " "), fontsize=9)
        fig.colorbar(im, ax=axs[:, 0], label=colorbar_label or "mean activation", shrink=0.9)
        fig.suptitle(title, fontsize=11)
        return fig
    grid = _PanelGrid(nrows, k, panel_size, panel_title_lines=1 + bool(cnt),
                      row_labels=any(bool(lb) for lb in arrs), suptitle=title)
    fig, axes = grid.fig, grid.axes
    im = None
    for r, (label, a) in enumerate(arrs.items()):
        c_row = _np(cnt[label]) if label in cnt and cnt[label] is not None else None
        for j in range(k):
            ax = axes[r, j]
            im = ax.show(a[j], norm, cm)
            t = str(classes[j]) if r == 0 else ""
            if c_row is not None:
                t = (t + "\n" if t else "") + f"n={int(c_row[j]):,}"
            if t:
                ax.set_title(t, fontsize=7)
        if label:
            axes[r, 0].set_ylabel(label, fontsize=8)
    what = f"channel {channel}" if channel is not None else "mean over channels"
    grid.colorbar(im, range(nrows), colorbar_label or f"mean activation ({what})")
    return fig


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Mapping[str, str] | None = None,
                   formats: Mapping[str, str] | None = None) -> str:
    """A Markdown table from a list of dicts (pandas is not a dependency).

    Args:
        rows: one dict per row.
        columns: key -> header, in order; default every key of the first row, as is.
        formats: key -> format spec (e.g. ``".3f"``, ``".1%"``); NaN and None print as "–".

    Returns:
        The table as a Markdown string (for ``IPython.display.Markdown``).
    """
    cols = dict(columns) if columns is not None else {k: k for k in (rows[0] if rows else {})}
    fmts = formats or {}

    def cell(key: str, v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        spec = fmts.get(key)
        text = format(v, spec) if spec else str(v)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cols.values()) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(k, r.get(k)) for k in cols) + " |" for r in rows]
    return "\n".join(lines)


def plot_activation_pair(maps: Mapping[str, ArrayLike], title: str, *, colorbar_label: str = "mean activation",
                         xlabel: str = "unit") -> Figure:
    """One class's mean activation under several stimuli (e.g. real vs noise), on one colour scale.

    Args:
        maps: panel title -> a 2-D map ``(H, W)`` (conv channel) or a 1-D vector ``(D,)`` (dense layer,
            drawn as lines in one axes).
        title: the figure title (model, dataset, layer, class, channel).
        colorbar_label: label of the shared colorbar (2-D maps).
        xlabel: x label of 1-D vectors; default "unit".

    Returns:
        The figure.
    """
    arrs = {k: _np(v) for k, v in maps.items()}
    if all(a.ndim == 1 for a in arrs.values()):
        fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
        for k, a in arrs.items():
            ax.plot(np.arange(len(a)), a, label=k, linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(colorbar_label)
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.set_title(title, fontsize=10)
        return fig
    if any(a.ndim != 2 for a in arrs.values()):
        raise ValueError(f"expected 2-D maps or 1-D vectors, got shapes {[a.shape for a in arrs.values()]}")
    allv = np.concatenate([a.ravel() for a in arrs.values()])
    finite = allv[np.isfinite(allv)]
    signed = finite.size > 0 and finite.min() < 0
    norm = _norm(allv, signed, None)
    fig, axes = plt.subplots(1, len(arrs), figsize=(2.6 * len(arrs) + 1.2, 3.0), squeeze=False,
                             layout="constrained")
    im = None
    for ax, (k, a) in zip(axes[0], arrs.items()):
        im = _show(ax, a, norm, SIGNED_CMAP if signed else ACTIVATION_CMAP)
        ax.set_title(k, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.85, label=colorbar_label)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_curve_grid(x: ArrayLike | Sequence[float] | None, panels: Mapping[str, Mapping[str, object]],
                    suptitle: str, xlabel: str, ylabel: str, *, ncols: int = 2, logx: bool = False,
                    hline: float | None = None, hline_label: str | None = None,
                    ylim: tuple[float, float] | None = None, styles: Mapping[str, str] | None = None) -> Figure:
    """Several :func:`plot_curves` panels side by side (e.g. test images | noise, or one per dataset).

    Args:
        x: shared x values (None when every curve is an ``(x, y)`` pair).
        panels: panel title -> (legend label -> y or ``(x, y)``).
        suptitle: the figure title.
        xlabel, ylabel, logx, hline, hline_label, ylim, styles: as in :func:`plot_curves`.
        ncols: panels per row; default 2.

    Returns:
        The figure.
    """
    names = list(panels)
    nrows, ncols = _grid(len(names), ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes.flat, names):
        plot_curves(x, panels[name], name, xlabel, ylabel, logx=logx, hline=hline, hline_label=hline_label,
                    ylim=ylim, ax=ax, styles=styles)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(suptitle)
    return fig


def plot_grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
                      *, hline: float | None = None, hline_label: str | None = None,
                      ylim: tuple[float, float] | None = None) -> Figure:
    """Grouped bar chart: one group per entry of ``groups`` (e.g. model/dataset), one bar per series.

    Args:
        groups: x tick labels.
        series: legend label -> one value per group (NaN: no bar).
        title, ylabel: text.
        hline: dashed reference line (e.g. chance); default none.
        hline_label: its legend label.
        ylim: y limits; default automatic.

    Returns:
        The figure.
    """
    k = len(series)
    width = 0.8 / max(k, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(groups) * max(k, 1) + 2), 3.8), layout="constrained")
    for i, (label, vals) in enumerate(series.items()):
        v = _np(vals)
        if len(v) != len(groups):
            raise ValueError(f"series {label!r} has {len(v)} values for {len(groups)} groups")
        ax.bar(np.arange(len(groups)) + (i - (k - 1) / 2) * width, np.nan_to_num(v), width, label=label)
    if hline is not None:
        ax.axhline(hline, color="gray", linestyle="--", linewidth=1, label=hline_label)
    ax.set_xticks(range(len(groups)), list(groups), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def find_upward(relpath: str, start: str | None = None) -> "Path | None":
    """The first existing ``<dir>/relpath`` for ``dir`` = ``start`` (default the working directory),
    its parents, then the checkout that holds this package; None if there is none. Notebooks run from
    ``book/`` (or a temporary folder), result files live at the repository root."""
    from pathlib import Path

    here = Path(start or ".").resolve()
    repo = Path(__file__).resolve().parents[1]  # the checkout, when the package is installed from it
    for d in (here, *here.parents, repo):
        if (d / relpath).exists():
            return d / relpath
    return None


def load_engine_benchmark(path: "str | None" = None) -> tuple[dict | None, str]:
    """The engine benchmark's JSON (written by ``benchmarks/engine_benchmark.py``) and a note on where it came from.

    Looks for ``benchmarks/results/engine_benchmark.json`` (the full run) from the working directory
    upward, else ``engine_benchmark.quick.json`` (a quick run; the note says so).

    Args:
        path: read this file instead.

    Returns:
        ``(data, note)``: ``data`` is None when no file was found or it cannot be read, and ``note``
        says why (in Markdown).
    """
    import json
    from pathlib import Path

    candidates = [Path(path)] if path else [p for p in (find_upward("benchmarks/results/engine_benchmark.json"),
                                                        find_upward("benchmarks/results/engine_benchmark.quick.json"))
                                            if p is not None]
    if not candidates or not candidates[0].exists():
        where = path or "benchmarks/results/engine_benchmark.json"
        return None, (f"**No benchmark results found** (`{where}` is missing). Run "
                      f"`.venv/bin/python benchmarks/engine_benchmark.py` from the repository root "
                      f"(or `--quick` for a short run) and rebuild this page.")
    p = candidates[0]
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        return None, f"**The benchmark file `{p.name}` cannot be read** ({type(exc).__name__}: {exc})."
    if not isinstance(data, dict) or not isinstance(data.get("measurements"), list):
        return None, f"**The benchmark file `{p.name}` has no `measurements` list**; it was written by another version."
    note = f"Results from `benchmarks/results/{p.name}`"
    if p.name.endswith(".quick.json"):
        note += " (a **quick** run: small n; the full run's `engine_benchmark.json` is missing)"
    meta = data.get("meta", {})
    if isinstance(meta, dict) and meta.get("loadavg_start") is not None:
        la = meta.get("loadavg_start"), meta.get("loadavg_end")
        fmt = [f"{v[0]:.2f}" if isinstance(v, (list, tuple)) and v else "?" for v in la]
        note += f"; 1-minute load average {fmt[0]} at start and {fmt[1]} at end"
    return data, note + "."


def benchmark_table(data: Mapping[str, object]) -> str:
    """Markdown table of the benchmark's measurements (kind, device, n, seconds, samples/s, peak RSS)."""
    rows = [m for m in data.get("measurements", []) if isinstance(m, Mapping)]  # type: ignore[union-attr]
    cols = {"device": "device", "kind": "kind", "n": "n", "seconds": "seconds", "samples_per_s": "samples/s",
            "unit_samples_per_s": "unit-samples/s", "peak_rss_mb": "peak RSS (MB)"}
    return markdown_table(rows, cols, {"n": ",", "seconds": ".1f", "samples_per_s": ",.0f",
                                       "unit_samples_per_s": ".3g", "peak_rss_mb": ",.0f"})


def plot_benchmark(data: Mapping[str, object], title: str = "Engine benchmark") -> Figure:
    """Throughput (samples/s) and peak memory (RSS, MB) against n, one line per (device, kind).

    Returns:
        The figure (two log-x panels).
    """
    rows = [m for m in data.get("measurements", []) if isinstance(m, Mapping)]  # type: ignore[union-attr]
    series: dict[str, list[Mapping]] = {}
    for m in rows:
        if m.get("n") is None:
            continue
        series.setdefault(f"{m.get('kind', '?')} ({m.get('device', '?')})", []).append(m)
    thr, mem = {}, {}
    for label, ms in series.items():
        ms = sorted(ms, key=lambda m: float(m["n"]))
        n = [float(m["n"]) for m in ms]
        thr[label] = (n, [float(m.get("samples_per_s") or np.nan) for m in ms])
        mem[label] = (n, [float(m.get("peak_rss_mb") or np.nan) for m in ms])
    meta = data.get("meta", {}) if isinstance(data.get("meta"), Mapping) else {}
    arch = meta.get("arch", "model")  # type: ignore[union-attr]
    sup = f"{title}: {arch}{' (trained)' if meta.get('trained') else ' (untrained)'}, Gaussian noise"  # type: ignore[union-attr]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    plot_curves(None, thr, "throughput", "n (samples)", "samples per second", logx=True, ax=axes[0])
    plot_curves(None, mem, "peak memory of the process", "n (samples)", "peak RSS (MB)", logx=True, ax=axes[1])
    fig.suptitle(sup)
    return fig


def profile_table(profiles: Mapping[str, object]) -> str:
    """Markdown table of the profiles' costly settings (one column per profile)."""
    from dataclasses import asdict

    dicts = {name: asdict(p) for name, p in profiles.items()}  # type: ignore[call-overload]
    keys = list(next(iter(dicts.values())))
    rows = []
    for k in keys:
        row = {"setting": f"`{k}`"}
        for name, d in dicts.items():
            v = d[k]
            row[name] = ", ".join(f"{a}: {b:,}" if isinstance(b, int) else f"{a}: {b}" for a, b in v.items()) \
                if isinstance(v, dict) else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
            row[name] = row[name] or "–"
        rows.append(row)
    return markdown_table(rows, {"setting": "setting", **{n: n for n in dicts}})


_OVERVIEW_COLUMNS = {"model": "model", "dataset": "dataset", "test_accuracy": "test acc.",
                     "noise_entropy_bits": "noise entropy (bits)", "top_noise": "noise mostly called",
                     "ci_template_accuracy": "CI-template acc.", "mean_template_accuracy": "mean-template acc.",
                     "feedback_diagonal": "CI fed back: diagonal", "sta_filter_r": "conv1 STA-filter r",
                     "n_noise": "n noise"}


def overview_markdown(rows: Sequence[Mapping[str, object]]) -> str:
    """The results overview (rows of :func:`~wna_helpers.study.overview_row`) as a Markdown table,
    with dataset display names and the top noise class by name."""
    from .data import class_names

    out = []
    for r in rows:
        d = dict(r)
        ds = str(d["dataset"])
        d["top_noise"] = f"{class_names(ds)[int(d['top_noise_class'])]} ({float(d['top_noise_share']):.0%})"
        d["dataset"] = dataset_label(ds)
        out.append(d)
    return markdown_table(out, _OVERVIEW_COLUMNS, {
        "test_accuracy": ".1%", "noise_entropy_bits": ".2f", "ci_template_accuracy": ".1%",
        "mean_template_accuracy": ".1%", "sta_filter_r": ".3f", "n_noise": ","})


def describe_biases(rows: Sequence[Mapping[str, object]], chance: float = 0.1) -> str:
    """A paragraph per dataset saying, from the overview rows, where each model sends pure noise and
    what its classification images are worth (Markdown).

    Args:
        rows: rows of :func:`~wna_helpers.study.overview_row` (with ``cis``, the number of classes that have
            a CI, when known: :func:`~wna_helpers.study.overview_rows` adds it).
        chance: accuracy of guessing; default 0.1.
    """
    from .data import class_names

    by_ds: dict[str, list[Mapping[str, object]]] = {}
    for r in rows:
        by_ds.setdefault(str(r["dataset"]), []).append(r)
    paras = []
    for ds, rs in by_ds.items():
        names = class_names(ds)
        k = len(names)
        parts = []
        for r in rs:
            share, h = float(r["top_noise_share"]), float(r["noise_entropy_bits"])  # type: ignore[arg-type]
            top = names[int(r["top_noise_class"])]  # type: ignore[call-overload]
            if share >= 0.9:
                kind = f"sends almost all noise ({share:.0%}) to **{top}**"
            elif share >= 0.4:
                kind = f"is biased toward **{top}** ({share:.0%} of the noise, entropy {h:.2f} bits)"
            else:
                kind = f"spreads noise over the classes (largest share {top}, {share:.0%}; entropy {h:.2f} bits)"
            acc = float(r["ci_template_accuracy"])  # type: ignore[arg-type]
            verdict = "well above" if acc >= 2 * chance else ("above" if acc > chance * 1.2 else "near")
            n_ci = int(r.get("cis", k))  # type: ignore[call-overload]
            back = (f"its only CI is given back its own class" if n_ci == 1 and int(r["feedback_diagonal"]) == 1  # type: ignore[call-overload]
                    else f"{int(r['feedback_diagonal'])} of its {n_ci} CIs are given back their own class")  # type: ignore[call-overload]
            parts.append(f"`{r['model']}` {kind}; its CIs as templates reach {acc:.1%} on the test set "
                         f"({verdict} chance, {chance:.0%}), and {back}")
        biased = [str(r["model"]) for r in rs if float(r["top_noise_share"]) >= 0.4]  # type: ignore[arg-type]
        lead = (f"On **{dataset_label(ds)}**, {len(biased)} of {len(rs)} models are strongly biased "
                f"(40 % or more of the noise in one class)" + (f": {', '.join(biased)}." if biased else "."))
        paras.append(lead + " " + "; ".join(parts) + ".")
    return "\n\n".join(paras)


def count_notes(counts: ArrayLike, prefix: str = "n=") -> list[str]:
    """Per-panel notes ``["n=1,234", ...]`` from per-class counts (for :func:`plot_image_rows`)."""
    return [f"{prefix}{int(c):,}" for c in _np(counts)]


def benchmark_targets(data: Mapping[str, object]) -> str:
    """Markdown table of the benchmark's targets against the measured ratios, per device.

    Reads ``data["targets"]`` (name -> target) and ``data["ratios"][device][name]``; a ratio
    that is missing shows as "–".
    """
    targets = data.get("targets") or {}
    ratios = data.get("ratios") or {}
    if not isinstance(targets, Mapping) or not isinstance(ratios, Mapping) or not targets:
        return "_The benchmark file lists no targets._"
    rows = []
    for dev, r in ratios.items():
        if not isinstance(r, Mapping):
            continue
        for name, target in targets.items():
            v = r.get(name)
            val = float(v) if isinstance(v, (int, float)) else float("nan")
            met = "–" if val != val else ("yes" if val >= float(target) else "no")
            rows.append({"device": dev, "ratio": f"`{name}`", "target": float(target), "measured": val, "met": met})
    return markdown_table(rows, {"device": "device", "ratio": "ratio", "target": "target (at least)",
                                 "measured": "measured", "met": "met"}, {"target": ".3g", "measured": ".3g"})
