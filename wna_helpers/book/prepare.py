"""Train (or load) every model the book needs, before any chapter runs: ``python -m wna_helpers.book.prepare``.

``make book`` runs this first (``make models``), so no chapter cell trains for long and a newcomer sees in
the terminal what is being trained, a progress bar per model and an overall bar with an estimate of the
time left. What is already cached loads in a second. On a CPU two jobs run at a time, in two processes of one
thread each (:func:`default_workers`): the small networks this trains keep one thread busier than they keep two.
On a 2-core AMD EPYC (2026-12-05) six of the full profile's jobs (``lenet`` and ``gru`` on MNIST, four trojan-study
models) took 208-210 s one after another on two threads and 186-192 s two at a time (1.08-1.13 times as fast;
``benchmarks/workers_benchmark.py``). Two at a time, a trojan-study model took 1.8-1.9 times as long as alone,
``lenet`` 1.7-1.8 times, ``gru`` 1.2-1.3 times. The models: every architecture on both datasets
(chapter 2), ``paper_cnn``'s training snapshots (chapter 8; they write its checkpoint too), the networks trained
the paper's way (chapter 8), the Gabor-noise fits (chapters 3 and 8), and the trojan study's clean, trojaned,
relabelled and reference models (chapter 9).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, TextIO

import torch
from tqdm.auto import tqdm

from ..config import Profile, get_profile
from ..zoo.data import dataset_names, load_dataset
from ..zoo.models import model_names
from ..zoo.paper_recipe import paper_recipe_model, paper_recipe_path, paper_recipe_seeds
from ..zoo.snapshots import snapshot_path, training_snapshots
from ..zoo.training import checkpoint_path, get_trained_model
from .noise_study import noise_kind
from .trojan_study import FAMILIES, trojan_checkpoint, trojan_model

__all__ = ["Job", "jobs", "prepare", "default_workers", "main", "SECONDS_PER_EPOCH"]

#: Seconds one epoch over the 60,000 training images takes on a 2-core AMD EPYC, about 15 % above the cold
#: full ``make models`` of 2026-12-03 (channels-last, tuned allocator: paper_cnn 9-11 s, lenet 9.5-10.7, alexnet_small
#: 63-65, net3 20-22, mlp 2.0-2.2, logreg 0.2-0.3, gru 10.9-11.8): the estimate's scale, an upper bound.
SECONDS_PER_EPOCH: dict[str, float] = {"paper_cnn": 12.0, "lenet": 12.5, "alexnet_small": 75.0, "net3": 25.0,
                                       "mlp": 2.5, "logreg": 0.4, "gru": 13.5}


@dataclass
class Job:
    """One thing to train or fit: a label, an estimate of its seconds, whether it is cached, the call, and the
    label of the job that must end before it starts (None: none)."""

    label: str
    seconds: float
    cached: bool
    run: Callable[[], object]
    after: str | None = None


def _epoch_seconds(arch: str, prof: Profile) -> float:
    share = (prof.train_subset or 60_000) / 60_000
    return SECONDS_PER_EPOCH.get(arch, 30.0) * share


def jobs(prof: Profile) -> list[Job]:
    """Everything the book trains under ``prof``, in the order :func:`prepare` runs it."""
    out: list[Job] = []
    for d in dataset_names():
        snapshots = f"paper_cnn on {d}: training snapshots (chapter 8)"
        out.append(Job(snapshots, _epoch_seconds("paper_cnn", prof) * prof.epochs_for("paper_cnn", d),
                       snapshot_path("paper_cnn", d, prof).exists(),
                       lambda d=d: training_snapshots("paper_cnn", d, prof, progress=True)))
        for a in model_names():  # the snapshots write paper_cnn's checkpoint: it loads after them
            out.append(Job(f"{a} on {d}", _epoch_seconds(a, prof) * prof.epochs_for(a, d),
                           checkpoint_path(a, d, prof).exists(),
                           lambda a=a, d=d: get_trained_model(a, d, prof, progress=True),
                           snapshots if a == "paper_cnn" else None))
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


def default_workers() -> int:
    """How many jobs :func:`prepare` runs at a time: 1 with a GPU (the jobs would share it), else 2 where torch
    has two threads or more (``$WNA_PREPARE_WORKERS`` overrides)."""
    env = os.environ.get("WNA_PREPARE_WORKERS")
    if env:
        return _check_workers(env)
    if torch.cuda.is_available():
        return 1
    return 2 if torch.get_num_threads() >= 2 else 1


def _check_workers(value: object) -> int:
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise ValueError(f"workers must be a whole number from 1 up, got {value!r}")
    return n


def prepare(prof: Profile, *, workers: int | None = None, stream: TextIO = sys.stderr,
            make_jobs: Callable[[Profile], list[Job]] = jobs) -> float:
    """Run :func:`jobs` with an overall bar in estimated seconds; returns the seconds it took.

    Args:
        prof: the resolved profile.
        workers: jobs run at a time (default :func:`default_workers`). With 1 they run here in :func:`jobs`'
            order; with more, each in one of ``workers`` spawned processes, which share torch's threads (at
            least one each), longest estimate first, a job never before the one it runs ``after``. A process's
            thread count changes float rounding (``paper_cnn`` trained one epoch on one thread and on two ended
            1e-5 apart), not the recipe or the cache key.
        stream: where the lines and the overall bar go; default stderr.
        make_jobs: the plan (default :func:`jobs`); with several workers a module-level function, which each
            process calls again (its jobs' calls cannot travel between processes).

    Raises:
        ValueError: ``workers`` not a whole number from 1 up (before anything runs).
        RuntimeError: a job failed in a worker process (its traceback in the message; the other jobs stop).
    """
    workers = default_workers() if workers is None else _check_workers(workers)
    todo = make_jobs(prof)
    for d in dataset_names():  # fail at once, with the message that says where the data should be
        load_dataset(d, "test", limit=1)
    pending = sum(j.seconds for j in todo if not j.cached)
    workers = min(workers, len(todo)) or 1
    print(f"profile {prof.name}: {len(todo)} models and fits; the uncached ones are estimated at about "
          f"{pending / 60:.0f} min on a 2-core CPU one at a time (an upper bound)"
          + (f"; running {workers} at a time" if workers > 1 else ""), file=stream, flush=True)
    start = time.perf_counter()
    overall = tqdm(total=round(sum(j.seconds for j in todo)), desc="the book's models", unit="est. s",
                   position=0, file=stream, smoothing=0.0)

    def done(j: Job, seconds: float) -> None:
        overall.update(round(j.seconds))
        overall.write(f"{j.label}: {seconds:.0f} s{' (cached)' if j.cached else ''}", file=stream)

    if workers == 1:
        for j in todo:
            overall.set_postfix_str(j.label)
            t = time.perf_counter()
            j.run()
            done(j, time.perf_counter() - t)
    else:
        _run_in_processes(prof, make_jobs, todo, workers, overall, done)
    overall.close()
    took = time.perf_counter() - start
    print(f"the book's models are ready ({took / 60:.1f} min)", file=stream, flush=True)
    return took


def _run_in_processes(prof: Profile, make_jobs: Callable[[Profile], list[Job]], todo: list[Job], workers: int,
                      overall: tqdm, done: Callable[[Job, float], None]) -> None:
    """Dispatch ``todo`` to ``workers`` spawned processes, longest estimate first, each job after its ``after``."""
    ctx = mp.get_context("spawn")  # not fork: torch's thread pools do not survive a fork
    tasks, results = ctx.Queue(), ctx.Queue()
    threads = max(1, torch.get_num_threads() // workers)
    procs = []
    for k in range(workers):
        old = os.environ.get("TQDM_POSITION")
        os.environ["TQDM_POSITION"] = str(k + 1)  # each process's model bars on their own line, under the overall
        try:
            p = ctx.Process(target=job_worker, args=(prof, make_jobs, threads, tasks, results), daemon=True)
            p.start()
        finally:
            if old is None:
                del os.environ["TQDM_POSITION"]
            else:
                os.environ["TQDM_POSITION"] = old
        procs.append(p)
    by_label = {j.label: i for i, j in enumerate(todo)}
    waiting = sorted(range(len(todo)), key=lambda i: (-todo[i].seconds, i))
    finished: set[int] = set()
    running: set[int] = set()
    try:
        while waiting or running:
            for i in list(waiting):
                if len(running) == workers:
                    break
                after = todo[i].after
                if after is None or after not in by_label or by_label[after] in finished:
                    waiting.remove(i)
                    running.add(i)
                    tasks.put(i)
            if not running:  # nothing can start: the waiting jobs wait on one another
                raise ValueError(f"jobs wait on one another: {[todo[i].label for i in waiting]}")
            overall.set_postfix_str("; ".join(todo[i].label for i in sorted(running)))
            i, seconds, error = _next_result(results, procs)
            if error is not None:
                raise RuntimeError(f"training {todo[i].label!r} failed in a worker process:\n{error}")
            running.discard(i)
            finished.add(i)
            done(todo[i], seconds)
    finally:
        for _ in procs:
            tasks.put(None)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()


def _next_result(results: "mp.Queue[tuple[int, float, str | None]]",
                 procs: list) -> tuple[int, float, str | None]:
    """The next finished job; raises if a worker process died without reporting one."""
    while True:
        try:
            return results.get(timeout=5)
        except queue.Empty:  # check that every worker is still there
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                raise RuntimeError(f"a worker process of make models ended with exit code {dead[0].exitcode} "
                                   "without reporting its job (out of memory?)") from None


def job_worker(prof: Profile, make_jobs: Callable[[Profile], list[Job]], threads: int,
               tasks: "mp.Queue[int | None]", results: "mp.Queue[tuple[int, float, str | None]]") -> None:
    """A worker process of :func:`prepare`: runs the jobs ``make_jobs(prof)`` numbered in ``tasks`` on
    ``threads`` torch threads, reporting ``(index, seconds, traceback or None)``."""
    torch.set_num_threads(threads)
    todo = make_jobs(prof)
    while (i := tasks.get()) is not None:
        t = time.perf_counter()
        try:
            todo[i].run()
        except BaseException:
            results.put((i, 0.0, traceback.format_exc()))
            return
        results.put((i, time.perf_counter() - t, None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m wna_helpers.book.prepare", description=__doc__)
    ap.add_argument("--profile", default=None, help="quick or full (default $WNA_PROFILE, else full)")
    ap.add_argument("--workers", default=None, help="jobs at a time (default: 1 with a GPU, else 2 where torch "
                                                     "has two threads or more; $WNA_PREPARE_WORKERS overrides)")
    args = ap.parse_args(argv)
    try:
        prof = get_profile(args.profile)
        workers = default_workers() if args.workers is None else _check_workers(args.workers)
    except ValueError as exc:
        ap.error(str(exc))
    prepare(prof, workers=workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
