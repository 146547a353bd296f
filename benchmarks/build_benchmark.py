"""Time the book's whole build on this machine, phase by phase: the models, then every chapter.

``make book`` is ``make models`` (``python -m wna_helpers.book.prepare``) and then ``jupyter-book build``, which
executes each chapter of ``_toc.yml`` and renders the site. This script runs the first as ``make models`` does and
executes the chapters as jupyter-book does (nbclient, a fresh ``python3`` kernel per notebook, ``_config.yml``'s
per-cell timeout, the notebook's folder as working directory), timing each, and leaves out the HTML rendering,
which needs no accelerator. It is made for a machine that has the package's dependencies and a Jupyter kernel but
no jupyter-book, such as a lent GPU machine; it runs on a CPU too.

Run it with an empty ``WNA_CACHE_DIR`` for a cold build::

    WNA_CACHE_DIR=/tmp/wna-cold python benchmarks/build_benchmark.py --out benchmarks/results/build_gpu.json

The JSON is rewritten (write, then rename) after every phase, so a run stopped part way keeps what it measured:
the models' job lines as ``prepare`` printed them, each chapter's seconds, its slowest cell and its status
(``ok``, ``error`` with the message, ``stopped`` when SIGTERM arrived during it, as from ``timeout``, ``running``
when the run was killed outright during it, or ``not run`` once ``--budget`` seconds have passed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
class Stopped(Exception):
    """SIGTERM arrived (``timeout`` around the run, say): the phase running is recorded as stopped."""


#: The chapter being executed (its nbclient client) and the signal that stopped the run, if one did.
CURRENT: dict[str, Any] = {"client": None, "signal": None}


def _stop(signum: int, frame: object) -> None:
    """SIGTERM outside a chapter (the models' step, or between chapters)."""
    CURRENT["signal"] = signum
    raise Stopped(f"stopped by signal {signum} from outside the run")


def _kill_kernel() -> None:
    """SIGTERM during a chapter: note it and kill the kernel; nbclient then raises in its own loop."""
    CURRENT["signal"] = signal.SIGTERM
    process = getattr(getattr(getattr(CURRENT["client"], "km", None), "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        process.kill()


async def _on_notebook_start(notebook: object) -> None:
    """nbclient's hook once the kernel is up: nbclient has just put its own SIGTERM handler on its loop (it shuts
    the kernel down without telling why); this one replaces it, so the chapter is recorded as stopped."""
    import asyncio
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _kill_kernel)
    except (RuntimeError, NotImplementedError):   # not the main thread, or no signals (Windows)
        pass


JOB_LINE = re.compile(r"^(?P<label>.+): (?P<seconds>\d+) s(?P<cached> \(cached\))?$")


def toc_chapters(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The notebooks of ``_toc.yml`` in reading order, as paths relative to the root (Markdown pages left out)."""
    files = re.findall(r"^\s*-?\s*(?:root|file):\s*(\S+)\s*$", toc.read_text(), flags=re.M)
    return [f + ".ipynb" for f in files if (ROOT / (f + ".ipynb")).exists()]


def cell_timeout(config: Path = ROOT / "_config.yml") -> int:
    """``execute.timeout`` of ``_config.yml``: the seconds one cell may run."""
    m = re.search(r"^\s+timeout:\s*(\d+)", config.read_text(), flags=re.M)
    if m is None:
        raise ValueError(f"{config} has no execute timeout")
    return int(m.group(1))


def parse_jobs(log: str) -> list[dict[str, Any]]:
    """The per-model lines ``prepare`` prints (``label: N s`` or ``label: N s (cached)``), in order."""
    out = []
    for line in re.split(r"[\r\n]+", log):
        m = JOB_LINE.match(line.strip())
        if m and not line.strip().startswith("profile "):
            out.append({"label": m["label"], "seconds": int(m["seconds"]), "cached": bool(m["cached"])})
    return out


def host() -> dict[str, Any]:
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "gpu": gpu,
            "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def run_models(profile: str, log_path: Path | None) -> dict[str, Any]:
    """``python -m wna_helpers.book.prepare`` in a child process, its output echoed and kept; seconds and jobs."""
    env = dict(os.environ, WNA_PROFILE=profile, PYTHONUNBUFFERED="1")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "wna_helpers.book.prepare"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    chunks = []
    assert proc.stdout is not None
    stopped = False
    try:
        for line in proc.stdout:
            sys.stderr.write(line)
            chunks.append(line)
        rc: int | None = proc.wait()
    except Stopped:
        proc.terminate()
        proc.wait()
        stopped, rc = True, None
    log = "".join(chunks)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(log)
    return {"seconds": round(time.perf_counter() - t, 1), "rc": rc, "stopped": stopped, "jobs": parse_jobs(log)}


def cell_seconds(cell: dict[str, Any]) -> float | None:
    """One executed cell's seconds from nbclient's timing metadata, or None where it recorded none."""
    ex = cell.get("metadata", {}).get("execution", {})
    a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (a and b):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(b) - parse(a)).total_seconds()


def run_chapter(rel: str, timeout: int, keep: Path | None) -> dict[str, Any]:
    """Execute one notebook as jupyter-book does; its seconds, slowest cell and status."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = ROOT / rel
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", on_notebook_start=_on_notebook_start,
                            resources={"metadata": {"path": str(path.parent)}})
    t = time.perf_counter()
    status, error = "ok", None
    CURRENT["client"] = client
    try:
        client.execute()
    except Stopped as exc:
        status, error = "stopped", str(exc)
    except CellExecutionError as exc:
        status, error = "error", str(exc)[-2000:]
    except Exception as exc:  # a timeout or a dead kernel: recorded, and the next chapter still runs
        status, error = "error", f"{type(exc).__name__}: {exc}"[-2000:]
    finally:
        CURRENT["client"] = None
        signal.signal(signal.SIGTERM, _stop)   # nbclient's loop left SIGTERM at its default
    if CURRENT["signal"] is not None:
        status, error = "stopped", f"stopped by signal {CURRENT['signal']} from outside the run ({error})"
    seconds = round(time.perf_counter() - t, 1)
    cells = [s for s in (cell_seconds(c) for c in nb.cells if c.cell_type == "code") if s is not None]
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / path.name)
    return {"file": rel, "seconds": seconds, "status": status, "error": error,
            "slowest_cell_seconds": round(max(cells), 1) if cells else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=os.environ.get("WNA_PROFILE", "full"), choices=["quick", "full"],
                    help="the settings profile (default $WNA_PROFILE, else full)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON to write")
    ap.add_argument("--log", type=Path, default=None, help="where to keep the models' output (default: not kept)")
    ap.add_argument("--notebooks", type=Path, default=None, help="a folder for the executed notebooks")
    ap.add_argument("--chapters", nargs="*", default=None,
                    help="notebooks to execute, relative to the root (default: every one in _toc.yml)")
    ap.add_argument("--skip-models", action="store_true", help="do not run the models' step")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds after which no further chapter is started (default: none)")
    args = ap.parse_args(argv)
    chapters = args.chapters if args.chapters is not None else toc_chapters()
    missing = [c for c in chapters if not (ROOT / c).exists()]
    if missing:
        ap.error(f"no such notebook: {', '.join(missing)} (give paths relative to {ROOT}, like book/01_models.ipynb)")
    timeout = cell_timeout()
    start = time.perf_counter()
    result: dict[str, Any] = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "profile": args.profile, "host": host(), "cell_timeout": timeout,
                              "cache_dir": os.environ.get("WNA_CACHE_DIR"), "models": None, "chapters": []}
    os.environ["WNA_PROFILE"] = args.profile
    signal.signal(signal.SIGTERM, _stop)
    if not args.skip_models:
        result["models"] = run_models(args.profile, args.log)
        result["total_seconds"] = round(time.perf_counter() - start, 1)
        write_json(args.out, result)
        if result["models"]["rc"] != 0:
            print(f"the models' step failed or was stopped (exit {result['models']['rc']}); no chapter run",
                  file=sys.stderr)
            return 1
    for rel in chapters:
        if args.budget is not None and time.perf_counter() - start > args.budget:
            result["chapters"].append({"file": rel, "seconds": None, "status": "not run", "error": None,
                                       "slowest_cell_seconds": None})
        else:   # written as running first: a run killed outright still shows which chapter it was in
            result["chapters"].append({"file": rel, "seconds": None, "status": "running", "error": None,
                                       "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                       "slowest_cell_seconds": None})
            write_json(args.out, result)
            row = run_chapter(rel, timeout, args.notebooks)
            result["chapters"][-1] = row
            print(f"{rel}: {row['seconds']:.0f} s, {row['status']}", file=sys.stderr, flush=True)
        result["total_seconds"] = round(time.perf_counter() - start, 1)
        write_json(args.out, result)
        if result["chapters"][-1]["status"] == "stopped":
            return 1
    write_json(args.out, result)
    return 0 if all(c["status"] == "ok" for c in result["chapters"]) else 1


if __name__ == "__main__":
    sys.exit(main())
