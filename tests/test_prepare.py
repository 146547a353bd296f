"""make models' scheduler (``wna_helpers.book.prepare``): jobs in worker processes, each once, in dependency order."""
from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from wna_helpers.book import prepare
from wna_helpers.config import PROFILES

PROF = PROFILES["quick"]
# estimates: "late" is the longest, so it would go first were it not for its ``after``
PLAN = (("first", 2.0, None), ("late", 9.0, "first"), ("small", 1.0, None), ("middle", 3.0, None))


def _record(label: str) -> None:
    folder = Path(os.environ["WNA_TEST_PREPARE_DIR"])
    start = time.time()
    if label == os.environ.get("WNA_TEST_PREPARE_FAIL"):
        raise ValueError(f"planted failure in {label}")
    time.sleep(0.4)
    (folder / f"{label}.json").write_text(json.dumps(
        {"pid": os.getpid(), "start": start, "end": time.time(), "threads": torch.get_num_threads()}))


def fake_jobs(prof) -> list[prepare.Job]:
    """Module-level, so that the worker processes can call it again."""
    return [prepare.Job(label, seconds, False, lambda label=label: _record(label), after)
            for label, seconds, after in PLAN]


def test_workers_run_every_job_once_in_their_own_processes_after_what_they_need(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_TEST_PREPARE_DIR", str(tmp_path))
    out = io.StringIO()
    prepare.prepare(PROF, workers=2, stream=out, make_jobs=fake_jobs)
    runs = {label: json.loads((tmp_path / f"{label}.json").read_text()) for label, _, _ in PLAN}
    pids = {r["pid"] for r in runs.values()}
    assert os.getpid() not in pids and len(pids) == 2          # two worker processes, not this one
    assert runs["late"]["start"] >= runs["first"]["end"]     # never before the job it runs after
    assert {r["threads"] for r in runs.values()} == {max(1, torch.get_num_threads() // 2)}
    lines = out.getvalue()
    for label, _, _ in PLAN:                                  # one line per job, as build_benchmark parses them
        assert len(re.findall(rf"\b{label}: \d+ s\n", lines)) == 1, lines
    assert "running 2 at a time" in lines and "the book's models are ready" in lines


def test_one_worker_runs_here_in_plan_order(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_TEST_PREPARE_DIR", str(tmp_path))
    prepare.prepare(PROF, workers=1, stream=io.StringIO(), make_jobs=fake_jobs)
    runs = [json.loads((tmp_path / f"{label}.json").read_text()) for label, _, _ in PLAN]
    assert {r["pid"] for r in runs} == {os.getpid()}
    assert [r["start"] for r in runs] == sorted(r["start"] for r in runs)


def test_a_failing_job_stops_make_models_with_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("WNA_TEST_PREPARE_DIR", str(tmp_path))
    monkeypatch.setenv("WNA_TEST_PREPARE_FAIL", "first")
    with pytest.raises(RuntimeError, match=r"(?s)'first' failed in a worker process.*planted failure in first"):
        prepare.prepare(PROF, workers=2, stream=io.StringIO(), make_jobs=fake_jobs)
    assert not (tmp_path / "late.json").exists()              # what needed it never started


def cyclic_jobs(prof) -> list[prepare.Job]:
    return [prepare.Job("a", 1.0, False, lambda: None, "b"), prepare.Job("b", 1.0, False, lambda: None, "a")]


def test_jobs_that_wait_on_one_another_are_refused_not_waited_for():
    with pytest.raises(ValueError, match="jobs wait on one another"):
        prepare.prepare(PROF, workers=2, stream=io.StringIO(), make_jobs=cyclic_jobs)


@pytest.mark.parametrize("bad", [0, -1, "two", "1.5"])
def test_bad_worker_counts_are_refused_before_anything_runs(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("WNA_TEST_PREPARE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="workers must be a whole number from 1 up"):
        prepare.prepare(PROF, workers=bad, stream=io.StringIO(), make_jobs=fake_jobs)
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("WNA_PREPARE_WORKERS", str(bad))
    with pytest.raises(ValueError, match="workers must be a whole number"):
        prepare.default_workers()


def test_default_workers(monkeypatch):
    monkeypatch.delenv("WNA_PREPARE_WORKERS", raising=False)
    want = 1 if torch.cuda.is_available() or torch.get_num_threads() < 2 else 2
    assert prepare.default_workers() == want
    monkeypatch.setenv("WNA_PREPARE_WORKERS", "3")
    assert prepare.default_workers() == 3
    with pytest.raises(SystemExit):  # the CLI says so rather than raising
        prepare.main(["--workers", "none"])
