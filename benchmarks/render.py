"""Regenerate the numbers of README.md and benchmarks/README.md from the benchmarks' JSON results.

The two files hold blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``; this
script rewrites them from ``benchmarks/results/*.json``, so no benchmark number is typed by hand.

    python benchmarks/render.py           # rewrite the blocks
    python benchmarks/render.py --check   # exit 1 if a block differs from what the JSON gives (the tests run this)
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("paper_cnn", "lenet", "net3", "alexnet_small")


def _load(name: str) -> object | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _rate(rows: list[dict], kind: str, arch: str) -> float | None:
    r = [x["samples_per_s"] for x in rows if x.get("kind") == kind and x.get("arch") == arch and "samples_per_s" in x]
    return r[0] if r else None


def _fmt(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _count(n: int) -> str:
    """A sample count as README writes it: ``10^6`` for a power of ten, else ``250,000``."""
    k = len(str(n)) - 1
    return f"10^{k}" if n == 10 ** k else f"{n:,}"


def headline() -> str:
    """README's table: per CNN the full-profile accuracy and what the engines reach on this CPU."""
    speed, acc = _load("speed_benchmark"), _load("train_accuracy")
    if speed is None or acc is None:
        return "_Run `benchmarks/speed_benchmark.py` and `benchmarks/train_accuracy.py` to fill this table._"
    accuracy = {(r["arch"], r["dataset"]): r["test_accuracy"] for r in acc}  # type: ignore[union-attr]
    rows, summary, meta = speed["rows"], speed["summary"], speed["meta"]  # type: ignore[index]
    small, large = (_count(n) for n in meta["mem_sizes"]) if len(meta.get("mem_sizes") or ()) == 2 else ("–", "–")
    ci_n = " and ".join(sorted({_count(x["n"]) for x in rows if x.get("kind") == "ci_engine" and "n" in x}))
    lines = ["| model | test accuracy, MNIST / Fashion-MNIST | CI engine (samples/s) | CI engine / fastest forward "
             "| the same in one process | STA engine / its conv layer alone | the same in one process | training, `wna.train` / plain loop "
             f"| memory growth, {small} to {large} samples (MB) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arch in MODELS:
        s = summary.get(arch, {})
        a = f"{_fmt(accuracy.get((arch, 'mnist')), '.2%')} / {_fmt(accuracy.get((arch, 'fashion_mnist')), '.2%')}"
        lines.append(f"| `{arch}` | {a} | {_fmt(_rate(rows, 'ci_engine', arch), ',.0f')} | "
                     f"{_fmt(s.get('ci_engine_over_fastest_forward'), '.3f')} | "
                     f"{_fmt(s.get('ci_over_forward_one_process'), '.2f')} | {_fmt(s.get('sta_over_conv_alone'), '.2f')} | "
                     f"{_fmt(s.get('sta_over_conv_alone_one_process'), '.2f')} | "
                     f"{_fmt(s.get('train_wna_over_plain'), '.2f')} | {_fmt(s.get('memory_growth_mb'), '.0f')} |")
    kinds = ("ci_engine", "ci_one_process", "sta_engine", "train_wna", "ci_engine_memory")
    when = {kind: _runs(rows, kind, meta) for kind in kinds}
    t = speed["targets"]  # type: ignore[index]
    sta_1p = (", each in its own process and alternating in one" if any(x.get("kind") == "sta_one_process"
                                                                        for x in rows) else "")
    if len(set(when.values())) == 1:
        measured = (f"Measured in one run on {meta['cpus']} CPU cores (torch {meta['torch']}), {when['ci_engine']}: "
                    f"the CI engine as shipped at {ci_n} samples against the compiled forward timed before and after "
                    f"it, each in its own process; the compiled CI engine alternating with the compiled forward in one "
                    f"process; the STA against `conv1` alone{sta_1p}; "
                    f"training on `wna.train` against a plain PyTorch loop; "
                    f"memory as the growth of the peak resident size within one run of {large} samples after its first "
                    f"{small}. Targets: CI {t['ci_over_fastest_forward']:g}, STA {t['sta_over_conv_alone']:g}, training "
                    f"{t['train_wna_over_plain']:g} (`paper_cnn`), memory under {t['memory_growth_mb']:g} MB.")
    else:
        measured = (f"Measured on {meta['cpus']} CPU cores (torch {meta['torch']}): the CI engine as shipped on "
                    f"{when['ci_engine']}, against the compiled forward timed before and after it, each in its own "
                    f"process; the compiled CI engine alternating with the compiled forward in one process on "
                    f"{when['ci_one_process']}; the STA's on {when['sta_engine']}, against `conv1` alone; training on "
                    f"{when['train_wna']}; memory on {when['ci_engine_memory']}.")
    measured += _limits(summary)
    return ("\n".join(lines) + f"\n\n{measured} The engines run at "
            f"their default batch, the forward passes and `conv1` alone at the fastest of 1,024, 256 and 128 (at "
            f"1,024 alone in runs before 2026-12-06). Speed drifts from day to day and differs between machines, so "
            f"compare the ratios (each divides two rows of one run), not samples/s across dates; the details are in "
            f"`benchmarks/README.md` and the book's performance appendix.")


def _span(summary: dict, key: str) -> str | None:
    """``lo–hi`` (or one value) of a ratio over the models that have it, two decimals; None where none has it."""
    vals = [summary[a][key] for a in MODELS if isinstance(summary.get(a, {}).get(key), (int, float))]
    if not vals:
        return None
    lo, hi = format(min(vals), ".2f"), format(max(vals), ".2f")
    return lo if lo == hi else f"{lo}–{hi}"


def _limits(summary: dict) -> str:
    """The sentence on the bare loops (the engines' own accumulators in a plain loop, no engine), where measured."""
    ci, ci_e = _span(summary, "ci_bare_over_forward"), _span(summary, "ci_over_bare")
    sta, sta_e = _span(summary, "sta_bare_over_conv_alone"), _span(summary, "sta_over_bare")
    parts = []
    if ci and ci_e:
        parts.append(f"the CI's (its sums and permutation statistics) {ci} x the compiled forward, the engine {ci_e} x "
                     f"that loop")
    if sta and sta_e:
        parts.append(f"the STA's {sta} x `conv1` alone, the engine {sta_e} x that loop")
    return (" In the same one-process rounds, each engine's own accumulators fed by a plain loop with no engine (the "
            "pace of the work itself) ran at: " + "; ".join(parts) + ".") if parts else ""


def _runs(rows: list[dict], kind: str, meta: dict) -> str:
    """The dates and CPUs of the runs that measured ``kind``'s rows, joined: ``--update`` marks the rows it
    re-measured with its date (``run``) and notes its CPU in ``meta["updates"]``; the others are from the first run."""
    cpu = {meta["date"]: meta["cpu"], **{u["date"]: u["cpu"] for u in meta.get("updates", [])}}
    dates = sorted({x.get("run") or meta["date"] for x in rows if x.get("kind") == kind}) or [meta["date"]]
    return " and ".join(f"{d} on an {cpu[d]}" if d in cpu else d for d in dates)


def latest() -> str:
    """benchmarks/README.md's latest numbers: each benchmark's own table, as its JSON holds it."""
    parts = []
    for name, title in (("speed_benchmark", "Speed"), ("stats_benchmark", "Statistics"),
                        ("engine_benchmark", "Engine against the paper's algorithm")):
        data = _load(name)
        if data is None:
            parts.append(f"### {title}\n\n_not run yet_")
            continue
        table = data.get("markdown") or data.get("table_markdown")  # type: ignore[union-attr]
        meta = data.get("meta") or {}  # type: ignore[union-attr]
        when = meta.get("date", "") + ("" if not meta.get("updates") else
                                       ", rows re-measured up to " + meta["updates"][-1]["date"])
        parts.append(f"### {title}" + (f" ({when})" if when else "") + "\n\n"
                     + (table.strip() if table else f"_see `results/{name}.json`_"))
    acc = _load("train_accuracy")
    if acc is not None:
        lines = ["| model | dataset | epochs | test accuracy | target | training time (s) |",
                 "|---|---|---:|---:|---:|---:|"]
        lines += [f"| `{r['arch']}` | {r['dataset']} | {r['epochs']} | {r['test_accuracy']:.2%} | "
                  f"{_fmt(r.get('target'), '.0%')} | {r['train_seconds']:.0f} |" for r in acc]  # type: ignore[union-attr]
        parts.append("### Full-profile training (`train_accuracy.py`)\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def gpu() -> str:
    """benchmarks/README.md's GPU block: the GPU benchmark's summary, as the performance appendix shows it."""
    sys.path.insert(0, str(ROOT))
    from wna_helpers.book.gpu_report import gpu_blocks
    return "\n\n".join(gpu_blocks(str(RESULTS / "gpu_benchmark.json")))


BLOCKS = {ROOT / "README.md": {"headline": headline},
          ROOT / "benchmarks" / "README.md": {"latest": latest, "gpu": gpu}}


def render(text: str, blocks: dict) -> str:
    for name, make in blocks.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"no block <!-- generated:{name} --> ... <!-- /generated:{name} -->")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    stale = []
    for path, blocks in BLOCKS.items():
        old = path.read_text()
        new = render(old, blocks)
        if new != old:
            if "--check" in argv:
                stale.append(str(path.relative_to(ROOT)))
            else:
                path.write_text(new)
    if stale:
        print(f"out of date with benchmarks/results: {', '.join(stale)}; run python benchmarks/render.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
