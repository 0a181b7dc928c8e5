"""When a ring source reads: the latency budget, busy polling, and the fill rate the budget is
weighed against. Pure arithmetic on times the source passes in, unit-tested on its own."""

from __future__ import annotations

import math

import attrs

from ._validate import check_reading_mode

__all__ = ["Pacing"]

#: How long the fill rate a latency budget is weighed against is averaged over (seconds).
RATE_WINDOW = 0.01

#: The shortest wait an event loop makes (both wait in whole milliseconds).
_SHORTEST_WAIT = 0.001


@attrs.define
class Pacing:
    """A ring source's reading rhythm.

    With a latency budget (``max_latency`` seconds), the source waits that long after a wake-up
    before reading, and while records keep coming reads at most once per budget, unless waiting
    could overflow the ring (it is then *behind*, and reads at once). ``busy_poll`` is the
    opposite trade: how long to keep looking at an empty ring before sleeping on its fd.
    """

    max_latency: float = 0.0
    busy_poll: float = 0.0
    behind: bool = False
    """Whether the last read showed that waiting out the budget could overflow the ring."""
    last_read: float = 0.0
    """When records were last read (or, after a wake-up, began to come in)."""
    _fill_rate: float = 0.0  # bytes a second into the ring, averaged over about RATE_WINDOW
    _fill_rate_at: float | None = None

    def __attrs_post_init__(self) -> None:
        check_reading_mode(self.max_latency, self.busy_poll)

    def pause_before_reading(self, now: float) -> float:
        """How long to wait before the next read when the last read returned records: what is
        left of the budget since that read (time spent handling the batch counts towards it),
        or nothing when there is no budget or the source is behind."""
        if not self.max_latency or self.behind:
            return 0.0
        return max(0.0, self.last_read + self.max_latency - now)

    def woken(self, now: float) -> float:
        """The source was woken by its fd at ``now``: how long to wait before reading."""
        if not self.max_latency:
            return 0.0
        self.last_read = now  # records come in from about now
        return 0.0 if self.behind else self.max_latency

    def read(self, taken_bytes: int, ring_bytes: int | None, now: float) -> None:
        """Records of ``taken_bytes`` (framing included) were just read from a ring of
        ``ring_bytes`` (None: a reader that cannot see the ring, never behind)."""
        if not self.max_latency:
            return
        self.behind = ring_bytes is not None and self._is_behind(taken_bytes, ring_bytes, now)
        self.last_read = now

    def _is_behind(self, taken: int, ring_bytes: int, now: float) -> bool:
        """Whether waiting out the budget now could overflow the ring: what was just read took
        a quarter of it, or at the rate the ring fills a wait (a millisecond at least) would
        fill half of it.

        The rate is averaged over about RATE_WINDOW, idle time included: one small read right
        after a wake-up must not make a fast producer look slow (a budget waited out then
        overflows the ring), and a producer that went quiet must not look fast for long.
        """
        if self._fill_rate_at is not None and now > self._fill_rate_at:
            elapsed = now - self._fill_rate_at
            weight = -math.expm1(-elapsed / RATE_WINDOW)
            self._fill_rate += weight * (taken / elapsed - self._fill_rate)
        self._fill_rate_at = now
        if taken * 4 >= ring_bytes:
            return True
        wait = max(self.max_latency, _SHORTEST_WAIT)
        return self._fill_rate * wait * 2 >= ring_bytes
