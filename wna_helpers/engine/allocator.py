"""The memory allocator under the engine's runs: glibc's malloc tuned for large, short-lived buffers.

A forward pass allocates large activation buffers and frees them again. glibc's defaults hand such buffers back to
the operating system after every batch and fault them in again on the next (measured on a 2-core CPU: a third of the
run's CPU time in the kernel). Three pieces keep them in the process, on Linux with glibc:

* :func:`tune_allocator` raises glibc's trim and mmap thresholds once per process, when the engine or
  :func:`~wna_helpers.zoo.training.train` first starts (``WNA_MALLOPT=0`` leaves the allocator alone);
* :func:`heap_only` serves every buffer of an engine run from the heap, none from its own ``mmap``, even those over
  glibc's largest mmap threshold (``WNA_HEAP_ONLY=0`` turns it off);
* :class:`HeapWatch` gives the heap's free pages back when a run's resident size grows past where it settled, so
  the memory a run holds stays flat in its length.

Import rule: the standard library only (``ctypes``, ``/proc``); the engine imports this module, never the reverse.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from contextlib import contextmanager
from typing import Iterator

__all__ = ["tune_allocator", "allocator_status", "MALLOPT_SETTINGS", "GLIBC_MMAP_MAX", "heap_only",
           "release_free_memory", "HeapWatch", "resident_mb", "SETTLE_BATCHES", "HEAP_SLACK_MB", "WATCH_EVERY",
           "heap_batch_size", "CPU_BATCH_SIZE", "MIN_CPU_BATCH_SIZE", "BATCH_OUTPUTS_MB"]

# glibc's mallopt parameters (malloc.h) and the values the engine sets
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
#: glibc's default limit on buffers served by their own mmap (malloc.h's DEFAULT_MMAP_MAX), which :func:`heap_only`
#: restores.
GLIBC_MMAP_MAX = 65536
#: What :func:`tune_allocator` sets: buffers under 32 MiB (glibc's maximum) come from the heap,
#: freed memory is kept until 1 GiB of it is free, and the heap grows 512 MiB at a time.
MALLOPT_SETTINGS: dict[str, int] = {"M_MMAP_THRESHOLD": 32 << 20, "M_TRIM_THRESHOLD": 1 << 30,
                                    "M_TOP_PAD": 512 << 20}
_STATUS: dict[str, object] | None = None
#: Values of ``WNA_MALLOPT`` / ``WNA_HEAP_ONLY`` that turn the setting off.
_OFF = ("0", "off", "false", "no")


def _switched_off(variable: str) -> bool:
    return os.environ.get(variable, "1").strip().lower() in _OFF


def allocator_status() -> dict[str, object]:
    """Whether :func:`tune_allocator` changed the allocator: ``{"applied": bool, "reason": str, "settings": ...}``
    (``{"applied": False, "reason": "not requested yet"}`` before the first engine run)."""
    return dict(_STATUS) if _STATUS is not None else {"applied": False, "reason": "not requested yet"}


def tune_allocator() -> dict[str, object]:
    """Set glibc's malloc thresholds for large, short-lived buffers, once per process.

    Applied on Linux with glibc unless the environment variable ``WNA_MALLOPT`` is ``0``
    (or ``off``, ``false``, ``no``); elsewhere it does nothing. The settings
    (:data:`MALLOPT_SETTINGS`) keep freed activation buffers in the process for the next
    batch instead of returning them to the operating system; the memory a run holds is then
    its peak, which stays flat in the number of samples.

    Returns:
        :func:`allocator_status`.
    """
    global _STATUS
    if _STATUS is not None:
        return dict(_STATUS)
    if _switched_off("WNA_MALLOPT"):
        _STATUS = {"applied": False, "reason": "WNA_MALLOPT=0"}
    elif not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        _STATUS = {"applied": False, "reason": f"not Linux with glibc ({sys.platform}, {platform.libc_ver()[0]!r})"}
    else:
        try:
            ctypes.CDLL("libc.so.6")
        except OSError as exc:  # no libc.so.6 after all
            _STATUS = {"applied": False, "reason": f"cannot load libc: {exc}"}
        else:
            codes = {"M_MMAP_THRESHOLD": _M_MMAP_THRESHOLD, "M_TRIM_THRESHOLD": _M_TRIM_THRESHOLD,
                     "M_TOP_PAD": _M_TOP_PAD}
            failed = [k for k, v in MALLOPT_SETTINGS.items() if not _mallopt(codes[k], v)]
            _STATUS = {"applied": not failed, "reason": f"mallopt refused {failed}" if failed else "glibc mallopt",
                       "settings": dict(MALLOPT_SETTINGS)}
    return dict(_STATUS)


_HEAP_ONLY_DEPTH = 0


@contextmanager
def heap_only() -> Iterator[bool]:
    """Within the block glibc serves every buffer from its heap, none from a fresh ``mmap`` (``M_MMAP_MAX=0``), when
    :func:`tune_allocator` applied its settings and the environment variable ``WNA_HEAP_ONLY`` is not ``0``; yields
    whether it does. The engine streams its batches in this block.

    A buffer of 32 MiB or more (glibc's largest mmap threshold; ``alexnet_small``'s activations at 1,024 samples a
    batch are 50-85 MB) comes from the heap only while a free chunk that large is there, else from its own ``mmap``,
    whose pages fault in on first use and go back to the system when it is freed. Once a long run has fragmented the
    heap that happens every batch (``benchmarks/README.md``: 148 s of kernel time in one 10^6-sample run). From the
    heap, the freed buffer is there for the next batch. On leaving, the limit goes back to glibc's default
    (:data:`GLIBC_MMAP_MAX`; glibc cannot report the value it had), so buffers allocated outside the engine's runs
    (a reader's arrays) are mapped as before.

    Example:
        >>> with heap_only() as on:
        ...     pass   # every malloc from the heap here when on is True
    """
    global _HEAP_ONLY_DEPTH
    on = bool((_STATUS or {}).get("applied")) and not _switched_off("WNA_HEAP_ONLY")
    if on and _HEAP_ONLY_DEPTH == 0:
        on = _mallopt(_M_MMAP_MAX, 0)
    if on:
        _HEAP_ONLY_DEPTH += 1
    try:
        yield on
    finally:
        if on:
            _HEAP_ONLY_DEPTH -= 1
            if _HEAP_ONLY_DEPTH == 0:
                _mallopt(_M_MMAP_MAX, GLIBC_MMAP_MAX)


def _mallopt(param: int, value: int) -> bool:
    """glibc's ``mallopt(param, value)``; True if it accepted the value."""
    try:
        return ctypes.CDLL("libc.so.6").mallopt(param, value) == 1
    except (OSError, AttributeError):
        return False


#: Batches the engine runs before it notes the resident size a run settles at (:class:`HeapWatch`).
SETTLE_BATCHES = 16
#: Growth of the resident size past the settled one (MiB) at which :class:`HeapWatch` gives the heap's free
#: pages back.
HEAP_SLACK_MB = 48
#: The most MiB a batch's leaf-layer outputs may add up to on a CPU (:func:`heap_batch_size`): four times the slack.
BATCH_OUTPUTS_MB = 4 * HEAP_SLACK_MB
#: The engine's largest batch on a CPU, and the least :func:`heap_batch_size` halves it to.
CPU_BATCH_SIZE, MIN_CPU_BATCH_SIZE = 1024, 128


def heap_batch_size(widest_bytes: int | None, *, largest: int = CPU_BATCH_SIZE,
                    least: int = MIN_CPU_BATCH_SIZE, total_bytes: int | None = None) -> int:
    """The batch on a CPU: ``largest`` halved while one batch's widest layer output (``widest_bytes`` per sample)
    would be over :data:`HEAP_SLACK_MB`, or all its leaf layers' outputs (``total_bytes`` per sample) over
    :data:`BATCH_OUTPUTS_MB`, down to ``least``; ``largest`` when the sizes are unknown (None).

    A buffer wider than the heap watch's slack can grow a fragmented heap past it at once, before a watch looks;
    and the more a batch allocates, the wider the band in which a fragmented heap moves from batch to batch.
    Measured on a 2-core Intel Xeon (``benchmarks/README.md``, 2026-12-06): ``alexnet_small`` (84.5 MiB for its
    widest output and 707 MiB for all its outputs at 1,024 samples) grew 80 MB within a 10^6-sample run at 1,024,
    0 to 123 MB at 512 (its resident size moving in a band about 90 MB wide from batch to batch) and 0 in four
    runs at 256, its peaks 712-920 MB against 810-1,057 at 512; compiled, in one process, its CI engine ran at 0.97
    of its speed at 512.
    ``paper_cnn`` (136 MiB of outputs at 1,024), ``lenet`` (98 at 512) and ``net3`` (98 at 256) read 0-36 MB.
    The batch does not change the result (class sums exactly, float32 rounding of spike-triggered sums).

    Example:
        >>> heap_batch_size(20 * 24 * 24 * 4)    # paper_cnn: 45 MiB at 1,024
        1024
        >>> heap_batch_size(32 * 28 * 28 * 4)    # net3: 98 MiB at 1,024, halved until it fits the slack
        256
        >>> heap_batch_size(84 * 2**10, total_bytes=707 * 2**10)    # alexnet_small: its outputs add up
        256
    """
    batch = largest
    while batch > least and ((widest_bytes or 0) * batch > HEAP_SLACK_MB * 2**20
                             or (total_bytes or 0) * batch > BATCH_OUTPUTS_MB * 2**20):
        batch //= 2
    return batch


#: Batches between two looks at the resident size (a read of ``/proc/self/statm``, a few microseconds).
WATCH_EVERY = 4


def resident_mb() -> float | None:
    """This process' resident set size in MiB (Linux ``/proc/self/statm``), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_free_memory() -> bool:
    """Give the free pages of glibc's heap back to the operating system (``malloc_trim(0)``) when
    :func:`tune_allocator` applied its settings; True if it did. Costly: the pages fault in again when they are
    used (about 2 s of kernel time for ``alexnet_small`` at 1,024 samples a batch), so call it only when the heap
    has grown (:class:`HeapWatch`)."""
    if not (_STATUS or {}).get("applied"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


class HeapWatch:
    """Keeps a run's resident size flat in its length at no cost while it stays flat.

    The tuned thresholds keep freed buffers for the next batch, but the heap fragments: buffers of many
    sizes freed and reused leave free pages between live ones, which stay resident, so a long run's memory
    would creep up. After :data:`SETTLE_BATCHES` batches the watch notes the resident size; every
    :data:`WATCH_EVERY` batches after that it compares, and when the size has grown by more than
    :data:`HEAP_SLACK_MB` it releases the free pages (:func:`release_free_memory`). If a release cannot bring
    the size back (the growth is live memory), or the size is back past the slack at the very next look (the
    run's working set is taken from the system again every batch: a large model's buffers), the settled size
    moves up to it, so a run never trims over and over (each release of a large heap costs kernel time).
    Does nothing unless the allocator is tuned and ``/proc`` can be read.

    Example:
        >>> watch = HeapWatch()
        >>> for i in range(1, 101):
        ...     watch.step(i)   # after batch i
    """

    def __init__(self, *, settle: int = SETTLE_BATCHES, slack_mb: float = HEAP_SLACK_MB,
                 every: int = WATCH_EVERY) -> None:
        self.settle, self.slack, self.every = settle, float(slack_mb), every
        self.baseline: float | None = None
        self.releases = 0
        self.last: int | None = None   # the batch of the last release
        self.active = bool((_STATUS or {}).get("applied"))

    def step(self, batch: int) -> None:
        """Call after the engine's ``batch``-th batch (counting from 1)."""
        if not self.active or batch < self.settle or (batch - self.settle) % self.every:
            return
        now = resident_mb()
        if now is None:
            self.active = False
        elif self.baseline is None:
            self.baseline = now
        elif now > self.baseline + self.slack:
            if self.last is not None and batch - self.last <= self.every:
                self.baseline = now    # back at once after the last release: the working set, settle there
            elif release_free_memory():
                self.releases += 1
                self.last = batch
                after = resident_mb()
                if after is not None and after > self.baseline + self.slack / 2:
                    self.baseline = after  # live growth, not free pages: settle there
