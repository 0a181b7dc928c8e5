"""When a ring source reads: the latency budget (fixed, or adaptive by default), busy polling,
and the rates a budget is weighed against. Pure arithmetic on times the source passes in,
unit-tested on its own."""

from __future__ import annotations

import collections
import math

import attrs

from .._core.validate import AdaptiveLatency, MaxLatency, check_reading_mode

__all__ = ["AUTO_MAX_LATENCY", "Pacing"]

#: How long the fill rate a latency budget is weighed against is averaged over (seconds).
RATE_WINDOW = 0.01

#: The latency bound of the adaptive default (``max_latency="auto"``), in seconds: the longest a
#: record waits in the ring so that one read takes several. Event loops wait in whole
#: milliseconds, so a record may wait up to a millisecond more.
AUTO_MAX_LATENCY = 0.004

#: Records the adaptive default expects a read to gather before it waits at all: a wake-up by a
#: timer costs an event loop about three times one by the ring's fd (measured on both loops; see
#: benchmarks/RESULTS.md), so waiting pays only from about three records a read.
AUTO_GATHER = 3

#: How long the record rate the adaptive default goes by is averaged over (seconds): long
#: enough that one burst or one pause does not flip it, short enough to follow a load change
#: within a tenth of a second.
AUTO_RATE_WINDOW = 0.05

#: The shortest wait an event loop makes (both wait in whole milliseconds).
_SHORTEST_WAIT = 0.001

#: The most recent reads the observed fill rate is measured over (within RATE_WINDOW).
_RECENT_READS = 64


def _bound_of(max_latency: MaxLatency) -> float:
    """The longest a budget makes a record wait (an adaptive one's bound)."""
    if max_latency == "auto":
        return AUTO_MAX_LATENCY
    if isinstance(max_latency, AdaptiveLatency):
        return max_latency.bound
    return float(max_latency)


@attrs.define
class Pacing:
    """A ring source's reading rhythm.

    With a latency budget (``max_latency`` seconds), the source waits that long after a wake-up
    before reading, and while records keep coming reads at most once per budget, unless waiting
    could overflow the ring (it is then *behind*, and reads at once).

    ``max_latency="auto"`` (the default of every source) adapts: while records come at least
    :data:`AUTO_GATHER` times per :data:`AUTO_MAX_LATENCY` on average (over about
    :data:`AUTO_RATE_WINDOW`), the source uses that budget, so a wake-up and a loop iteration
    are shared by several records; when they come further apart, waiting would gather too few
    to pay for the timer, and it reads at once.

    :class:`~aiobpf.AdaptiveLatency` adapts the same way with a bound of its own.

    ``busy_poll`` is the opposite trade: how long to keep looking at an empty ring before
    sleeping on its fd. With ``busy_poll``, "auto" means no budget.
    """

    max_latency: MaxLatency = "auto"
    busy_poll: float = 0.0
    behind: bool = False
    """Whether the last read showed that waiting out the budget could overflow the ring."""
    last_read: float = 0.0
    """When records were last read (or, after a wake-up, began to come in)."""
    _fill_rate: float = 0.0  # bytes a second into the ring, averaged over about RATE_WINDOW
    _fill_rate_at: float | None = None
    _recent: collections.deque[tuple[float, int]] = attrs.field(
        init=False, factory=lambda: collections.deque(maxlen=_RECENT_READS)
    )  # (time, bytes) of the last reads within RATE_WINDOW: the rate observed now
    _record_rate: float = 0.0  # records a second, averaged over about AUTO_RATE_WINDOW
    _record_rate_at: float | None = None
    _bound: float = attrs.field(init=False, default=0.0)  # the budget, fixed or adaptive
    _adaptive: bool = attrs.field(init=False, default=False)

    @property
    def latency_bound(self) -> float:
        """How long after the program submits a record the consumer has it, at most, while it
        keeps up: the budget ("auto": its largest) and the event loop's millisecond."""
        return _bound_of(self.max_latency) + 0.001

    def __attrs_post_init__(self) -> None:
        check_reading_mode(self.max_latency, self.busy_poll)
        if self.max_latency == "auto" or isinstance(self.max_latency, AdaptiveLatency):
            self._adaptive = not self.busy_poll
            self._bound = _bound_of(self.max_latency) if self._adaptive else 0.0
        else:
            self._bound = float(self.max_latency)

    def budget(self, now: float) -> float:
        """The latency budget in force at ``now``: the fixed one, or for the adaptive default
        its bound while records come AUTO_GATHER times per bound or faster, else 0 (at once)."""
        if not self._adaptive:
            return self._bound
        rate = self._record_rate
        if self._record_rate_at is not None and now > self._record_rate_at:
            # no records since the last read: the average decays over the quiet time
            rate *= math.exp((self._record_rate_at - now) / AUTO_RATE_WINDOW)
        return self._bound if rate * self._bound >= AUTO_GATHER else 0.0

    def pause_before_reading(self, now: float) -> float:
        """How long to wait before the next read when the last read returned records: what is
        left of the budget since that read (time spent handling the batch counts towards it),
        or nothing when there is no budget or the source is behind."""
        budget = self.budget(now)
        if not budget or self.behind:
            return 0.0
        return max(0.0, self.last_read + budget - now)

    def woken(self, now: float) -> float:
        """The source was woken by its fd at ``now``: how long to wait before reading."""
        budget = self.budget(now)
        if not budget:
            return 0.0
        self.last_read = now  # records come in from about now
        return 0.0 if self.behind else budget

    def read(self, taken_bytes: int, ring_bytes: int | None, now: float, records: int = 1) -> None:
        """``records`` records of ``taken_bytes`` (framing included) were just read from a ring
        of ``ring_bytes`` (None: a reader that cannot see the ring, never behind)."""
        if not self._bound:
            return
        if self._adaptive:
            self._record_rate = _averaged(
                self._record_rate, records, self._record_rate_at, now, AUTO_RATE_WINDOW
            )
            self._record_rate_at = now
        self.behind = ring_bytes is not None and self._is_behind(taken_bytes, ring_bytes, now)
        self.last_read = now

    def _is_behind(self, taken: int, ring_bytes: int, now: float) -> bool:
        """Whether waiting out the budget now could overflow the ring: what was just read took
        a quarter of it, or at the rate the ring fills a wait (a millisecond at least) would
        fill half of it.

        The rate is the larger of two. One is averaged over about RATE_WINDOW, idle time
        included: one small read right after a wake-up must not make a fast producer look slow
        (a budget waited out then overflows the ring), and a producer that went quiet must not
        look fast for long. The other is what the reads within RATE_WINDOW show, from the first
        record on: a burst after a quiet stretch fills the ring long before the average has
        caught up with it, and the first budget waited out then would lose what reading at once
        would not.
        """
        self._fill_rate = _averaged(self._fill_rate, taken, self._fill_rate_at, now, RATE_WINDOW)
        self._fill_rate_at = now
        recent = self._recent
        recent.append((now, taken))
        while recent[0][0] < now - RATE_WINDOW:
            recent.popleft()
        if taken * 4 >= ring_bytes:
            return True
        rate = self._fill_rate
        if len(recent) >= 2 and now > recent[0][0]:  # the bytes read after the first of them
            rate = max(
                rate, (sum(size for _, size in recent) - recent[0][1]) / (now - recent[0][0])
            )
        wait = max(self._bound, _SHORTEST_WAIT)
        return rate * wait * 2 >= ring_bytes


def _averaged(rate: float, amount: float, since: float | None, now: float, window: float) -> float:
    """An exponentially weighted rate (per second) over about ``window`` seconds, after
    ``amount`` more came in the time from ``since`` to ``now`` (the first reading: no rate)."""
    if since is None:
        return rate
    elapsed = now - since
    if elapsed <= 0:  # the limit of the formula below as the time between readings goes to 0
        return rate + amount / window
    weight = -math.expm1(-elapsed / window)
    return rate + weight * (amount / elapsed - rate)
