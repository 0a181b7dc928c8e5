"""Argument checks: each message names the argument, what is expected, and the value given."""

from __future__ import annotations

import math
import mmap
import operator
from typing import Any, Literal, get_args

import attrs

__all__ = [
    "MODES",
    "AdaptiveLatency",
    "MaxLatency",
    "Mode",
    "check_id",
    "check_poll",
    "check_reading_mode",
    "ring_pages",
]

#: How a map poller reads (see :class:`aiobpf.MapPoller`).
Mode = Literal["snapshot", "delta", "drain"]
MODES: tuple[str, ...] = get_args(Mode)


@attrs.frozen
class AdaptiveLatency:
    """An adaptive latency budget of at most ``bound`` seconds: a source waits up to ``bound``
    before reading while records come often enough for a read to gather several (three per
    ``bound``, on average), and reads at once when they come further apart.
    ``max_latency="auto"`` is ``AdaptiveLatency(0.004)``; a tool whose reader is a person or a
    pipe can afford a longer bound, and then pays far fewer wake-ups per record."""

    bound: float = attrs.field()

    @bound.validator
    def _positive(self, _attribute: object, value: float) -> None:
        if isinstance(value, bool) or not (
            isinstance(value, int | float) and value > 0 and math.isfinite(value)
        ):
            raise ValueError(f"an adaptive bound is a finite number > 0 seconds, got {value!r}")


#: A ring source's latency budget: seconds, "auto" (adaptive, see :class:`Pacing`), or an
#: adaptive budget with a bound of one's own.
MaxLatency = float | Literal["auto"] | AdaptiveLatency


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


def check_reading_mode(max_latency: MaxLatency, busy_poll: float) -> None:
    """A ring source's latency budget ("auto" or >= 0 seconds) and busy-polling time (>= 0
    seconds), and not both (one saves wake-ups, the other spends a core to avoid them; with
    ``busy_poll``, "auto" means no budget)."""
    if max_latency == "auto" or isinstance(max_latency, AdaptiveLatency):
        max_latency = 0.0
    elif isinstance(max_latency, str) or not (max_latency >= 0 and math.isfinite(max_latency)):
        raise ValueError(
            f"max_latency must be 'auto' or a finite number >= 0 seconds, got {max_latency!r}"
        )
    if not (busy_poll >= 0 and math.isfinite(busy_poll)):
        raise ValueError(f"busy_poll must be a finite number >= 0 seconds, got {busy_poll!r}")
    if busy_poll and max_latency:
        raise ValueError(
            f"busy_poll ({busy_poll!r}) and max_latency ({max_latency!r}) pull opposite ways "
            "(the lowest latency, or fewer wake-ups): give one of them"
        )


def check_poll(interval: float, mode: str) -> None:
    """A map poller's interval (finite, > 0 seconds) and mode."""
    if not (interval > 0 and math.isfinite(interval)):
        raise ValueError(f"interval must be a finite number > 0 seconds, got {interval!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def check_id(kind: str, value: Any, *, bits: int = 32) -> int:
    """A pid or uid as the kernel keeps it (an unsigned 32-bit number; a cgroup id has 64)."""
    try:
        number = operator.index(value)
    except TypeError:
        number = -1
    if isinstance(value, bool) or not 0 <= number < 1 << bits:
        raise ValueError(f"a {kind} is a whole number from 0 to {(1 << bits) - 1}, got {value!r}")
    return number
