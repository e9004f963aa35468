"""Keeping the daemon's threads on one CPU (`single_cpu`, on by default).

Only one thread of a Python process runs Python code at a time. Spread over several CPUs, the
daemon's threads (upload workers, watchdog's readers, the batcher) pass that lock back and forth
across CPUs at every blocking call: each pass wakes a thread on another CPU, and on a virtual
machine that is an inter-processor interrupt and a cold cache. Kept on one CPU the same work
costs far less: in the burst benchmark (300 small files, 2 CPUs) v1 went from 3.30 to 2.73 ms
of CPU per file and v3 from 2.87 to 2.10. What the daemon does outside that lock (hashing,
the kernel's network and disk work) is per file and sequential, so one CPU is not a bottleneck
until a host uploads big files faster than one CPU can hash them; `single_cpu: false` then
lets the scheduler spread the threads again.

The CPU is the one the daemon was started on, among those it may use (a unit's
`CPUAffinity=` or `taskset` still decide which): several daemons on one host land where the
scheduler put each. Linux only; elsewhere nothing changes.
"""

from __future__ import annotations

import errno
import os

_TASKS = "/proc/self/task"
# Every CPU the process could use when it started: what `single_cpu: false` gives back.
_allowed_at_start: frozenset[int] | None = None


def apply(single: bool) -> str:
    """Put every thread of this process on one CPU (``single``) or on all it may use; new
    threads inherit the setting from the thread that starts them. Returns what was done, for
    the log; `OSError` (a seccomp filter refusing the call, say) when it cannot be done."""
    if not hasattr(os, "sched_setaffinity"):
        return "left to the system (no CPU affinity here)"
    allowed = _allowed()
    if len(allowed) < 2:
        return f"on CPU {_listed(allowed)}, the only one this process may use"
    chosen = {_current_cpu(allowed)} if single else set(allowed)
    for task in os.listdir(_TASKS):
        try:
            os.sched_setaffinity(int(task), chosen)
        except OSError as error:
            if error.errno != errno.ESRCH:  # a thread that ended meanwhile needs nothing
                raise
    if single:
        return f"threads kept on CPU {_listed(chosen)} of {_listed(allowed)} (single_cpu)"
    return f"threads spread over CPUs {_listed(allowed)}"


def _allowed() -> frozenset[int]:
    global _allowed_at_start
    if _allowed_at_start is None:
        _allowed_at_start = frozenset(os.sched_getaffinity(0))
    return _allowed_at_start


def _current_cpu(allowed: frozenset[int]) -> int:
    """The CPU this thread last ran on (field 39 of /proc/self/stat), if it is allowed."""
    try:
        with open("/proc/thread-self/stat", encoding="ascii") as stat:
            cpu = int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return min(allowed)
    return cpu if cpu in allowed else min(allowed)


def _listed(cpus: set[int] | frozenset[int]) -> str:
    """``0-3,6``: as Linux lists CPU sets."""
    ordered = sorted(cpus)
    ranges: list[str] = []
    start = previous = ordered[0]
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == previous + 1:
            previous = cpu
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if cpu is not None:
            start = previous = cpu
    return ",".join(ranges)
