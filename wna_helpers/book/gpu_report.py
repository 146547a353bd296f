"""The GPU benchmark's results (``benchmarks/gpu_benchmark.py``), as benchmarks/README.md and the performance appendix
show them.

:func:`load_gpu_benchmark` finds and reads ``benchmarks/results/gpu_benchmark.json`` (the latest run) and, when it is
there, ``gpu_benchmark.first.json`` (an earlier run whose sections the latest did not repeat); :func:`gpu_summary`
turns them into a table of the CI engine against the forward pass and the targets, :func:`agreement_summary`
into the bf16 and TF32 verdicts against strict float32, and :func:`gpu_blocks` puts the three together.
:func:`build_summary` shows a whole build timed on a GPU (``benchmarks/build_benchmark.py``, saved as
``benchmarks/results/build_gpu.json``), phase by phase.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from .perf_report import find_upward
from .report import markdown_table

__all__ = ["load_gpu_benchmark", "gpu_blocks", "gpu_summary", "agreement_summary", "build_summary", "GPU_TARGETS"]

#: The targets of the GPU part of the speed issues: 10^8 samples at 10^7 a second, the CI engine at 0.8 of the
#: forward pass alone, bf16 CIs correlated at 0.999 with float32 ones (and the counts within sampling error).
GPU_TARGETS = {"rate_1e8": 1e7, "over_forward": 0.8, "bf16_min_corr": 0.999}


def load_gpu_benchmark(path: str | None = None) -> tuple[dict | None, dict | None, str]:
    """The latest GPU benchmark, the earlier run beside it, and a note on where they came from.

    Args:
        path: read this file as the latest run instead; default None:
            ``benchmarks/results/gpu_benchmark.json`` from the working directory upward. The earlier run is
            ``gpu_benchmark.first.json`` beside it.

    Returns:
        ``(latest, first, note)``: ``latest`` is None when no file was found or it cannot be read (``note`` says
        why, in Markdown); ``first`` is the earlier run or None.
    """
    p = Path(path) if path else find_upward("benchmarks/results/gpu_benchmark.json")
    if p is None or not p.exists():
        return None, None, ("**No GPU benchmark results found** (`benchmarks/results/gpu_benchmark.json` is missing). "
                            "On a machine with CUDA, run `python benchmarks/gpu_benchmark.py` from the repository "
                            "root and rebuild this page.")
    try:
        latest = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        return None, None, f"**The GPU benchmark file `{p.name}` cannot be read** ({type(exc).__name__}: {exc})."
    if not isinstance(latest, dict) or not isinstance(latest.get("sections"), dict):
        return None, None, f"**The GPU benchmark file `{p.name}` has no `sections`**; another version wrote it."
    q = p.with_name("gpu_benchmark.first.json")
    try:
        first = json.loads(q.read_text()) if q.exists() else None
    except (OSError, ValueError):
        first = None
    env = latest["sections"].get("env", {})
    note = (f"Results from `benchmarks/results/{p.name}`: {env.get('gpu', '?')}, torch {env.get('torch', '?')}, "
            f"{latest.get('meta', {}).get('date', '?')}")
    if first is not None and "agree" not in latest["sections"]:
        note += (f"; the bf16 agreement from the earlier run of {first.get('meta', {}).get('date', '?')} "
                 f"(`gpu_benchmark.first.json`; `benchmarks/README.md` says which code each run measured)")
    return latest, first, note + "."


def gpu_blocks(path: str | None = None) -> list[str]:
    """What the performance appendix and ``benchmarks/README.md`` show: where the results come from, the CI engine
    against the forward pass (:func:`gpu_summary`) and bf16 against float32 (:func:`agreement_summary`, from the
    latest run when it measured that, else from the earlier one); only the note when there are no results."""
    latest, first, note = load_gpu_benchmark(path)
    if latest is None:
        return [note]
    blocks = [note, gpu_summary(latest), agreement_summary(latest if "agree" in latest["sections"] else first)]
    build = Path(path).with_name("build_gpu.json") if path else find_upward("benchmarks/results/build_gpu.json")
    if build is not None and build.exists():
        try:
            blocks.append(build_summary(json.loads(build.read_text())))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            blocks.append(f"**The GPU build file `{build.name}` cannot be read** ({type(exc).__name__}: {exc}).")
    return blocks


def _rate(rows: Mapping[str, object], key: str) -> float | None:
    r = rows.get(key)
    return float(r["samples_per_s"]) if isinstance(r, Mapping) and "samples_per_s" in r else None


def _mb(rows: Mapping[str, object], key: str) -> float | None:
    r = rows.get(key)
    return float(r["cuda_peak_mb"]) if isinstance(r, Mapping) and r.get("cuda_peak_mb") is not None else None


def _n(v: float | None, fmt: str = ",.0f") -> str:
    return "–" if v is None else format(v, fmt)


def gpu_summary(data: Mapping[str, object]) -> str:
    """Markdown: the CI engine as shipped at 10^6, 10^7 and 10^8 samples in float32 and bf16, its GPU peak memory,
    the forward pass alone (eager in both layouts, compiled) and the engine's share of it, against the targets."""
    sec = data.get("sections", {})
    fwd = sec.get("forward", {}).get("rows", {}) if isinstance(sec, Mapping) else {}
    ci = sec.get("ci", {}).get("rows", {}) if isinstance(sec, Mapping) else {}
    comp = sec.get("compiled", {}).get("rows", {}) if isinstance(sec, Mapping) else {}
    eager32 = max((v for v in (_rate(fwd, "fp32_contiguous"), _rate(fwd, "fp32_cl")) if v), default=None)
    eager16 = max((v for v in (_rate(fwd, "bf16_contiguous"), _rate(fwd, "bf16_cl")) if v), default=None)
    compiled = _rate(comp, "forward_fp32_compiled")
    best32 = max((v for v in (eager32, compiled) if v), default=None)
    sizes = sorted({int(k.rsplit("_", 1)[1]) for k in ci if k.startswith("shipped_")})
    rows = []
    for n in sizes:
        r32, r16 = _rate(ci, f"shipped_{n}"), _rate(ci, f"bf16_{n}")
        rows.append({"CI engine as shipped, n": f"{n:,}", "float32 samples/s": _n(r32),
                     "bf16 samples/s": _n(r16),
                     "float32 / fastest float32 forward": _n(r32 / best32 if r32 and best32 else None, ".2f"),
                     "float32 / eager float32 forward": _n(r32 / eager32 if r32 and eager32 else None, ".2f"),
                     "bf16 / fastest bf16 forward": _n(r16 / eager16 if r16 and eager16 else None, ".2f"),
                     "GPU peak (MB), float32": _n(_mb(ci, f"shipped_{n}"))})
    lines = [markdown_table(rows) if rows else "_The CI section did not run._", ""]
    lines.append(f"The forward pass alone, on noise made before timing: float32 {_n(eager32)} samples/s eager (the "
                 f"better layout), {_n(compiled)} compiled; bf16 {_n(eager16)} eager.")
    big = sizes[-1] if sizes else None
    if big:
        r = _rate(ci, f"shipped_{big}")
        peaks = [p for p in (_mb(ci, f"shipped_{n}") for n in sizes) if p is not None]
        flat = f"{max(peaks) - min(peaks):,.0f} MB" if peaks else "not measured"
        met = lambda ok: "met" if ok else "missed"  # noqa: E731
        lines.append(
            f"Targets: {big:,} samples at >= {GPU_TARGETS['rate_1e8']:,.0f} a second: {_n(r)} a second, "
            f"{met(bool(r and r >= GPU_TARGETS['rate_1e8']))}; the CI engine >= {GPU_TARGETS['over_forward']} x the "
            f"fastest forward pass alone: {_n(r / best32 if r and best32 else None, '.2f')}, "
            f"{met(bool(r and best32 and r / best32 >= GPU_TARGETS['over_forward']))}; GPU memory from {sizes[0]:,} "
            f"to {big:,} samples grew by {flat}.")
    return "\n".join(lines)


def agreement_summary(data: Mapping[str, object] | None) -> str:
    """Markdown: per network, the share of samples whose predicted class changes under bf16 autocast and under TF32
    against strict float32, and the verdict rule of ``benchmarks/gpu_benchmark.py`` (the CIs of every class with
    at least 10^4 samples correlated at >= 0.999, every count moved by less than its binomial standard error)."""
    agree = (data or {}).get("sections", {}).get("agree") if isinstance((data or {}).get("sections"), Mapping) \
        else None
    if not isinstance(agree, Mapping):
        return "_The bf16 agreement was not measured._"
    rows = []
    for net in ("untrained", "trained_mnist"):
        res = agree.get(net)
        if not isinstance(res, Mapping):
            continue
        for kind in ("tf32", "bf16"):
            v = res.get(kind)
            if not isinstance(v, Mapping):
                continue
            worst = max(range(len(v["moved"])), key=lambda c: v["moved"][c] / max(v["standard_errors"][c], 1e-9))
            rows.append({"network": net.replace("_", " on ").replace("on mnist", "on MNIST"), "against float32": kind,
                         "predictions changed": f"{res.get(f'flip_share_{kind}', float('nan')):.3%}",
                         "lowest CI correlation (classes >= 10^4)": _n(v.get("min_corr_classes_1e4"), ".5f"),
                         "largest count move / its standard error":
                             f"{v['moved'][worst]:,} / {v['standard_errors'][worst]:,.0f}",
                         "verdict": "agrees" if v.get("agrees") else "differs"})
    if not rows:
        return "_The bf16 agreement was not measured._"
    return markdown_table(rows)


def build_summary(data: Mapping[str, object]) -> str:
    """Markdown: a build timed by ``benchmarks/build_benchmark.py``, one row per phase (the models, then each
    chapter in the order run) with its seconds, status and slowest cell, and a sentence on what finished.

    Args:
        data: one run's JSON, or ``{"note": ..., "runs": [run, ...]}`` for a build continued over several runs on
            one cache (a chapter's row is taken from the last run that executed it).

    Returns:
        The table and the sentence; a stopped or failed phase is never counted as finished, and its slowest step
        is left blank (the step it stopped in was not timed).
    """
    runs = data["runs"] if "runs" in data else [data]
    rows: dict[str, dict[str, str]] = {}
    seconds: dict[str, float] = {}
    models = None
    for run in runs:
        m = run.get("models")
        if isinstance(m, Mapping):
            models = m
            status = "ok" if m.get("rc") == 0 else ("stopped" if m.get("stopped") else f"exit {m.get('rc')}")
            slowest = max((j["seconds"] for j in m.get("jobs", [])), default=None) if status == "ok" else None
            rows["models"] = {"phase": f"make models ({len(m.get('jobs', []))} models and fits)",
                              "seconds": _n(m.get("seconds")), "status": status, "slowest step (s)": _n(slowest)}
            seconds["models"] = float(m.get("seconds") or 0.0)
        for c in run.get("chapters", []):
            if c.get("status") == "not run":
                continue
            slowest = c.get("slowest_cell_seconds") if c["status"] == "ok" else None
            rows[c["file"]] = {"phase": Path(c["file"]).stem, "seconds": _n(c.get("seconds")),
                               "status": c["status"], "slowest step (s)": _n(slowest, ".0f")}
            seconds[c["file"]] = float(c.get("seconds") or 0.0)
    done = sum(seconds[k] for k, r in rows.items() if r["status"] == "ok")
    host = runs[0].get("host", {}) if runs else {}
    stopped = [r["phase"] for r in rows.values() if r["status"] != "ok"]
    lines = [markdown_table(list(rows.values())) if rows else "_No phase ran._", ""]
    sentence = (f"A `{runs[0].get('profile', '?')}`-profile build on {host.get('gpu') or 'a CPU'} (torch "
                f"{host.get('torch', '?')}, {host.get('cpu_count', '?')} CPU cores): the phases that finished took "
                f"{done:,.0f} s")
    if models is not None and models.get("rc") == 0:
        sentence += f", the models {_n(models.get('seconds'))} s of it"
    sentence += "."
    if stopped:
        sentence += f" Not finished: {', '.join(stopped)}; the phases after them were not reached, so this is no " \
                    "whole build's time."
    lines.append(sentence)
    if isinstance(data.get("note"), str):
        lines.append("")
        lines.append(f"_{data['note']}_")
    return "\n".join(lines)
