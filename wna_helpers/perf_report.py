"""The engine benchmark's results, as the performance appendix shows them.

``benchmarks/engine_benchmark.py`` writes ``benchmarks/results/engine_benchmark.json`` (or
``engine_benchmark.quick.json`` for a quick run); :func:`load_engine_benchmark` finds and reads it,
:func:`benchmark_table` and :func:`benchmark_targets` turn it into Markdown tables. The figure is
:func:`wna_helpers.plots.plot_benchmark`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .report import markdown_table

__all__ = ["find_upward", "load_engine_benchmark", "benchmark_table", "benchmark_targets"]


def find_upward(relpath: str, start: str | None = None) -> Path | None:
    """The first existing ``<dir>/relpath`` for ``dir`` = ``start``, its parents, then the checkout that
    holds this package.

    Notebooks run from ``book/`` (or a temporary folder), result files live at the repository root.

    Args:
        relpath: path relative to the directories searched.
        start: the first directory; default None: the working directory.

    Returns:
        The path found, or None if there is none.
    """
    here = Path(start or ".").resolve()
    repo = Path(__file__).resolve().parents[1]  # the checkout, when the package is installed from it
    for d in (here, *here.parents, repo):
        if (d / relpath).exists():
            return d / relpath
    return None


def load_engine_benchmark(path: str | None = None) -> tuple[dict | None, str]:
    """The engine benchmark's JSON (written by ``benchmarks/engine_benchmark.py``) and a note on where it came from.

    Looks for ``benchmarks/results/engine_benchmark.json`` (the full run) from the working directory
    upward, else ``engine_benchmark.quick.json`` (a quick run; the note says so).

    Args:
        path: read this file instead; default None: search as above.

    Returns:
        ``(data, note)``: ``data`` is None when no file was found or it cannot be read, and ``note``
        says why (in Markdown).
    """
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
    """Markdown table of the benchmark's measurements.

    Args:
        data: the benchmark's JSON (:func:`load_engine_benchmark`).

    Returns:
        One row per measurement: device, kind, n, seconds, samples/s, unit-samples/s, peak RSS (MB).
    """
    rows = [m for m in data.get("measurements", []) if isinstance(m, Mapping)]  # type: ignore[union-attr]
    cols = {"device": "device", "kind": "kind", "n": "n", "seconds": "seconds", "samples_per_s": "samples/s",
            "unit_samples_per_s": "unit-samples/s", "peak_rss_mb": "peak RSS (MB)"}
    return markdown_table(rows, cols, {"n": ",", "seconds": ".1f", "samples_per_s": ",.0f",
                                       "unit_samples_per_s": ".3g", "peak_rss_mb": ",.0f"})


def benchmark_targets(data: Mapping[str, object]) -> str:
    """Markdown table of the benchmark's targets against the measured ratios, per device.

    Args:
        data: the benchmark's JSON; reads ``data["targets"]`` (name -> target) and
            ``data["ratios"][device][name]``.

    Returns:
        One row per device and target (a ratio that is missing shows as "–"), or a sentence
        saying that the file lists no targets.
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
