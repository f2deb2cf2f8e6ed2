"""Resident memory of this process on Linux: current RSS, peak RSS, and a peak reset.

The kernel keeps a process's peak resident set size (its "high-water mark", ``VmHWM`` in
``/proc/self/status``), and writing ``5`` to ``/proc/self/clear_refs`` resets it to the current
RSS (Linux ≥ 4.0). That lets a subprocess build a model, note its RSS, reset the peak, run one
variant, and read the run's own peak, so the model build's transient allocations cannot hide
the run's peak.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` reports the larger of that mark and a second
value the kernel saves whenever a thread of the process exits; the reset does not clear the
second one, so after a worker thread has exited, ``ru_maxrss`` can stay at a peak from before
the reset (this happened here: every variant then showed the model build's peak). The peak is
therefore read from ``VmHWM``; ``ru_maxrss`` is reported alongside.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None without /proc."""
    try:
        match = re.search(rf"{field}:\s+(\d+) kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MB (kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """The resident set size now, in MB (``VmRSS``)."""
    kilobytes = _status_kb("VmRSS")
    return maxrss_mb() if kilobytes is None else kilobytes / 1024


def peak_rss_mb() -> float:
    """The peak resident set size since start or since the last :func:`reset_peak`, in MB."""
    kilobytes = _status_kb("VmHWM")
    return maxrss_mb() if kilobytes is None else kilobytes / 1024


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak() -> bool:
    """Reset the peak RSS to the current RSS; True if the kernel allowed it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
