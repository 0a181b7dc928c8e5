"""Window counts and top-N: counting events by key over time, windows driven by event time.

Windows close when an event (or the end of the stream) shows that their end has passed. On a
live source they also close on time: a source that promises to hand out each record within its
latency bound (:attr:`aiobpf.RingBuffer.latency_bound`) has handed out every event of a window
once that bound has passed after the window's end, so the window closes then, with no later
event needed (a quiet, filtered stream would otherwise never emit). An event that still comes
for it, delayed past the promise, is counted as late, not lost. Streams that are not live (a
replay, a list) close windows on event time alone: the same events give the same windows on any
machine, at any speed, and a test needs no clock.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterable, Callable, Hashable, Iterable
from typing import Any, TypeVar

import anyio
import attrs
import numpy as np

from .._core.clock import MONOTONIC_TO_WALL_NS, wall_now
from ._core import Operator, Pipeline, Stream

__all__ = ["WindowCount", "WindowCounter", "top_n", "window_count"]

T = TypeVar("T")


@attrs.frozen
class WindowCount:
    """The events counted by key in the window ``[start, end)`` (seconds of event time: Unix
    seconds for aiobpf's events, whose ``timestamp_ns`` is counted on the wall clock's base, as
    kernel windows and the fleet's are; a time field of your own keeps its own base). An event
    exactly at ``end`` belongs to the next window.

    ``late`` counts the events that came while this window was the oldest one open, with a time
    before it: their own windows had already closed, so they are in no window's counts. A run of
    windows in which nothing happened comes as one ``WindowCount`` spanning them all, with
    empty ``counts``.
    """

    start: float
    end: float
    counts: dict[Hashable, int]
    late: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@attrs.define
class WindowCounter:
    """The window arithmetic, without any stream: add (time, key) pairs, take closed windows.

    ``every`` is a window's length and ``step`` the distance between window starts (tumbling
    windows when equal, sliding when smaller). Windows are aligned to multiples of ``step``
    (of Unix time, for aiobpf's events).
    """

    every: float = attrs.field()
    step: float = attrs.field()
    lateness: float = attrs.field(default=0.0)
    """How long after its end a window stays open for events that come out of order: it
    closes once an event ``lateness`` seconds past its end comes."""
    _open: dict[int, collections.Counter[Hashable]] = attrs.field(factory=dict, init=False)
    _next: int | None = attrs.field(default=None, init=False)  # first window not yet emitted
    _late: int = attrs.field(default=0, init=False)

    @every.validator
    def _check_every(self, _: Any, value: float) -> None:
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"every must be a finite number of seconds > 0, got {value!r}")

    @step.validator
    def _check_step(self, _: Any, value: float) -> None:
        if not 0 < value <= self.every:
            raise ValueError(f"step must be > 0 and <= every ({self.every}), got {value!r}")

    @lateness.validator
    def _check_lateness(self, _: Any, value: float) -> None:
        if not value >= 0 or not math.isfinite(value):
            raise ValueError(f"lateness must be a finite number of seconds >= 0, got {value!r}")

    def _windows_of(self, time: float) -> range:
        last = math.floor(time / self.step)
        first = math.floor((time - self.every) / self.step) + 1
        return range(first, last + 1)

    def add(
        self, time: float, key: Hashable, count: int = 1, limit: float = math.inf
    ) -> list[WindowCount]:
        """Counts ``key`` at ``time``; returns the windows this closed, oldest first: those
        that ended ``lateness`` before ``time``. An event past ``limit`` (from a clock ahead of
        the others) closes none: it is counted in its own window, which waits for the others'
        events to reach it. Raises ValueError for a time that is not a finite number."""
        if not math.isfinite(time):
            raise ValueError(f"event times must be finite numbers of seconds, got {time!r}")
        windows = self._windows_of(time)
        if time > limit:
            for index in windows:
                if self._next is None or index >= self._next:
                    self._open.setdefault(index, collections.Counter())[key] += count
            return []
        if self._next is None:
            self._next = min(windows.start, *self._open) if self._open else windows.start
        closed = self._close_before(time - self.lateness)
        if windows.stop <= self._next:
            self._late += count
            return closed
        for index in windows:
            if index >= self._next:
                self._open.setdefault(index, collections.Counter())[key] += count
        return closed

    def add_many(
        self, times: np.ndarray[Any, Any], keys: Iterable[Hashable], limit: float = math.inf
    ) -> list[WindowCount]:
        """Counts a batch exactly as :meth:`add` would, one event after another in the batch's
        order; vectorised for tumbling windows over each run of times that do not go back."""
        key_list = list(keys)
        if len(times) == 0:
            return []
        if not np.isfinite(times).all():
            bad = times[~np.isfinite(times)][0]
            raise ValueError(f"event times must be finite numbers of seconds, got {bad!r}")
        if self.step != self.every or times.max() > limit:  # sliding, or a clock ahead: per event
            closed: list[WindowCount] = []
            for time, key in zip(times.tolist(), key_list, strict=True):
                closed += self.add(time, key, limit=limit)
            return closed
        closed = []
        # Within a run of non-decreasing times, counting window by window is counting event by
        # event: each event closes the windows before its own, and is late only if its own
        # window had closed. Out-of-order records (from different CPUs) start a new run.
        runs = np.flatnonzero(np.diff(times) < 0) + 1
        for run in np.split(np.arange(len(times)), runs):
            index = np.floor(times[run] / self.step).astype(np.int64)
            boundaries = np.flatnonzero(np.diff(index)) + 1
            for group in np.split(np.arange(len(run)), boundaries):
                members = run[group]
                grouped = collections.Counter(key_list[i] for i in members.tolist())
                closed += self._add_counter(
                    int(index[group[0]]), grouped, float(times[members[-1]])
                )
        return closed

    def _add_counter(
        self, window: int, counts: collections.Counter[Hashable], latest: float
    ) -> list[WindowCount]:
        if self._next is None:
            self._next = min(window, *self._open) if self._open else window
        closed = self._close_before(latest - self.lateness)
        if window < self._next:
            self._late += sum(counts.values())
        else:
            self._open.setdefault(window, collections.Counter()).update(counts)
        return closed

    def next_end(self) -> float | None:
        """When the oldest window not yet emitted ends (None before the first event)."""
        return None if self._next is None else self._next * self.step + self.every

    def close_through(self, time: float) -> list[WindowCount]:
        """Emits every window whose end is <= ``time`` less ``lateness`` (``time``: a clock's,
        on the events' time base), in order: what :meth:`add` of an event at ``time`` would
        close."""
        return [] if self._next is None else self._close_before(time - self.lateness)

    def _close_before(self, time: float) -> list[WindowCount]:
        """Emits every window whose end is <= ``time``, in order (runs of empty ones folded)."""
        assert self._next is not None
        if self._next * self.step + self.every > time:
            return []
        last = math.floor((time - self.every) / self.step)
        while (last + 1) * self.step + self.every <= time:  # floating point: settle the edge
            last += 1
        while last * self.step + self.every > time:
            last -= 1
        return self._emit_through(last)

    def _emit_through(self, last: int) -> list[WindowCount]:
        """Emits windows ``_next`` to ``last``, in order; a run of windows with nothing in them
        (no counts, no late events) becomes one WindowCount spanning the run, so a long quiet
        stretch costs one object, not one per window."""
        assert self._next is not None
        closed = []
        while self._next <= last:
            index = self._next
            if index in self._open or self._late:
                closed.append(self._emit(index))
                self._next = index + 1
                continue
            following = [open_index for open_index in self._open if open_index > index]
            end = min(last, min(following) - 1) if following else last
            start = index * self.step
            closed.append(WindowCount(start=start, end=end * self.step + self.every, counts={}))
            self._next = end + 1
        return closed

    def _emit(self, index: int) -> WindowCount:
        counts = self._open.pop(index, collections.Counter())
        late, self._late = self._late, 0
        start = index * self.step
        return WindowCount(start=start, end=start + self.every, counts=dict(counts), late=late)

    def flush(self) -> list[WindowCount]:
        """The windows still open (the stream ended), in order."""
        if self._next is None:
            if not self._open:
                return []
            self._next = min(self._open)  # only events from a clock ahead came
        return self._emit_through(max(self._open, default=self._next - 1))


def _monotonic_field(spec: str | Callable[[Any], float], scale: float) -> bool:
    """Whether the events' time is aiobpf's ``timestamp_ns`` (CLOCK_MONOTONIC nanoseconds),
    which windows count in Unix seconds instead (one offset, exact in integers)."""
    return spec == "timestamp_ns" and scale == 1e-9


def _clock_of(spec: str | Callable[[Any], float], scale: float) -> Callable[[], float] | None:
    """The clock the events' times follow, on the windows' time base: Unix seconds for
    ``timestamp_ns`` (converted) and ``time`` (aiobpf's events' wall-clock seconds). None for
    another time: windows then close on event time alone."""
    if _monotonic_field(spec, scale) or (spec == "time" and scale == 1.0):
        return wall_now
    return None


def _getter(spec: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    if callable(spec):
        return spec
    return lambda event: getattr(event, spec)


class _Windowed(Stream[WindowCount]):
    def __init__(
        self,
        upstream: AsyncIterable[Any],
        counter: WindowCounter,
        key: str | Callable[[Any], Hashable],
        time: str | Callable[[Any], float],
        time_scale: float,
        max_future: float | None = None,
    ) -> None:
        super().__init__(upstream)
        self._counter = counter
        self._max_future = max_future
        self._key_spec, self._time_spec = key, time
        self._key, self._time = _getter(key), _getter(time)
        self._scale = time_scale
        self._clock = _clock_of(time, time_scale)
        # monotonic nanoseconds are counted as Unix seconds, as kernel windows and the fleet's
        self._to_wall = _monotonic_field(time, time_scale)
        self._ready: collections.deque[WindowCount] = collections.deque()
        self._ended = False

    def _batch(self, batch: np.ndarray[Any, Any]) -> list[WindowCount]:
        if isinstance(self._key_spec, str) and isinstance(self._time_spec, str):
            if self._to_wall:
                wall_ns = batch[self._time_spec].astype(np.int64) + MONOTONIC_TO_WALL_NS
                times = wall_ns.astype(np.float64) * self._scale
            else:
                times = batch[self._time_spec].astype(np.float64) * self._scale
            keys = batch[self._key_spec].tolist()
            return self._counter.add_many(times, keys, limit=self._limit())
        rows = list(batch)
        times = np.array([self._seconds(row) for row in rows], dtype=np.float64)
        return self._counter.add_many(times, [self._key(row) for row in rows], limit=self._limit())

    def _limit(self) -> float:
        """The latest event time that may close windows now: ``max_future`` past this host's
        clock (an event from a clock further ahead closes nothing the others still fill)."""
        if self._max_future is None or self._clock is None:
            return math.inf
        return self._clock() + self._max_future

    def _seconds(self, event: Any) -> float:
        """The event's time in seconds, on the windows' time base."""
        value = self._time(event)
        if self._to_wall:
            return float((int(value) + MONOTONIC_TO_WALL_NS) * self._scale)
        return float(value * self._scale)

    def _deadline(self) -> tuple[float, float] | None:
        """When, on the loop's clock, the oldest open window is due to close on a live
        source, with the events' time then; None when no window waits or nothing is live."""
        end, bound = self._counter.next_end(), self.latency_bound
        if end is None or bound is None or self._clock is None:
            return None
        due = end + bound + self._counter.lateness
        return anyio.current_time() + (due - self._clock()), due

    async def __anext__(self) -> WindowCount:
        while not self._ready:
            if self._ended:
                raise StopAsyncIteration
            deadline = self._deadline()
            try:
                if deadline is None:
                    item = await self._iterator.__anext__()
                else:
                    # a live source's reads are cancel-safe: an item it has not handed out
                    # stays in it for the next read
                    with anyio.move_on_at(deadline[0]):
                        item = await self._iterator.__anext__()
                        deadline = None
                    if deadline is not None:  # due: every event of the window came, or is late
                        self._ready.extend(self._counter.close_through(deadline[1]))
                        continue
            except StopAsyncIteration:
                self._ended = True
                self._ready.extend(self._counter.flush())
                continue
            if isinstance(item, np.ndarray):
                self._ready.extend(self._batch(item))
            else:
                self._ready.extend(
                    self._counter.add(self._seconds(item), self._key(item), limit=self._limit())
                )
        return self._ready.popleft()


def window_count(
    key: str | Callable[[Any], Hashable],
    *,
    every: float,
    step: float | None = None,
    time: str | Callable[[Any], float] = "timestamp_ns",
    time_scale: float = 1e-9,
    lateness: float = 0.0,
    max_future: float | None = None,
) -> Operator[Any, WindowCount]:
    """Counts events by ``key`` in windows of ``every`` seconds of event time.

    ``step`` < ``every`` gives sliding windows starting every ``step`` seconds (default: tumbling
    windows). ``key`` and ``time`` are field names (on events or batch columns) or functions;
    event times are multiplied by ``time_scale`` (default: nanoseconds to seconds). The default,
    aiobpf's ``timestamp_ns`` (CLOCK_MONOTONIC), is counted in Unix seconds: windows' bounds
    are wall-clock times, aligned as kernel windows' and the fleet's are. One
    :class:`WindowCount` per closed window, and one for each run of empty windows (spanning
    the run); events older than every open window are counted as ``late``, on the window that
    was the oldest open one when they came. Batches and single events are counted by the same
    rule, in arrival order. Raises ValueError for a bad ``every``, ``step``, ``lateness`` or
    ``max_future``, and for an event time that is not a finite number.

    Events from elsewhere (a recording, the fleet: many clocks) close windows on event time, by
    a watermark: a window closes once an event ``lateness`` seconds past its end comes (events
    out of order within that still count), and an event more than ``max_future`` seconds
    ahead of this host's clock closes nothing (one node's clock set in the future must not make
    every other node's events late); it is counted in its own window, emitted when the others'
    events reach it or at the end. ``max_future`` needs a time on the wall clock's base
    (``timestamp_ns``, or ``time`` in seconds).
    """
    counter_args = (every, every if step is None else step, lateness)
    WindowCounter(*counter_args)  # validates now, not at the first event
    if max_future is not None:
        if not max_future >= 0 or not math.isfinite(max_future):
            raise ValueError(
                f"max_future must be a finite number of seconds >= 0, got {max_future!r}"
            )
        if _clock_of(time, time_scale) is None:
            raise ValueError(
                "max_future needs event times on the wall clock's base: time='timestamp_ns' "
                "(nanoseconds) or time='time' with time_scale=1"
            )

    def apply(stream: AsyncIterable[Any]) -> Pipeline[WindowCount]:
        counter = WindowCounter(*counter_args)
        return _Windowed(stream, counter, key, time, time_scale, max_future)

    return Operator(apply, f"window_count({key!r}, every={every})")


class _Top(Stream[WindowCount]):
    def __init__(self, upstream: AsyncIterable[WindowCount], n: int) -> None:
        super().__init__(upstream)
        self._n = n

    async def __anext__(self) -> WindowCount:
        window: WindowCount = await self._iterator.__anext__()
        ranked = sorted(window.counts.items(), key=lambda item: (-item[1], repr(item[0])))
        return attrs.evolve(window, counts=dict(ranked[: self._n]))


def top_n(n: int) -> Operator[WindowCount, WindowCount]:
    """Each window's ``n`` largest counts, largest first (ties by key)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    return Operator(lambda stream: _Top(stream, n), f"top_n({n})")
