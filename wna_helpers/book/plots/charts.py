"""Charts: class histograms, confusion matrices, curves, grouped bars and the benchmarks.

Class axes carry class names (pass ``class_names(dataset)``); grids of charts share one colour
scale or one set of axes labels and are set up by :func:`~wna_helpers.book.plots.layout.subplot_grid`.
"""
from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ...methods.summaries import entropy_bits
from ...engine.stimuli import NOISE_SHORTHANDS, Stimulus, as_stimulus
from .layout import PAGE_WIDTH, ArrayLike, as_array, subplot_grid

__all__ = ["plot_class_histogram", "plot_class_histograms", "plot_confusion", "plot_confusion_grid", "plot_curves",
           "plot_curve_grid", "plot_grouped_bars", "plot_benchmark", "plot_speed"]


def stimulus_label(noise: Stimulus | str | Mapping[str, object]) -> str:
    """:meth:`~wna_helpers.engine.stimuli.Stimulus.label` of a stimulus, a shorthand (``"uniform"``) or the
    :meth:`~wna_helpers.engine.stimuli.Stimulus.describe` dict of a noise kind (as results and benchmark JSON
    record it); a description that names no known noise kind gives its ``kind`` as is."""
    if not isinstance(noise, Mapping):
        return as_stimulus(noise).label()
    kind = str(noise.get("kind", "noise"))
    cls = NOISE_SHORTHANDS.get(kind)
    if cls is None:
        return kind
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v)  # type: ignore[arg-type]
                      for k, v in noise.items() if k in names}).label()
    except (TypeError, ValueError):
        return kind


def _histogram(ax: Axes, counts: np.ndarray, classes: Sequence[str], title: str, fontsize: float = 7,
               ymax: float = 1.12) -> None:
    """Bars of the shares with the counts above them (``fontsize - 1``), class names at ``fontsize``, the title
    at ``fontsize + 2``; the y axis up to ``ymax`` leaves room for the counts."""
    total = counts.sum()
    share = counts / total if total > 0 else np.zeros_like(counts, dtype=float)
    h = entropy_bits(torch.as_tensor(counts)) if total > 0 else float("nan")
    bars = ax.bar(range(len(counts)), share, color="tab:blue")
    for b, c in zip(bars, counts):
        ax.annotate(f"{int(c):,}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                    va="bottom", fontsize=fontsize - 1, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(counts)), [str(c) for c in classes], rotation=60, ha="right", fontsize=fontsize)
    ax.set_yticks(np.linspace(0, 1, 6))  # shares: no tick above 1 in the room left for the counts
    ax.tick_params(axis="y", labelsize=fontsize)
    ax.set_ylim(0, ymax)
    ax.set_ylabel("share of noise samples", fontsize=fontsize + 1)
    ax.set_xlabel("predicted class", fontsize=fontsize + 1)
    ax.set_title(f"{title}\nentropy {h:.2f} of {math.log2(len(counts)):.2f} bits", fontsize=fontsize + 2)


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
    c = as_array(counts)
    if len(c) != len(classes):
        raise ValueError(f"{len(c)} counts but {len(classes)} class names")
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    _histogram(ax, c, classes, title)
    return fig


def plot_class_histograms(panels: Mapping[str, ArrayLike], classes: Sequence[str], suptitle: str = "",
                          *, ncols: int = 2) -> Figure:
    """Several class histograms (e.g. one per model) in one figure; see :func:`plot_class_histogram`.

    The figure is :data:`~wna_helpers.book.plots.layout.PAGE_WIDTH` wide whatever ``ncols`` (shown unscaled, so
    its fonts keep their size: class names 8 pt, counts 7 pt, panel titles 10 pt, wrapped to the panel).

    Args:
        panels: panel title -> counts ``(K,)``.
        classes: the ``K`` class names.
        suptitle: the figure title (dataset, noise kind, n); default none.
        ncols: panels per row; default 2.

    Returns:
        The figure.
    """
    names = list(panels)
    pw = PAGE_WIDTH / max(1, min(ncols, len(names)))
    fig, axes = subplot_grid(len(names), ncols, pw, 3.2)
    for ax, name in zip(axes.flat, names):
        c = as_array(panels[name])
        if len(c) != len(classes):
            raise ValueError(f"{name}: {len(c)} counts but {len(classes)} class names")
        _histogram(ax, c, classes, _wrap(name, pw - 0.6, 10), fontsize=8, ymax=1.3)
    if suptitle:
        fig.suptitle(_wrap(suptitle, PAGE_WIDTH, 12), fontsize=12)
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
    m = as_array(matrix)
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
        suptitle: the figure title; default none.
        ncols: panels per row; default 3.

    Returns:
        The figure.
    """
    names = list(matrices)
    k = len(classes)
    mats = {n: as_array(matrices[n]) for n in names}
    for n, m in mats.items():
        if m.shape != (k, k):
            raise ValueError(f"{n}: matrix shape {m.shape} does not match {k} classes")
    pw = min(4.3, (PAGE_WIDTH - 0.8) / max(1, min(ncols, len(names))))  # fits the page: shown unscaled
    fig, axes = subplot_grid(len(names), ncols, pw, pw * 0.93 + 0.3, extra_w=0.8)
    norm = Normalize(0, max(max(float(np.nanmax(m)) for m in mats.values()), 1.0))
    im = None
    for ax, n in zip(axes.flat, names):
        im = _confusion(ax, mats[n], classes, n, xlabel, ylabel, norm, annotate, cmap)
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
        hline_label: legend label of the reference line; default None.
        ylim: y limits; default automatic.
        ax: draw into this axes instead of a new figure; default None (a new figure).
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
            xs, ys = as_array(y[0]), as_array(y[1])
        else:
            xs, ys = as_array(x), as_array(y)
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
        if len(curves) + bool(hline_label) > 6:  # a long legend goes to the right of the axes
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        else:
            ax.legend(fontsize=8)
    return fig



def plot_curve_grid(x: ArrayLike | Sequence[float] | None, panels: Mapping[str, Mapping[str, object]],
                    suptitle: str, xlabel: str, ylabel: str, *, ncols: int = 1, logx: bool = False,
                    hline: float | None = None, hline_label: str | None = None,
                    ylim: tuple[float, float] | None = None, styles: Mapping[str, str] | None = None) -> Figure:
    """Several :func:`plot_curves` panels side by side (e.g. test images | noise, or one per dataset).

    Args:
        x: shared x values (None when every curve is an ``(x, y)`` pair).
        panels: panel title -> (legend label -> y or ``(x, y)``).
        suptitle: the figure title.
        xlabel, ylabel, logx, hline, hline_label, ylim, styles: as in :func:`plot_curves`.
        ncols: panels per row; default 1 (panels stacked, each the width of the page: a figure is
            :data:`~wna_helpers.book.plots.layout.PAGE_WIDTH` wide whatever ``ncols``, so it reads at page width).

    Returns:
        The figure.
    """
    names = list(panels)
    fig, axes = subplot_grid(len(names), ncols, PAGE_WIDTH / max(1, min(ncols, len(names))),
                              3.4 if ncols == 1 else 3.0)
    for ax, name in zip(axes.flat, names):
        plot_curves(x, panels[name], name, xlabel, ylabel, logx=logx, hline=hline, hline_label=hline_label,
                    ylim=ylim, ax=ax, styles=styles)
    fig.suptitle(suptitle)
    return fig


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``fontsize`` points (about 0.5 em a character)."""
    chars = max(20, int(width_in * 72 / (0.5 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def plot_grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
                      *, hline: float | None = None, hline_label: str | None = None,
                      ylim: tuple[float, float] | None = None, panels: Sequence[str] | None = None,
                      width: float = PAGE_WIDTH, panel_height: float | None = None) -> Figure:
    """Grouped bar chart: one group per entry of ``groups`` (e.g. a model), one bar per series, sized to
    read at the book's page width.

    The figure is ``width`` inches wide (7.5 in: the page's text column at 100 dpi), its fonts 9 pt
    or more, the title wrapped to the width and the legend below the bars. With ``panels``, the
    groups are split into panels stacked vertically (e.g. one per dataset) on one y axis.

    Args:
        groups: x tick labels.
        series: legend label -> one value per group (NaN: no bar).
        title, ylabel: text.
        hline: dashed reference line (e.g. chance), in every panel; default none.
        hline_label: its legend label; default None.
        ylim: y limits; default automatic.
        panels: one panel title per group (e.g. its dataset): the groups that share a title are drawn in
            one panel, panels in order of first appearance, top to bottom; default None: one panel.
        width: figure width in inches; default 7.5.
        panel_height: height of each panel in inches; default 3.2 for one panel, 2.6 for several.

    Returns:
        The figure.

    Raises:
        ValueError: a series or ``panels`` whose length is not ``len(groups)``.
    """
    k = len(series)
    values = {}
    for label, vals in series.items():
        v = as_array(vals)
        if len(v) != len(groups):
            raise ValueError(f"series {label!r} has {len(v)} values for {len(groups)} groups")
        values[label] = v
    if panels is not None and len(panels) != len(groups):
        raise ValueError(f"{len(panels)} panel titles for {len(groups)} groups")
    names = list(dict.fromkeys(panels)) if panels is not None else [""]
    members = {p: [i for i in range(len(groups)) if panels is None or panels[i] == p] for p in names}
    height = panel_height or (3.2 if len(names) == 1 else 2.6)
    legend_h = 0.45 * math.ceil((k + (hline_label is not None)) / 4)
    title_lines = _wrap(title, width, 11).count("\n") + 1
    fig, axes = plt.subplots(len(names), 1, figsize=(width, height * len(names) + legend_h + 0.22 * title_lines),
                             sharey=True, squeeze=False, layout="constrained")
    bar_w = 0.8 / max(k, 1)
    for ax, name in zip(axes[:, 0], names):
        idx = members[name]
        x = np.arange(len(idx))
        for i, (label, v) in enumerate(values.items()):
            ax.bar(x + (i - (k - 1) / 2) * bar_w, np.nan_to_num(v[idx]), bar_w, label=label, color=f"C{i}")
        if hline is not None:
            ax.axhline(hline, color="gray", linestyle="--", linewidth=1, label=hline_label)
        labels = [str(groups[i]) for i in idx]
        longest = max((len(line) for lab in labels for line in lab.split("\n")), default=0)
        slot = (width - 1.0) / max(len(idx), 1)  # inches per group
        tilt = longest * 0.6 * 9 / 72 > 0.95 * slot  # the longest line would run into its neighbours
        if tilt:  # tilted labels on one line each, so that neighbours do not overlap
            labels = [" ".join(lab.split("\n")) for lab in labels]
        ax.set_xticks(x, labels, rotation=30 if tilt else 0, ha="right" if tilt else "center",
                      rotation_mode="anchor" if tilt else "default", fontsize=9)
        ax.set_xlim(-0.6, len(idx) - 0.4)
        ax.tick_params(axis="y", labelsize=9)
        ax.set_ylabel(ylabel, fontsize=10)
        if name:
            ax.set_title(name, fontsize=10, loc="left", fontweight="bold")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] == hline_label)  # the series first, then the line
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if labels:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=9, frameon=False)
    fig.suptitle(_wrap(title, width, 11), fontsize=11)
    return fig



def plot_benchmark(data: Mapping[str, object], title: str = "Engine benchmark", *,
                   noise: Stimulus | str | None = None) -> Figure:
    """Throughput (samples/s) and peak memory (RSS, MB) against n, one line per (device, kind).

    Args:
        data: the benchmark's JSON (:func:`wna_helpers.book.perf_report.load_engine_benchmark`).
        title: start of the figure title (model and noise follow); default "Engine benchmark".
        noise: the benchmark's noise (a stimulus or a shorthand), named in the title by its
            :meth:`~wna_helpers.engine.stimuli.Stimulus.label`; default the noise the JSON records
            (``meta["noise"]``: a shorthand or a :meth:`~wna_helpers.engine.stimuli.Stimulus.describe` dict), else
            ``"gaussian"``, what ``benchmarks/engine_benchmark.py`` runs (the engine's default noise
            and ``torch.randn`` in the reference), not the book's main noise.

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
    kind = noise if noise is not None else meta.get("noise") or "gaussian"  # type: ignore[union-attr]
    sup = (f"{title}: {arch}{' (trained)' if meta.get('trained') else ' (untrained)'}, "  # type: ignore[union-attr]
           f"{stimulus_label(kind)}")  # type: ignore[arg-type]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    plot_curves(None, thr, "throughput", "n (samples)", "samples per second", logx=True, ax=axes[0])
    plot_curves(None, mem, "peak memory of the process", "n (samples)", "peak RSS (MB)", logx=True, ax=axes[1])
    fig.suptitle(sup)
    return fig



def plot_speed(data: Mapping[str, object], title: str = "Samples per second, the engine against the hardware") -> Figure:
    """The speed benchmark: one panel per model, one horizontal bar per measurement (samples/s, log scale).

    Forward-pass variants are grey, the tapped conv layer alone and the STA's other parts (its noise, its weight
    gradient) light blue, the engines blue; each bar is labelled with its rate, the engines also with their share
    of the fastest forward (CI; the benchmark's own ratio where it has one: against the compiled forward timed
    before and after the run, or the one-process median) or of the fastest conv layer alone (STA).

    Args:
        data: the benchmark's JSON (:func:`wna_helpers.book.perf_report.load_speed_benchmark`).
        title: the figure title.

    Returns:
        The figure.
    """
    from ..perf_report import SPEED_KINDS
    parts = ("noise_alone", "wgrad_alone")  # the STA's other parts, drawn with the convolution alone
    # the ratios the benchmark computed (the CI engine's against the bracketing forwards, the one-process median)
    ratio_of = {"ci_engine": "ci_engine_over_fastest_forward",
                "ci_engine_compiled": "ci_engine_compiled_over_fastest_forward",
                "ci_one_process": "ci_over_forward_one_process", "sta_engine": "sta_over_conv_alone"}
    rows = [r for r in data.get("rows", []) if isinstance(r, Mapping) and "error" not in r  # type: ignore[union-attr]
            and r.get("role") != "memory"]
    archs = list(dict.fromkeys(str(r["arch"]) for r in rows))
    if not archs:
        raise ValueError("the speed benchmark data has no measurements")
    kinds = [k for k in SPEED_KINDS if any(r["kind"] == k for r in rows)]
    ncols = min(2, len(archs))
    fig, axes = subplot_grid(len(archs), ncols, 4.4, 0.36 * len(kinds) + 1.3, extra_w=2.2)
    for i, (ax, arch) in enumerate(zip(axes.flat, archs)):
        rate = {r["kind"]: float(r["samples_per_s"]) for r in rows if r["arch"] == arch}
        best_fwd = max((v for k, v in rate.items() if k.startswith("forward")), default=float("nan"))
        best_conv = max((v for k, v in rate.items() if k.startswith("conv_alone")), default=float("nan"))
        y = np.arange(len(kinds))
        vals = [rate.get(k, np.nan) for k in kinds]
        colors = ["0.6" if k.startswith("forward") else "tab:cyan" if k.startswith("conv") or k in parts
                  else "tab:blue" for k in kinds]
        ax.barh(y, vals, color=colors)
        summary = (data.get("summary") or {}).get(arch, {})  # type: ignore[union-attr]
        for yi, k, v in zip(y, kinds, vals):
            if v != v:
                continue
            ref = best_conv if k == "sta_engine" else best_fwd if k.startswith("ci_") else float("nan")
            ratio = summary.get(ratio_of.get(k, ""), v / ref)   # the benchmark's own ratio where it has one
            extra = f" ({ratio:.2f}x)" if ratio == ratio else ""
            ax.annotate(f"{v:,.0f}{extra}", (v, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_yticks(y, [SPEED_KINDS[k] for k in kinds] if i % ncols == 0 else [], fontsize=9)
        ax.invert_yaxis()
        ax.set_title(arch, fontsize=11)
        ax.set_xlabel("samples per second (log scale)")
        ax.set_xlim(right=ax.get_xlim()[1] * 4)  # room for the labels
    meta = data.get("meta") if isinstance(data.get("meta"), Mapping) else {}
    fig.suptitle(f"{title}\n{meta.get('cpu', '')}, {meta.get('threads', '?')} threads, "  # type: ignore[union-attr]
                 f"batch {meta.get('batch_size', '?')}, device {meta.get('device', '?')}")  # type: ignore[union-attr]
    return fig
