"""Image grids: classification images, STAs, class means, filters and activation maps.

Signed maps use the diverging ``RdBu_r`` colormap centred at zero (``vmin = -vmax``) with one shared
colorbar per scale; the grids are laid out by :class:`~wna_helpers.book.plots.layout.PanelGrid`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .layout import (PAGE_WIDTH, ACTIVATION_CMAP, SIGNED_CMAP, UNSIGNED_CMAP, ArrayLike, grid_shape, count_lines, panel_norm, as_array, PanelGrid, show_panel, channel_maps, normalize_panels, symmetric_limit, to_panels)

__all__ = ["plot_images", "plot_image_rows", "plot_filters_vs_sta", "plot_activation_maps", "plot_activation_pair"]


def plot_images(images: ArrayLike | Sequence[ArrayLike], titles: Sequence[str] | None = None,
                suptitle: str = "", *, signed: bool = True, ncols: int | None = 10,
                vmax: float | None = None, cmap: str | None = None, normalize: bool = False,
                colorbar_label: str | None = None, panel_size: float = 1.25) -> Figure:
    """A grid of images (classification images, STAs, means) with ONE shared colour scale.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or a sequence of 2-D images (see :func:`to_panels`).
            NaN panels (a class without samples) are drawn blank with the words "no samples".
        titles: one title per image (e.g. class names with counts); default none.
        suptitle: the figure title (say model, dataset, noise kind and n); default none.
        signed: True: diverging ``RdBu_r`` centred at zero with ``vmin = -vmax``; False: ``gray``
            from the minimum to the maximum. Default True.
        ncols: panels per row; default 10.
        vmax: colour limit; default ``max |value|`` (signed) or the maximum (unsigned).
        cmap: override the colormap; default None (by ``signed``).
        normalize: divide each panel by its own ``max |value|`` first (shapes, not sizes, compared);
            the colorbar then reads "normalised value". Default False.
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
    nrows, ncols = grid_shape(n, ncols)
    grid = PanelGrid(nrows, ncols, panel_size, panel_title_lines=count_lines(titles), suptitle=suptitle)
    norm = panel_norm(arr, signed, vmax)
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
                    empty_text: str = "no samples", outlines: Sequence[ArrayLike | None] | None = None) -> Figure:
    """Rows of images, each row with its own colour scale and colorbar (e.g. CI next to class mean).

    Args:
        rows: ``(images, row_label, signed)`` per row, or ``(images, row_label, signed, counts)`` where
            ``counts`` holds the samples behind each panel (written under it as ``n=...``), or a list of
            short strings written as they are; every row has the same number of images.
        col_titles: one title per column (e.g. class names); default none.
        suptitle: the figure title; default none.
        shared_signed_scale: give all signed rows the same ``vmax`` (and one colorbar for them),
            e.g. Gaussian and uniform CIs compared on one scale; default False.
        normalize: divide each panel by its own ``max |value|`` first; default False.
        panel_size: inches per panel; default 1.2.
        colorbar_label: label of every colorbar; default "pixel value" (or "normalised value").
        min_count: panels with numeric counts below this do not set the colour limits (a CI from a
            handful of samples is mostly noise and would wash out the others; it saturates instead
            and its note says "few"); default 0.
        empty_text: written on an all-NaN panel; default "no samples" (for STAs: "never active").
        outlines: per row, None or a boolean mask ``(ncols, [C,] H, W)`` (channels: any) whose pixels
            are outlined in black, e.g. the significant pixels of each CI; default none.

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
    if outlines is not None and len(outlines) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(outlines)} outline masks (give None for a row without)")
    notes, scale_mask = zip(*[_row_notes(row[3] if len(row) > 3 else None, ncols, min_count) for row in rows])
    nrows = len(panels)
    grid = PanelGrid(nrows, ncols, panel_size, col_title_lines=count_lines(col_titles),
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
        norm = panel_norm(arr[scale_mask[r]], signed, shared if signed else None)
        cm = SIGNED_CMAP if signed else UNSIGNED_CMAP
        im = None
        for c in range(ncols):
            ax = axes[r, c]
            im = ax.show(arr[c], norm, cm, empty_text)
            if outlines is not None and outlines[r] is not None:
                m = as_array(outlines[r])[c]
                ax.outline(m.reshape(-1, *m.shape[-2:]).any(0))
            if r == 0 and col_titles is not None:
                ax.set_title(str(col_titles[c]), fontsize=8 if grid.pw >= 0.7 else 7)
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


def _row_notes(extra: Sequence | None, ncols: int, min_count: int) -> tuple[list[str] | None, np.ndarray]:
    """A row's notes under its panels (given as text, or ``n=`` from counts, "few" below ``min_count``) and which
    of its panels set the colour scale (those with at least ``min_count`` samples; all when none has)."""
    if extra is not None and len(extra) != ncols:
        raise ValueError(f"{len(extra)} counts or notes for {ncols} images")
    if extra is None or (len(extra) and isinstance(extra[0], str)):
        return (None if extra is None else [str(t) for t in extra]), np.ones(ncols, dtype=bool)
    cnt = as_array(extra)
    mask = cnt >= max(min_count, 1)
    return ([f"n={int(c):,}" + (" (few)" if 0 < c < min_count else "") for c in cnt],
            mask if mask.any() else np.ones(ncols, dtype=bool))


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
        panel_size: inches per panel; default 1.0.

    Returns:
        The figure: row 0 the filters, then one row per STA; signed ``RdBu_r`` colour scale.
    """
    rows_in = dict(sta) if isinstance(sta, Mapping) else {"STA": sta}
    w = to_panels(weights)
    k = len(w) if max_channels is None else min(len(w), max_channels)
    rr = None if r is None else as_array(r)
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
        channel: the channel shown; default None: the mean over channels.
        counts: per row, the samples per class ``(K,)``, shown under the class names; default None.
        panel_size: inches per panel; default 1.15.
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
    norm = panel_norm(allv, signed, None)
    cm = SIGNED_CMAP if signed else ACTIVATION_CMAP
    nrows = len(arrs)
    dense = next(iter(arrs.values())).shape[1] == 1
    if dense:  # a dense layer: one class-by-unit heatmap per stimulus
        fig, axs = plt.subplots(nrows, 1, figsize=(9, 2.3 * nrows + 0.6), squeeze=False, layout="constrained")
        im = None
        for ax, (label, a) in zip(axs[:, 0], arrs.items()):
            im = ax.imshow(np.ma.masked_invalid(a[:, 0, :]), aspect="auto", cmap=cm, norm=norm,
                           interpolation="nearest")
            c_row = as_array(cnt[label]) if label in cnt and cnt[label] is not None else None
            ticks = [f"{classes[j]}" + (f" (n={int(c_row[j]):,})" if c_row is not None else "") for j in range(k)]
            ax.set_yticks(range(k), ticks, fontsize=7)
            ax.set_xlabel("unit")
            ax.set_ylabel("class")
            ax.set_title(label.replace("\n", " "), fontsize=9)
        fig.colorbar(im, ax=axs[:, 0], label=colorbar_label or "mean activation", shrink=0.9)
        fig.suptitle(title, fontsize=11)
        return fig
    grid = PanelGrid(nrows, k, panel_size, panel_title_lines=1 + bool(cnt),
                      row_labels=any(bool(lb) for lb in arrs), suptitle=title)
    fig, axes = grid.fig, grid.axes
    im = None
    for r, (label, a) in enumerate(arrs.items()):
        c_row = as_array(cnt[label]) if label in cnt and cnt[label] is not None else None
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



def plot_activation_pair(maps: Mapping[str, ArrayLike], title: str, *, colorbar_label: str = "mean activation",
                         unit_names: Sequence[str] | None = None) -> Figure:
    """One class's mean activation under several stimuli (e.g. real vs noise), on one colour scale.

    Args:
        maps: panel title -> a 2-D map ``(H, W)`` (conv channel) or a 1-D vector ``(D,)`` (dense layer).
        title: the figure title (model, dataset, layer, class, channel).
        colorbar_label: what the values are (colorbar or y label); default "mean activation".
        unit_names: names of the units of 1-D vectors (a logit layer: the class names): drawn as grouped
            bars, one group per unit. Without names, a vector of D units is drawn as an image of
            ``ceil(D / cols)`` rows (units in reading order, the last row padded), like a conv map.

    Returns:
        The figure.
    """
    arrs = {k: as_array(v) for k, v in maps.items()}
    if all(a.ndim == 1 for a in arrs.values()):
        if unit_names is not None:
            return _unit_bars(arrs, title, colorbar_label, unit_names)
        arrs = {f"{k}\n(units in rows of {_row_length(len(a))})": _as_grid(a) for k, a in arrs.items()}
    if any(a.ndim != 2 for a in arrs.values()):
        raise ValueError(f"expected 2-D maps or 1-D vectors, got shapes {[a.shape for a in arrs.values()]}")
    allv = np.concatenate([a.ravel() for a in arrs.values()])
    finite = allv[np.isfinite(allv)]
    signed = finite.size > 0 and finite.min() < 0
    norm = panel_norm(allv, signed, None)
    fig, axes = plt.subplots(1, len(arrs), figsize=(2.6 * len(arrs) + 1.2, 3.0), squeeze=False,
                             layout="constrained")
    im = None
    for ax, (k, a) in zip(axes[0], arrs.items()):
        im = show_panel(ax, a, norm, SIGNED_CMAP if signed else ACTIVATION_CMAP)
        ax.set_title(k, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.85, label=colorbar_label)
    fig.suptitle(title, fontsize=10)
    return fig



def _row_length(d: int) -> int:
    """Units per row of a dense layer drawn as an image: near-square, at least 1."""
    return max(1, int(np.ceil(np.sqrt(d))))


def _as_grid(vector: np.ndarray) -> np.ndarray:
    """A vector of D units as a (rows, cols) image in reading order, padded with NaN."""
    cols = _row_length(len(vector))
    rows = -(-len(vector) // cols)
    out = np.full(rows * cols, np.nan)
    out[:len(vector)] = vector
    return out.reshape(rows, cols)


def _unit_bars(arrs: Mapping[str, np.ndarray], title: str, ylabel: str, names: Sequence[str]) -> Figure:
    """Grouped bars: one group per named unit, one bar per stimulus."""
    d = len(names)
    if any(len(a) != d for a in arrs.values()):
        raise ValueError(f"unit_names has {d} names but the vectors have {[len(a) for a in arrs.values()]} units")
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 3.2), layout="constrained")
    width = 0.8 / len(arrs)
    for i, (k, a) in enumerate(arrs.items()):
        ax.bar(np.arange(d) + (i - (len(arrs) - 1) / 2) * width, a, width, label=k.replace("\n", " "))
    ax.set_xticks(np.arange(d), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="k", linewidth=0.5)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig
