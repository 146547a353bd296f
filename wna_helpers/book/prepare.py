"""Train (or load) every model the book needs, before any chapter runs: ``python -m wna_helpers.book.prepare``.

``make book`` runs this first (``make models``), so no chapter cell trains for long and a newcomer sees in
the terminal what is being trained, a progress bar per model and an overall bar with an estimate of the
time left. What is already cached loads in a second. The models: every architecture on both datasets
(chapter 2), ``paper_cnn``'s training snapshots (chapter 8; they write its checkpoint too), the networks trained
the paper's way (chapter 8), the Gabor-noise fits (chapters 3 and 8), and the trojan study's clean, trojaned,
relabelled and reference models (chapter 9).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Callable

from tqdm.auto import tqdm

from ..config import Profile, get_profile
from ..zoo.data import dataset_names, load_dataset
from ..zoo.models import model_names
from ..zoo.paper_recipe import paper_recipe_model, paper_recipe_path, paper_recipe_seeds
from ..zoo.snapshots import snapshot_path, training_snapshots
from ..zoo.training import checkpoint_path, get_trained_model
from .noise_study import noise_kind
from .trojan_study import FAMILIES, trojan_checkpoint, trojan_model

__all__ = ["Job", "jobs", "prepare", "main", "SECONDS_PER_EPOCH"]

#: Seconds one epoch over the 60,000 training images takes on a 2-core AMD EPYC, about 15 % above the cold
#: full ``make models`` of 2026-12-03 (channels-last, tuned allocator: paper_cnn 9-11 s, lenet 9.5-10.7, alexnet_small
#: 63-65, net3 20-22, mlp 2.0-2.2, logreg 0.2-0.3, gru 10.9-11.8): the estimate's scale, an upper bound.
SECONDS_PER_EPOCH: dict[str, float] = {"paper_cnn": 12.0, "lenet": 12.5, "alexnet_small": 75.0, "net3": 25.0,
                                       "mlp": 2.5, "logreg": 0.4, "gru": 13.5}


@dataclass
class Job:
    """One thing to train or fit: a label, an estimate of its seconds, whether it is cached, and the call."""

    label: str
    seconds: float
    cached: bool
    run: Callable[[], object]


def _epoch_seconds(arch: str, prof: Profile) -> float:
    share = (prof.train_subset or 60_000) / 60_000
    return SECONDS_PER_EPOCH.get(arch, 30.0) * share


def jobs(prof: Profile) -> list[Job]:
    """Everything the book trains under ``prof``, in the order :func:`prepare` runs it."""
    out: list[Job] = []
    for d in dataset_names():
        out.append(Job(f"paper_cnn on {d}: training snapshots (chapter 8)",
                       _epoch_seconds("paper_cnn", prof) * prof.epochs_for("paper_cnn", d),
                       snapshot_path("paper_cnn", d, prof).exists(),
                       lambda d=d: training_snapshots("paper_cnn", d, prof, progress=True)))
        for a in model_names():
            out.append(Job(f"{a} on {d}", _epoch_seconds(a, prof) * prof.epochs_for(a, d),
                           checkpoint_path(a, d, prof).exists(),
                           lambda a=a, d=d: get_trained_model(a, d, prof, progress=True)))
        for seed in paper_recipe_seeds(prof):
            out.append(Job(f"paper_cnn on {d} trained the paper's way, seed {seed} (chapter 8)",
                           _epoch_seconds("paper_cnn", prof) * prof.paper_epochs,
                           paper_recipe_path(d, prof, seed).exists(),
                           lambda d=d, seed=seed: paper_recipe_model(d, prof, seed, progress=True)))
        out.append(Job(f"Gabor noise fitted to {d}", 20.0, False, lambda d=d: noise_kind("gabor", d)))
        per = _epoch_seconds("paper_cnn", prof) * prof.trojan_epochs[d]
        out.append(Job(f"trojan study on {d}: the clean reference", per,
                       trojan_checkpoint(d, prof, index=-1, trojaned=False)[1].exists(),
                       lambda d=d: trojan_model(d, prof, index=-1, trojaned=False, progress=True)))
        for family in FAMILIES:
            for i in range(prof.trojan_models):
                kind = {"trojaned": family == "trojaned", "relabelled": family == "relabelled"}
                out.append(Job(f"trojan study on {d}: {family} model {i}", per,
                               trojan_checkpoint(d, prof, index=i, **kind)[1].exists(),
                               lambda d=d, i=i, f=family: trojan_model(d, prof, index=i, trojaned=f == "trojaned",
                                                                       relabelled=f == "relabelled", progress=True)))
    return out


def prepare(prof: Profile, *, stream=sys.stderr) -> float:
    """Run :func:`jobs` with an overall bar in estimated seconds; returns the seconds it took."""
    todo = jobs(prof)
    for d in dataset_names():  # fail at once, with the message that says where the data should be
        load_dataset(d, "test", limit=1)
    pending = sum(j.seconds for j in todo if not j.cached)
    print(f"profile {prof.name}: {len(todo)} models and fits; the uncached ones are estimated at about "
          f"{pending / 60:.0f} min on a 2-core CPU (an upper bound)", file=stream, flush=True)
    start = time.perf_counter()
    overall = tqdm(total=round(sum(j.seconds for j in todo)), desc="the book's models", unit="est. s",
                   position=0, file=stream, smoothing=0.0)
    for j in todo:
        overall.set_postfix_str(j.label)
        t = time.perf_counter()
        j.run()
        overall.update(round(j.seconds))
        overall.write(f"{j.label}: {time.perf_counter() - t:.0f} s{' (cached)' if j.cached else ''}", file=stream)
    overall.close()
    took = time.perf_counter() - start
    print(f"the book's models are ready ({took / 60:.1f} min)", file=stream, flush=True)
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wna_helpers.book.prepare", description=__doc__)
    ap.add_argument("--profile", default=None, help="quick or full (default $WNA_PROFILE, else full)")
    args = ap.parse_args(argv)
    try:
        prof = get_profile(args.profile)
    except ValueError as exc:
        ap.error(str(exc))
    prepare(prof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
