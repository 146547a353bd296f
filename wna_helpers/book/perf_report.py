"""The benchmarks' results, as the performance appendix shows them.

``benchmarks/engine_benchmark.py`` writes ``benchmarks/results/engine_benchmark.json`` (or
``engine_benchmark.quick.json`` for a quick run); :func:`load_engine_benchmark` finds and reads it,
:func:`benchmark_table` and :func:`benchmark_targets` turn it into Markdown tables. The figure is
:func:`wna_helpers.book.plots.plot_benchmark`. ``benchmarks/speed_benchmark.py`` (the engine against
the fastest forward pass the hardware allows) writes ``speed_benchmark.json``:
:func:`load_speed_benchmark`, :func:`speed_table`, :func:`speed_targets` and
:func:`wna_helpers.book.plots.plot_speed`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .report import markdown_table

__all__ = ["find_upward", "load_engine_benchmark", "benchmark_table", "benchmark_targets", "load_speed_benchmark", "SPEED_KINDS",
           "speed_table", "speed_targets", "speed_summary"]


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


def _load(name: str, key: str, path: str | None) -> tuple[dict | None, str]:
    """``benchmarks/results/<name>.json`` (else ``<name>.quick.json``), checked to hold the list ``key``."""
    candidates = [Path(path)] if path else [p for p in (find_upward(f"benchmarks/results/{name}.json"),
                                                        find_upward(f"benchmarks/results/{name}.quick.json"))
                                            if p is not None]
    if not candidates or not candidates[0].exists():
        where = path or f"benchmarks/results/{name}.json"
        return None, (f"**No benchmark results found** (`{where}` is missing). Run "
                      f"`.venv/bin/python benchmarks/{name}.py` from the repository root "
                      f"(or `--quick` for a short run) and rebuild this page.")
    p = candidates[0]
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        return None, f"**The benchmark file `{p.name}` cannot be read** ({type(exc).__name__}: {exc})."
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        return None, f"**The benchmark file `{p.name}` has no `{key}` list**; it was written by another version."
    note = f"Results from `{path if path else 'benchmarks/results/' + p.name}`"
    if p.name.endswith(".quick.json"):
        note += f" (a **quick** run: small n; the full run's `{name}.json` is missing)"
    return data, note


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
    data, note = _load("engine_benchmark", "measurements", path)
    if data is None:
        return data, note
    meta = data.get("meta", {})
    if isinstance(meta, dict) and meta.get("loadavg_start") is not None:
        la = meta.get("loadavg_start"), meta.get("loadavg_end")
        fmt = [f"{v[0]:.2f}" if isinstance(v, (list, tuple)) and v else "?" for v in la]
        note += f"; 1-minute load average {fmt[0]} at start and {fmt[1]} at end"
    return data, note + "."


def load_speed_benchmark(path: str | None = None) -> tuple[dict | None, str]:
    """The speed benchmark's JSON (``benchmarks/speed_benchmark.py``) and a note on where it came from.

    Args:
        path: read this file instead; default None: ``benchmarks/results/speed_benchmark.json`` from the
            working directory upward, else ``speed_benchmark.quick.json``.

    Returns:
        ``(data, note)`` as :func:`load_engine_benchmark`.
    """
    data, note = _load("speed_benchmark", "rows", path)
    if data is None:
        return data, note
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    note += (f"; {meta.get('cpu', '?')} with {meta.get('threads', '?')} threads, torch {meta.get('torch', '?')}, "
             f"{meta.get('date', '?')}; 1-minute load average {meta.get('load_start', '?')} at start and "
             f"{meta.get('load_end', '?')} at end")
    updates = [u.get("date", "?") + (f" ({u['cpu']})" if u.get("cpu") and u.get("cpu") != meta.get("cpu") else "")
               for u in meta.get("updates", []) if isinstance(u, Mapping)]
    if updates:
        note += (f"; some rows re-measured on {', '.join(updates)} (each row's *measured* column; every ratio "
                 f"divides two rows of one run)")
    return data, note + "."


SPEED_KINDS = {
    "forward_eager": "forward, as built", "forward_malloc": "forward, allocator tuned",
    "forward_cl": "forward, channels-last", "forward_compiled": "forward, compiled",
    "forward_compiled_after": "forward, compiled, right after the CI run",
    "conv_alone": "conv1 alone", "conv_alone_cl": "conv1 alone, channels-last",
    "ci_engine": "CI engine", "ci_engine_compiled": "CI engine, compile=True",
    "ci_engine_nomalloc": "CI engine, WNA_MALLOPT=0",
    "ci_one_process": "CI engine, compile=True, one process",
    "sta_one_process": "STA engine (conv1) alternating with conv1 alone, one process",
    "noise_alone": "the engine's noise alone", "wgrad_alone": "conv1's weight gradient alone",
    "sta_engine": "STA engine (conv1)",
    "sta_engine_window": "STA engine, the old window product", "ci_engine_memory": "CI engine, compile=False",
    "train_plain": "training, a plain PyTorch loop", "train_wna": "training, wna.train",
}


def speed_table(data: Mapping[str, object]) -> str:
    """Markdown table of the speed benchmark's measurements: model, what ran, n, batch (the fastest of those tried,
    for the forward passes and the conv alone), samples/s, CPU seconds in user and kernel mode (the allocator's cost
    shows in the latter), peak RSS."""
    rows = []
    meta = data.get("meta") if isinstance(data.get("meta"), Mapping) else {}
    for r in data.get("rows", []):  # type: ignore[union-attr]
        if not isinstance(r, Mapping) or "error" in r:
            continue
        what = SPEED_KINDS.get(str(r.get("kind")), str(r.get("kind")))
        if r.get("role") == "memory":
            what += " (memory run)"
        rows.append({**r, "what": what, "when": r.get("run") or meta.get("date", "?")})  # type: ignore[union-attr]
    return markdown_table(rows, {"arch": "model", "what": "what runs", "n": "n", "batch_size": "batch",
                                 "samples_per_s": "samples/s",
                                 "user_s": "user s", "sys_s": "kernel s", "peak_rss_mb": "peak RSS (MB)",
                                 "when": "measured"},
                          {"n": ",", "batch_size": ",", "samples_per_s": ",.0f", "user_s": ".1f", "sys_s": ".1f",
                           "peak_rss_mb": ",.0f"})


def _number(v: float, fmt: str) -> str:
    """``format(v, fmt)``, with no minus sign on a value that prints as zero ("-0" is "0")."""
    text = format(v, fmt)
    return text[1:] if text.startswith("-") and not text.strip("-0.,") else text


def speed_targets(data: Mapping[str, object]) -> str:
    """Markdown table of the speed benchmark's ratios against its targets, one row per model; each cell
    is the measured value and whether it met the target."""
    targets = data.get("targets") if isinstance(data.get("targets"), Mapping) else {}
    rows = []

    def cell(v: object, target: object, fmt: str, above: bool = True) -> str:
        if not isinstance(v, (int, float)):
            return "–"
        if not isinstance(target, (int, float)):
            return _number(v, fmt)
        ok = v >= target if above else v < target
        text = _number(v, fmt)
        if not ok and text == _number(target, fmt):  # 0.849 against 0.85: show the digit that decides
            text = _number(v, ".3f")
        return f"{text} ({'met' if ok else 'missed'})"
    for arch, s in (data.get("summary") or {}).items():  # type: ignore[union-attr]
        if not isinstance(s, Mapping):
            continue
        rows.append({"arch": arch, "fastest": SPEED_KINDS.get(str(s.get("fastest_forward")), "–"),
                     "ci": cell(s.get("ci_engine_over_fastest_forward"), targets.get("ci_over_fastest_forward"), ".2f"),
                     "ci_c": cell(s.get("ci_engine_compiled_over_fastest_forward"),
                                  targets.get("ci_over_fastest_forward"), ".2f"),
                     "drift": cell(s.get("forward_compiled_after_over_before"), None, ".2f"),
                     "ci_1p": cell(s.get("ci_over_forward_one_process"), targets.get("ci_over_fastest_forward"), ".2f"),
                     "ci_bare": cell(s.get("ci_bare_over_forward"), None, ".2f"),
                     "sta": cell(s.get("sta_over_conv_alone"), targets.get("sta_over_conv_alone"), ".2f"),
                     "sta_1p": cell(s.get("sta_over_conv_alone_one_process"), targets.get("sta_over_conv_alone"),
                                    ".2f"),
                     "sta_bare": cell(s.get("sta_bare_over_conv_alone"), None, ".2f"),
                     "sta_w": cell(s.get("sta_window_over_conv_alone"), None, ".2f"),
                     "sta_top": cell(s.get("sta_ceiling_over_conv_alone"), None, ".2f"),
                     "sta_c": cell(s.get("sta_over_ceiling"), None, ".2f"),
                     "train": cell(s.get("train_wna_over_plain"), targets.get("train_wna_over_plain"), ".2f"),
                     "mem": cell(s.get("memory_growth_mb"), targets.get("memory_growth_mb"), ".0f", above=False),
                     "mem_b": cell(s.get("memory_growth_between_mb"), None, ".0f"),
                     "mem_s": cell(s.get("memory_repeat_spread_mb"), None, ".0f")})
    t = {k: format(targets[k], "g") if isinstance(targets.get(k), (int, float)) else "?"
         for k in ("ci_over_fastest_forward", "sta_over_conv_alone", "memory_growth_mb", "train_wna_over_plain")}
    return markdown_table(rows, {
        "arch": "model", "fastest": "fastest forward pass",
        "ci": f"CI engine ÷ fastest (target ≥ {t['ci_over_fastest_forward']})",
        "ci_c": "same, compile=True",
        "drift": "compiled forward after ÷ before the CI run",
        "ci_1p": "CI engine (compile=True) ÷ compiled forward, in one process",
        "ci_bare": "its bare loop ÷ compiled forward, same rounds",
        "sta": f"STA ÷ conv1 alone (≥ {t['sta_over_conv_alone']})",
        "sta_1p": "STA ÷ conv1 alone, in one process",
        "sta_bare": "its bare loop ÷ conv1 alone, same rounds",
        "sta_w": "old window-product STA ÷ conv1 alone",
        "sta_top": "STA's ceiling ÷ conv1 alone", "sta_c": "STA ÷ its ceiling",
        "train": f"training: wna.train ÷ plain loop (≥ {t['train_wna_over_plain']})",
        "mem": f"memory growth in one run, MB (< {t['memory_growth_mb']})",
        "mem_b": "peak of the long run minus a short run's, MB", "mem_s": "two identical short runs differ by, MB"})


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


def speed_summary(data: Mapping[str, object]) -> str:
    """One paragraph (Markdown) with the ranges of the speed benchmark's ratios over its models."""
    summary = {a: s for a, s in (data.get("summary") or {}).items() if isinstance(s, Mapping)}  # type: ignore[union-attr]
    meta = data.get("meta") if isinstance(data.get("meta"), Mapping) else {}

    def span(key: str, fmt: str = "{:.2f}") -> str | None:
        vals = [float(s[key]) for s in summary.values() if isinstance(s.get(key), (int, float))]
        if not vals:
            return None
        lo, hi = (_number(x, fmt.strip("{}:")) for x in (min(vals), max(vals)))
        return lo if lo == hi else f"{lo} to {hi}"
    parts = []
    models = ", ".join(f"`{a}`" for a in summary)
    if span("ci_engine_over_fastest_forward"):
        parts.append(f"Over {models}, the CI engine as shipped ran at {span('ci_engine_over_fastest_forward')} x the "
                     f"fastest forward pass of the same model, and at {span('ci_engine_compiled_over_fastest_forward')} "
                     f"x with `compile=True`.")
    if span("forward_compiled_after_over_before"):
        parts.append(f"Those ratios divide by the mean of the compiled forward timed right before and right after the "
                     f"long CI run, whose rates differed by a factor of {span('forward_compiled_after_over_before')}.")
    if span("ci_over_forward_one_process"):
        parts.append(f"Alternating with the compiled forward in one process, the CI engine with `compile=True` ran at "
                     f"{span('ci_over_forward_one_process')} x it (the median of the rounds' ratios, which does not "
                     f"depend on how fast each process happened to run).")
    if span("ci_bare_over_forward"):
        parts.append(f"In the same rounds a bare loop, the CI's own accumulators (its class sums and permutation "
                     f"statistics) fed the same noise and compiled forward by a plain loop with no engine around them, "
                     f"ran at {span('ci_bare_over_forward')} x the compiled forward: the pace of that work itself; the "
                     f"engine ran at {span('ci_over_bare')} x the bare loop.")
    if span("allocator_speedup"):
        parts.append(f"Tuning the allocator alone made the plain forward pass {span('allocator_speedup')} x as fast.")
    if span("sta_over_conv_alone"):
        parts.append(f"The STA engine (every channel of `conv1`, pooled and centre) ran at "
                     f"{span('sta_over_conv_alone')} x the fastest `conv1` alone (its fastest layout and batch) "
                     f"({span('sta_over_conv_alone_contiguous')} x `conv1` alone in its default memory layout).")
    if span("sta_over_conv_alone_one_process"):
        parts.append(f"Alternating with `conv1` alone in one process, the STA ran at "
                     f"{span('sta_over_conv_alone_one_process')} x the fastest conv alone of its round (the median of "
                     f"the rounds' ratios).")
    if span("sta_bare_over_conv_alone"):
        parts.append(f"In the same rounds the STA's own accumulator fed by a plain loop (its noise, the fused "
                     f"convolution and ReLU, the weight-gradient call, the channel sums; no engine) ran at "
                     f"{span('sta_bare_over_conv_alone')} x the fastest conv alone, and the STA at "
                     f"{span('sta_over_bare')} x that bare loop.")
    if span("sta_window_over_conv_alone"):
        parts.append(f"The window product it replaced ran at {span('sta_window_over_conv_alone')} x.")
    if span("sta_over_ceiling"):
        cache = (" (above the bare loop: the parts run slower together than alone)"
                 if span("sta_bare_over_conv_alone") else "")
        parts.append(f"The work the STA cannot avoid, its noise, `conv1` and the weight-gradient call each timed alone "
                     f"and added up, allows {span('sta_ceiling_over_conv_alone')} x `conv1` alone{cache}; the STA ran "
                     f"at {span('sta_over_ceiling')} x that ceiling.")
    if span("train_wna_over_plain"):
        parts.append(f"`wna.train` ran at {span('train_wna_over_plain')} x a plain PyTorch loop doing the same work.")
    given = meta.get("mem_sizes")  # type: ignore[union-attr]
    sizes = [f"{s:,}" if isinstance(s, int) else "?" for s in (given if isinstance(given, list) and len(given) == 2
                                                                else ["?", "?"])]
    if span("memory_growth_mb", "{:.0f}"):
        parts.append(f"Within one run of {sizes[1]} samples, the peak memory grew by "
                     f"{span('memory_growth_mb', '{:.0f}')} MB after the first {sizes[0]}.")
    elif span("memory_growth_between_mb", "{:.0f}"):
        parts.append(f"This run measured memory with one process per size: the run of {sizes[1]} samples peaked "
                     f"{span('memory_growth_between_mb', '{:.0f}')} MB above the run of {sizes[0]}; the growth "
                     f"within one run, which the target is judged on, was not measured.")
    if span("memory_repeat_spread_mb", "{:.0f}"):
        parts.append(f"Two identical runs of {sizes[0]} samples, each in its own process, peaked "
                     f"{span('memory_repeat_spread_mb', '{:.0f}')} MB apart, and the run of {sizes[1]} peaked "
                     f"{span('memory_growth_between_mb', '{:.0f}')} MB above the first of them: a difference between "
                     f"two processes' peaks within that spread is not growth with n.")
    return " ".join(parts) or "_The benchmark file has no ratios._"


STATS_KINDS = {
    "ci_plain": "CI, class sums only", "ci_no_null": "CI + split halves + logit images",
    "ci_stats": "CI + null (K = 32) + split halves + logit images", "sta": "STA (conv1)",
    "stc": "STC (conv1), with its null band", "stc_no_null": "STC (conv1), no null",
    "stc_every_position": "STC (conv1), every position pooled",
}


def load_stats_benchmark(path: str | None = None) -> tuple[dict | None, str]:
    """The statistics benchmark's JSON (``benchmarks/stats_benchmark.py``) and a note on where it came from
    (``stats_benchmark.json``, else ``stats_benchmark.quick.json``)."""
    data, note = _load("stats_benchmark", "rows", path)
    if data is None:
        return data, note
    return data, note + (f"; {data.get('cpu', '?')} with {data.get('threads', '?')} threads, torch "
                         f"{data.get('torch', '?')}, {data.get('date', '?')}, median of {data.get('repeats', '?')} "
                         f"interleaved repeats; 1-minute load average {data.get('load_start', 0):.2f} at start and "
                         f"{data.get('load_end', 0):.2f} at end.")


def stats_table(data: Mapping[str, object]) -> str:
    """Markdown: each run of the statistics benchmark (seconds, samples/s), then the cost ratios
    against their targets."""
    rows = [{**r, "what": STATS_KINDS.get(str(r.get("kind")), str(r.get("kind")))}
            for r in data.get("rows", []) if isinstance(r, Mapping)]  # type: ignore[union-attr]
    out = markdown_table(rows, {"what": "what runs", "n": "n", "seconds": "seconds (median)",
                                "samples_per_s": "samples/s"}, {"n": ",", "seconds": ".2f", "samples_per_s": ",.0f"})
    targets = data.get("targets", {}) if isinstance(data.get("targets"), Mapping) else {}
    ratios = data.get("ratios", {}) if isinstance(data.get("ratios"), Mapping) else {}
    lines = [{"ratio": k, "value": float(v), "target": f"<= {targets[k]:g}" if k in targets else "",
              "met": ("yes" if float(v) <= float(targets[k]) else "**no**") if k in targets else ""}
             for k, v in ratios.items()]
    return out + "\n\n" + markdown_table(lines, {"ratio": "time ratio", "value": "measured", "target": "target",
                                                 "met": "met"}, {"value": ".3f"})
