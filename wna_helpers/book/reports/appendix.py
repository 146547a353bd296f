"""The appendices: the benchmarks' last saved results (performance) and what a build ran with (reproducibility)."""
from __future__ import annotations

from typing import Mapping

from matplotlib.figure import Figure

from ..chapter import Chapter
from ..environment import environment_info
from ..gpu_report import gpu_blocks
from ..perf_report import (benchmark_table, benchmark_targets, load_engine_benchmark, load_speed_benchmark,
                           load_stats_benchmark, speed_summary, speed_table, speed_targets, stats_table)
from ..plots import plot_benchmark, plot_speed
from ..report import dataset_label, markdown_table, profile_table

__all__ = ["speed_section", "speed_details", "gpu_section", "engine_section", "stats_section", "profiles",
           "environment", "trained_models"]


def speed_section(path: str | None = None) -> list[str | Figure]:
    """Where the speed benchmark's results come from, its targets, summary and figure (or that it has not run)."""
    speed, note = load_speed_benchmark(path)
    if speed is None:
        return [note, "_No results: the speed benchmark has not been run on this machine._"]
    return [note, speed_targets(speed), speed_summary(speed), plot_speed(speed)]


def speed_details(path: str | None = None) -> str | None:
    """The speed benchmark's full table (None when it has not run)."""
    speed, _ = load_speed_benchmark(path)
    return None if speed is None else speed_table(speed)


def gpu_section(path: str | None = None) -> list[str]:
    """The GPU benchmark: the CI engine against the forward pass and the targets, and bf16 against float32."""
    return gpu_blocks(path)


def engine_section(path: str | None = None) -> list[str | Figure]:
    """The engine benchmark against the paper's algorithm: its table, targets and figure."""
    data, note = load_engine_benchmark(path)
    if data is None:
        return [note, "_No table: the benchmark has not been run on this machine._"]
    out: list[str | Figure] = [note, data.get("table_markdown") or benchmark_table(data)]
    if not data.get("table_markdown"):  # the benchmark's own table already compares with its targets
        out.append(benchmark_targets(data))
    return out + [plot_benchmark(data)]


def stats_section(path: str | None = None) -> list[str]:
    """What the statistics cost (the stats benchmark's table)."""
    stats, note = load_stats_benchmark(path)
    if stats is None:
        return [note, "_No results: the statistics benchmark has not been run on this machine._"]
    return [note, stats_table(stats)]


def profiles(all_profiles: Mapping[str, object]) -> str:
    """Every setting of every profile (:func:`~wna_helpers.book.report.profile_table`)."""
    return profile_table(all_profiles)


def environment() -> str:
    """The versions of Python and the libraries, the device and the CPU threads of this build."""
    return markdown_table([{"item": k, "value": v} for k, v in environment_info().items()])


def trained_models(metas: Mapping[tuple[str, str], Mapping[str, object]], ch: Chapter) -> str:
    """One row per trained model of this build: epochs, training images, accuracy, time, device, torch version."""
    rows = [{"model": a, "dataset": dataset_label(d), "epochs": m.get("epochs"), "train_size": m.get("train_size"),
             "acc": m.get("test_accuracy"), "sec": m.get("train_seconds"), "device": m.get("device"),
             "torch": (m.get("versions") or {}).get("torch")}  # type: ignore[union-attr]
            for (a, d), m in metas.items()]
    return markdown_table(rows, {"model": "model", "dataset": "dataset", "epochs": "epochs",
                                 "train_size": "training images", "acc": "test accuracy",
                                 "sec": "training time (s)", "device": "trained on", "torch": "torch"},
                          {"train_size": ",", "acc": ".2%", "sec": ".1f"})
