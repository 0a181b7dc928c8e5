"""The kernel's event times (CLOCK_MONOTONIC, ``bpf_ktime_get_ns``) as wall-clock time.

One offset, measured once at import: converting each event's own timestamp keeps the order
and spacing the kernel saw, which a fresh ``time.time()`` per event would not (NTP slews the
wall clock; the offset is off by at most the slew since the process started)."""

from __future__ import annotations

import time

__all__ = ["MONOTONIC_TO_WALL_NS", "wall_now", "wall_time"]

#: Nanoseconds to add to a CLOCK_MONOTONIC time for Unix time.
MONOTONIC_TO_WALL_NS = time.time_ns() - time.monotonic_ns()


def wall_time(monotonic_ns: int) -> float:
    """Unix seconds of a CLOCK_MONOTONIC time in nanoseconds."""
    return (monotonic_ns + MONOTONIC_TO_WALL_NS) / 1e9


def wall_now() -> float:
    """Unix seconds now, on the same base as :func:`wall_time` (so that a window's bound and
    the events in it compare as the kernel ordered them)."""
    return wall_time(time.monotonic_ns())
