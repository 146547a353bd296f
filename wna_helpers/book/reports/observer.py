"""Chapter 10's figures and sentences: the simulated observer's psychometric sweep, its classification image next
to its internal template, and what the run recovers.

Every function takes the chapter's :func:`~wna_helpers.book.observer_study.study_observer` results keyed by dataset
and the :class:`~wna_helpers.book.chapter.Chapter`, and returns what the chapter shows, in order.
"""
from __future__ import annotations

from typing import Mapping

import torch
from matplotlib.figure import Figure

from ..chapter import Chapter
from ..criteria import FWER, R_LEVEL, SHARE_YLIM
from ..observer_study import TARGET_ACCURACY
from ..plots import plot_curve_grid, plot_image_rows
from ..report import dataset_label
from ...applications.observer_task import ObserverTask

__all__ = ["sweep_figure", "template_figures", "observer_summary", "recovered", "live_task_text"]

Runs = Mapping[str, Mapping[str, object]]


def _task(run: Mapping[str, object], ch: Chapter, d: str) -> str:
    a, b = run["classes"]
    return f"{ch.classes[d][a]} or {ch.classes[d][b]}?"


def sweep_figure(runs: Runs, ch: Chapter) -> Figure:
    """The observer's accuracy against the signal weight, one panel per dataset, with the target accuracy."""
    return plot_curve_grid(
        None, {f"{dataset_label(d)}: \"{_task(r, ch, d)}\"": {"simulated observer": (r["weights"], r["accuracy"])}
               for d, r in runs.items()},
        f"Simulated observer: share correct against the signal weight w ({ch.profile.observer_sweep_trials:,} "
        f"trials per point)", "w (weight of the base image)", "share correct", ncols=2, hline=TARGET_ACCURACY,
        hline_label=f"{TARGET_ACCURACY:.0%}, where the main run is made", ylim=SHARE_YLIM)


def template_figures(runs: Runs, ch: Chapter) -> list[Figure]:
    """Per dataset: the internal template, the recovered CI (noise fields, said A minus said B, the two true
    classes combined) and each true class's Welch z-map with its significant pixels outlined (Holm, FWER)."""
    figs = []
    for d, r in runs.items():
        run = r["run"]
        z = run.zmap("noise")
        a, b = r["classes"]
        names = ch.classes[d]
        rows = [(torch.stack([r["template"], r["ci"]]), "left: template\nright: CI", True),
                (z, f"z-maps, left:\ntrue {names[a]}, right:\ntrue {names[b]}", True)]
        figs.append(plot_image_rows(
            rows, None,
            f"{dataset_label(d)}, \"{_task(r, ch, d)}\" at w = {r['weight']:g} ({run.n_samples:,} trials): top, the "
            f"observer's internal template and its classification image (noise fields, said {names[a]} minus said "
            f"{names[b]}); bottom, the z-map of each true class, significant pixels outlined (Holm, FWER {FWER:g})",
            outlines=[None, r["significant"]], panel_size=1.8, normalize=True))
    return figs


def recovered(r: Mapping[str, object]) -> bool:
    """Whether the run recovers the template: the CI correlates with it at :data:`R_LEVEL` or more."""
    return r["r"] >= R_LEVEL


def observer_summary(runs: Runs, ch: Chapter) -> str:
    """Per dataset: the chosen weight and its accuracy (and, when the sweep came no nearer than 2 points to
    :data:`TARGET_ACCURACY`, that it did not), the CI's r with the template (combined and per true class), the
    significant pixels, and whether the template is recovered."""
    lines = []
    for d, r in runs.items():
        acc = r["run"].accuracy
        sig = r["significant"].reshape(2, -1).sum(1).tolist()
        lines.append(
            f"- **{dataset_label(d)}**, \"{_task(r, ch, d)}\": w = {r['weight']:g} gives {acc:.1%} correct over "
            f"{r['run'].n_samples:,} trials. "
            + (f"(No weight of the sweep comes nearer {TARGET_ACCURACY:.0%}: it reached "
               f"{r['accuracy'][r['weights'].index(r['weight'])]:.1%} there.) "
               if abs(r["accuracy"][r["weights"].index(r["weight"])] - TARGET_ACCURACY) > 0.02 else "")
            + f"The classification image correlates with the observer's template at "
            f"r = {r['r']:.3f} (each true class alone: {r['r_rows'][0]:.3f} and {r['r_rows'][1]:.3f}); "
            f"{sig[0]} and {sig[1]} pixels of the two true-class maps pass Holm's test at FWER {FWER:g}. "
            + ("The template is recovered." if recovered(r) else
               f"The template is not recovered at r >= {R_LEVEL:g} with this many trials."))
    return "\n".join(lines)


def live_task_text(task: ObserverTask, dataset: str, network: str = "paper_cnn") -> str:
    """What the reader's task is: trials, question, weight, blocks, the network on the same trials, and where the
    answers go (with how many are there already)."""
    a, b = task.class_names
    where = (f"Your answers go to `{task.path}` as you give them ({task.next_trial} of {task.n_trials} there so "
             f"far); run the cell again after closing the notebook and the task goes on from there."
             if task.path is not None else "Your answers are kept in memory only (no `path` given).")
    return (f"The task: {task.n_trials} trials of \"{a} or {b}?\" on {dataset_label(dataset)}, signal weight "
            f"w = {task.trials.weight:g}, a summary after every {task.block_size} trials, and the book's `{network}` "
            f"answering exactly the same trials. {where}")
