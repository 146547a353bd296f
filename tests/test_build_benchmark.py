"""benchmarks/build_benchmark.py: the build's phases, timed as jupyter-book would run them, and stopped cleanly."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "build_benchmark.py"


def _mod():
    spec = importlib.util.spec_from_file_location("build_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_jobs_reads_prepare_lines_through_progress_bars():
    log = ("profile full: 3 models and fits; the uncached ones are estimated at about 5 min on a 2-core CPU\r"
           "the book's models:  10%|#  | 1/10 [00:01<00:09]\r"
           "lenet on mnist: 8 s\n"
           "paper_cnn on mnist trained the paper's way, seed 100 (chapter 8): 12 s\n"
           "gru on mnist: 0 s (cached)\n"
           "the book's models are ready (0.3 min)\n")
    assert _mod().parse_jobs(log) == [
        {"label": "lenet on mnist", "seconds": 8, "cached": False},
        {"label": "paper_cnn on mnist trained the paper's way, seed 100 (chapter 8)", "seconds": 12, "cached": False},
        {"label": "gru on mnist", "seconds": 0, "cached": True}]


def test_toc_and_timeout_come_from_the_books_files():
    m = _mod()
    chapters = m.toc_chapters()
    assert chapters[0] == "book/01_models.ipynb" and "book/appendix_performance.ipynb" in chapters
    assert all((ROOT / c).exists() and c.endswith(".ipynb") for c in chapters)   # Markdown pages left out
    assert m.cell_timeout() == 3600


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


def _run(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), "--skip-models", "--out", str(tmp_path / "b.json"), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_chapters_ok_error_and_budget(tmp_path):
    ok = _notebook(tmp_path / "ok.ipynb", "import time; time.sleep(0.3)", "x = 1")
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('planted')")
    proc = _run(tmp_path, "--chapters", str(ok), str(bad), str(ok), "--budget", "0.0")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    rows = json.loads((tmp_path / "b.json").read_text())["chapters"]
    # a budget of 0 s lets no chapter start: every row is "not run", none is timed
    assert [r["status"] for r in rows] == ["not run"] * 3 and all(r["seconds"] is None for r in rows)
    proc = _run(tmp_path, "--chapters", str(ok), str(bad))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    data = json.loads((tmp_path / "b.json").read_text())
    first, second = data["chapters"]
    assert first["status"] == "ok" and first["error"] is None and 0.3 <= first["slowest_cell_seconds"] < 30
    assert first["seconds"] >= first["slowest_cell_seconds"]
    assert second["status"] == "error" and "planted" in second["error"]
    assert data["models"] is None and data["cell_timeout"] == 3600


def test_sigterm_marks_the_running_chapter_stopped_and_keeps_the_json(tmp_path):
    marker = tmp_path / "started"
    slow = _notebook(tmp_path / "slow.ipynb", f"open({str(marker)!r}, 'w').close()\nimport time; time.sleep(120)")
    proc = _run(tmp_path, "--chapters", str(slow), str(slow))
    deadline = time.time() + 90
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the notebook never started"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    rows = json.loads((tmp_path / "b.json").read_text())["chapters"]
    assert len(rows) == 1 and rows[0]["status"] == "stopped" and rows[0]["seconds"] < 100   # the second never ran
    assert not list(tmp_path.glob("*.tmp"))


def test_a_missing_notebook_is_refused_before_any_work(tmp_path):
    proc = _run(tmp_path, "--chapters", "book/no_such_chapter.ipynb")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no such notebook: book/no_such_chapter.ipynb" in out
    assert not (tmp_path / "b.json").exists()
