"""Argument checks: each message names the argument, what is expected, and the value given."""

from __future__ import annotations

import mmap

__all__ = ["check_reading_mode", "ring_pages"]


def ring_pages(ring_size: int) -> int:
    """Pages for a ring of ``ring_size`` bytes; ValueError unless a power-of-two page count."""
    page = mmap.PAGESIZE
    if (
        not isinstance(ring_size, int)
        or ring_size < page
        or ring_size % page
        or (ring_size // page) & (ring_size // page - 1)
    ):
        raise ValueError(
            f"ring_size must be a power of two number of bytes, at least one page ({page}), "
            f"got {ring_size!r}"
        )
    return ring_size // page


def check_reading_mode(max_latency: float, busy_poll: float) -> None:
    """A ring source's latency budget and busy-polling time: each >= 0 seconds, and not both
    (one saves wake-ups, the other spends a core to avoid them)."""
    if not max_latency >= 0:
        raise ValueError(f"max_latency must be >= 0 seconds, got {max_latency!r}")
    if not busy_poll >= 0:
        raise ValueError(f"busy_poll must be >= 0 seconds, got {busy_poll!r}")
    if busy_poll and max_latency:
        raise ValueError(
            f"busy_poll ({busy_poll!r}) and max_latency ({max_latency!r}) pull opposite ways "
            "(the lowest latency, or fewer wake-ups): give one of them"
        )
