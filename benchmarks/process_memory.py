"""This process's memory on Linux, standard library only: resident set size (``VmRSS``), its high-water mark
(``VmHWM``, resettable through ``/proc/self/clear_refs``) and the never-reset peak (``ru_maxrss``). Used by
``train_step.py`` and ``gpu_measure.py``; every value in GB (1e9 bytes)."""

from __future__ import annotations

import resource

GB = 1e9


def _status_gb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``: kB there) in GB; None where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_gb() -> float | None:
    return _status_gb("VmRSS")


def hwm_gb() -> float | None:
    return _status_gb("VmHWM")


def process_peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # Linux: KiB; never reset by clear_refs
