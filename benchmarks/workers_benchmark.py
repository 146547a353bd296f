"""``make models`` one job at a time (two threads) against two at a time (one thread each), on real jobs.

Runs :func:`wna_helpers.book.prepare.prepare` on a subset of the full profile's jobs (``lenet`` and ``gru`` on
MNIST and four of the trojan study's clean models: small networks, where a second thread helps least), with a
fresh empty ``WNA_CACHE_DIR`` per run so every job trains, the arms in the order given (alternate them):

    WNA_DATA_DIR=../shared/data .venv/bin/python benchmarks/workers_benchmark.py 1 2 1 2   # about 13 minutes

Prints, per run, the workers, the wall seconds, the clock, and each job's line as ``prepare`` printed it.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time

from wna_helpers.book import prepare
from wna_helpers.config import Profile, get_profile

LABELS = [f"trojan study on mnist: clean model {i}" for i in range(4)] + ["gru on mnist", "lenet on mnist"]


def subset(prof: Profile) -> list[prepare.Job]:
    """The benchmark's jobs (module level: the worker processes call it again)."""
    return [j for j in prepare.jobs(prof) if j.label in LABELS]


def main(arms: list[str]) -> None:
    prof = get_profile("full")
    for arm in arms:
        cache = tempfile.mkdtemp(prefix="wna-workers-")
        os.environ["WNA_CACHE_DIR"] = cache  # read at call time, and inherited by the worker processes
        try:
            out = io.StringIO()
            took = prepare.prepare(prof, workers=int(arm), stream=out, make_jobs=subset)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        lines = [ln.split("\r")[-1].strip() for ln in out.getvalue().splitlines() if ln.strip().endswith(" s")]
        print(f"workers={arm}: {took:.1f} s", time.strftime("%H:%M:%S"), lines, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["1", "2", "1", "2"])
