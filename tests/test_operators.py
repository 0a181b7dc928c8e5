"""Operators on synthetic streams (no root needed), on asyncio and trio."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import numpy as np
import pytest

from aiobpf import operators
from aiobpf._core.clock import MONOTONIC_TO_WALL_NS, wall_now
from aiobpf.operators import (
    ViewStats,
    WindowCount,
    WindowCounter,
    batch,
    filter_comm,
    filter_pid,
    filter_uid,
    merge,
    pipe,
    route,
    top_n,
    window_count,
)

pytestmark = pytest.mark.anyio


@attrs.frozen
class Event:
    pid: int
    uid: int
    comm: str
    timestamp_ns: int = 0


EVENTS = [Event(1, 0, "init"), Event(2, 1000, "bash"), Event(3, 1000, "ls"), Event(4, 0, "ls")]
RECORD = np.dtype([("pid", "<u4"), ("uid", "<u4"), ("comm", "S16"), ("timestamp_ns", "<u8")])


class Source:
    """An async iterable over a list, recording whether it was closed; optionally it then
    blocks forever (a live source with nothing more to say)."""

    def __init__(self, items: list[Any], *, then_block: bool = False) -> None:
        self._items = iter(items)
        self._block = then_block
        self.closed = False

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> Any:
        await anyio.lowlevel.checkpoint()
        try:
            return next(self._items)
        except StopIteration:
            if self._block:
                await anyio.sleep_forever()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


async def _all(stream: Any) -> list[Any]:
    return [item async for item in stream]


#: The Unix time the synthetic events count from: a whole multiple of 10 s after the boot (so
#: that their CLOCK_MONOTONIC timestamps are positive). Windows count aiobpf's timestamp_ns in
#: Unix seconds, aligned there.
BASE = -(-MONOTONIC_TO_WALL_NS // 10**10) * 10


def _at(seconds: float, comm: str = "x", uid: int = 0) -> Event:
    """An event ``seconds`` after :data:`BASE`."""
    timestamp_ns = BASE * 10**9 - MONOTONIC_TO_WALL_NS + round(seconds * 1e9)
    return Event(pid=1, uid=uid, comm=comm, timestamp_ns=timestamp_ns)


async def test_filters_keep_exactly_the_matching_events() -> None:
    """filter_uid/pid/comm and filter keep the matching events in order, composed by |."""
    assert [e.pid for e in await _all(Source(EVENTS) | filter_uid(1000))] == [2, 3]
    assert [e.pid for e in await _all(Source(EVENTS) | filter_pid({1, 4}))] == [1, 4]
    assert [e.pid for e in await _all(Source(EVENTS) | filter_comm("ls"))] == [3, 4]
    chained: Any = Source(EVENTS) | filter_uid(0) | operators.filter(lambda e: e.comm == "ls")
    assert [e.pid for e in await _all(chained)] == [4]
    piped = pipe(Source(EVENTS), filter_uid(1000), operators.map(lambda e: e.comm))
    assert await _all(piped) == ["bash", "ls"]


async def test_filters_on_batches_are_masks() -> None:
    """On numpy batches a filter keeps the matching rows (and skips batches left empty)."""
    rows = [(e.pid, e.uid, e.comm.encode(), 0) for e in EVENTS]
    batches = [np.array(rows[:2], RECORD), np.array(rows[2:3], RECORD), np.array(rows[3:], RECORD)]
    kept = await _all(Source(batches) | filter_uid(1000) | filter_comm({"ls", "bash"}))
    assert [b["pid"].tolist() for b in kept] == [[2], [3]]


async def test_closing_an_operator_closes_the_stream_it_consumes() -> None:
    """Leaving `async with` on an operator closes its source, as a source's kernel objects need."""
    source = Source(EVENTS)
    async with source | filter_uid(0) as events:
        assert (await events.__anext__()).pid == 1
    assert source.closed


async def test_tumbling_windows_count_by_key_with_empty_windows() -> None:
    """Windows close on event time; a gap gives one empty window spanning it; the stream's end
    flushes."""
    events = [_at(0.1, "a"), _at(0.5, "b"), _at(0.9, "a"), _at(3.2, "a"), _at(3.3, "c")]
    windows = await _all(Source(events) | window_count("comm", every=1))
    assert [(w.start - BASE, w.end - BASE, w.counts) for w in windows] == [
        (0.0, 1.0, {"a": 2, "b": 1}),
        (1.0, 3.0, {}),
        (3.0, 4.0, {"a": 1, "c": 1}),
    ]


async def test_sliding_windows_count_each_event_in_every_window_it_falls_in() -> None:
    """With step < every, an event is counted once in each window that covers it."""
    events = [_at(0.5, "a"), _at(1.5, "a"), _at(2.5, "b")]
    windows = await _all(Source(events) | window_count("comm", every=2, step=1))
    assert [(w.start - BASE, w.counts) for w in windows] == [
        (-1.0, {"a": 1}),
        (0.0, {"a": 2}),
        (1.0, {"a": 1, "b": 1}),
        (2.0, {"b": 1}),
    ]


async def test_late_and_out_of_order_events() -> None:
    """An event for an open window counts even out of order; one for a closed window is late,
    counted in the next window emitted, and in no window's counts."""
    events = [_at(1.2, "a"), _at(1.1, "b"), _at(2.5, "a"), _at(0.5, "late"), _at(3.1, "a")]
    windows = await _all(Source(events) | window_count("comm", every=1))
    assert [(w.start - BASE, w.counts, w.late) for w in windows] == [
        (1.0, {"a": 1, "b": 1}, 0),
        (2.0, {"a": 1}, 1),
        (3.0, {"a": 1}, 0),
    ]


async def test_batch_windows_equal_event_windows() -> None:
    """The vectorised batch path counts exactly as the per-event path."""
    rng = np.random.default_rng(7)
    times = np.sort(rng.integers(0, 10_000_000_000, 500))
    comms = rng.choice([b"a", b"b", b"c"], 500)
    array = np.zeros(500, RECORD)
    per_event = [
        _at(t / 1e9, c.decode()) for t, c in zip(times.tolist(), comms.tolist(), strict=True)
    ]
    array["timestamp_ns"] = [event.timestamp_ns for event in per_event]
    array["comm"] = comms
    by_event = await _all(Source(per_event) | window_count("comm", every=0.5))
    by_batch = await _all(Source(np.array_split(array, 7)) | window_count("comm", every=0.5))
    decoded = [
        (w.start, {k.decode() if isinstance(k, bytes) else k: n for k, n in w.counts.items()})
        for w in by_batch
    ]
    assert decoded == [(w.start, w.counts) for w in by_event]
    assert sum(w.total for w in by_event) == 500


async def test_top_n_keeps_the_largest_counts() -> None:
    """top_n(2) keeps each window's two largest counts, largest first."""
    window = WindowCount(start=0, end=1, counts={"a": 1, "b": 5, "c": 3})
    (top,) = await _all(Source([window]) | top_n(2))
    assert list(top.counts.items()) == [("b", 5), ("c", 3)]


def test_window_arguments_are_checked() -> None:
    """every and step are validated when the operator is made, with the value named."""
    with pytest.raises(ValueError, match="every must be a finite number of seconds > 0, got 0"):
        window_count("comm", every=0)
    with pytest.raises(ValueError, match=r"step must be > 0 and <= every \(1\), got 2"):
        WindowCounter(1, 2)


async def test_batch_by_count_and_by_delay() -> None:
    """batch(3) hands out full lists and a last partial one; with max_delay a list goes out
    when its first item has waited that long, even if the source has nothing more."""
    assert await _all(Source(list(range(7))) | batch(3)) == [[0, 1, 2], [3, 4, 5], [6]]
    stream: Any = Source([1, 2], then_block=True) | batch(10, max_delay=0.05)
    with anyio.fail_after(5):
        assert await stream.__anext__() == [1, 2]


async def test_merge_interleaves_all_streams() -> None:
    """merge() yields every item of every stream and ends when all have ended."""
    first, second = Source([1, 2, 3]), Source(["a", "b"])
    async with merge(first, second) as merged:
        items = await _all(merged)
    assert sorted(map(str, items)) == ["1", "2", "3", "a", "b"]
    assert first.closed
    assert second.closed


async def _consume(view: Any, into: list[Any], slow: anyio.Event | None = None) -> None:
    async for item in view:
        if slow is not None:
            await slow.wait()
        into.append(item)


@pytest.mark.parametrize("policy", ["block", "drop_newest", "drop_oldest"])
async def test_route_views_with_a_slow_view_under_each_policy(policy: Any) -> None:
    """Items go to the view of their key, the rest to the default; a slow view with a buffer of
    2 either holds the others back (block) or drops exactly the items it cannot hold."""
    items = [("fast", i) for i in range(5)] + [("slow", i) for i in range(6)] + [("other", 0)]
    fast: list[Any] = []
    slow: list[Any] = []
    rest: list[Any] = []
    release = anyio.Event()
    router = route(Source(items), key=lambda item: item[0], buffer_size=2, policy=policy)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks, router:
            fast_view, slow_view, default = (
                router.view("fast"),
                router.view("slow"),
                router.default(),
            )
            tasks.start_soon(_consume, fast_view, fast)
            tasks.start_soon(_consume, slow_view, slow, release)
            tasks.start_soon(_consume, default, rest)
            await anyio.wait_all_tasks_blocked()
            release.set()
            await anyio.wait_all_tasks_blocked()
    assert fast == [("fast", i) for i in range(5)]
    assert rest == [("other", 0)]
    if policy == "block":
        assert slow == [("slow", i) for i in range(6)]
        assert slow_view.stats.dropped == 0
    else:
        # one item in the consumer's hands, two in the buffer: three of six are dropped
        assert slow_view.stats.dropped == 3
        assert len(slow) == 3
        expected_last = ("slow", 5) if policy == "drop_oldest" else ("slow", 2)
        assert slow[-1] == expected_last


@pytest.mark.parametrize("policy", ["block", "drop_newest", "drop_oldest"])
async def test_closing_a_view_never_holds_up_the_others(policy: Any) -> None:
    """A consumer that closes its view leaves the router dropping (and counting) that view's
    items, whatever the policy: under "block" a closed view used to stall the router, and
    every other view with it."""
    items = [("gone" if i % 2 else "kept", i) for i in range(2_000)]
    kept: list[Any] = []
    router = route(Source(items), key=lambda item: item[0], buffer_size=4, policy=policy)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks, router:
            gone_view, kept_view = router.view("gone"), router.view("kept")

            async def leave_after_three() -> None:
                async for _ in gone_view:
                    if gone_view.stats.delivered >= 3:
                        break
                await gone_view.aclose()

            tasks.start_soon(leave_after_three)
            await _consume(kept_view, kept)  # ends when the router has routed every item
    assert kept == [("kept", i) for i in range(0, 2_000, 2)]
    stats = gone_view.stats
    assert stats.delivered + stats.dropped == 1_000
    assert stats.dropped > 0


async def _burst(items: list[Any]) -> AsyncIterator[Any]:
    """Items without a yield between them, as a ring hands out what one read returned."""
    for item in items:
        yield item


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_a_burst_larger_than_a_view_costs_nothing_to_a_consumer_that_keeps_up(
    policy: Any,
) -> None:
    """1,000 items at once into views of 8: each consumer gets a turn when its view fills, so
    nothing is dropped; a stuck view next to them still drops without holding them back."""
    items = [(key, i) for i in range(500) for key in ("a", "b")] + [("stuck", i) for i in range(20)]
    got: dict[str, list[Any]] = {"a": [], "b": [], "stuck": []}
    release = anyio.Event()
    router = route(_burst(items), key=lambda item: item[0], buffer_size=8, policy=policy)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks, router:
            views = {key: router.view(key) for key in got}
            for key in ("a", "b"):
                tasks.start_soon(_consume, views[key], got[key])
            tasks.start_soon(_consume, views["stuck"], got["stuck"], release)
            await anyio.wait_all_tasks_blocked()
            release.set()
            await anyio.wait_all_tasks_blocked()
    for key in ("a", "b"):
        assert got[key] == [(key, i) for i in range(500)]
        assert views[key].stats == ViewStats(delivered=500, dropped=0)
    # one item in the stuck consumer's hands, eight in its buffer, the other eleven dropped
    assert views["stuck"].stats.dropped == 11
    assert len(got["stuck"]) == 9


async def test_route_counts_items_with_no_view() -> None:
    """With no default view, an item whose key has no view is dropped and counted."""
    router = route(Source([1, 2, 3, 4]), key=lambda item: item % 2)
    evens: list[int] = []
    async with anyio.create_task_group() as tasks, router:
        tasks.start_soon(_consume, router.view(0), evens)
        await anyio.wait_all_tasks_blocked()
    assert evens == [2, 4]
    assert router.unrouted == 2


async def test_a_general_filter_on_batches_tests_each_row() -> None:
    """operators.filter with a plain predicate on a batch keeps the rows it accepts."""
    batch = np.array([(1, 0, b"a", 0), (2, 0, b"b", 0), (3, 0, b"c", 0)], RECORD)
    (kept,) = await _all(Source([batch]) | operators.filter(lambda row: row["pid"] != 2))
    assert kept["pid"].tolist() == [1, 3]


async def test_lost_items_are_reported_in_band() -> None:
    """With lost="inband", a view that dropped items hands its consumer a Lost(count) before
    the next item, and the counts add up to what its stats say it dropped."""
    items = [("slow", i) for i in range(8)]
    got: list[Any] = []
    release = anyio.Event()
    router = route(
        Source(items), key=lambda item: item[0], buffer_size=2, policy="drop_newest", lost="inband"
    )
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks, router:
            view = router.view("slow")
            tasks.start_soon(_consume, view, got, release)
            await anyio.wait_all_tasks_blocked()
            release.set()
            await anyio.wait_all_tasks_blocked()
    lost = [item for item in got if isinstance(item, operators.Lost)]
    kept = [item for item in got if not isinstance(item, operators.Lost)]
    assert sum(item.count for item in lost) == view.stats.dropped
    assert len(kept) + view.stats.dropped == 8


async def test_batches_are_routed_by_column_vectorised() -> None:
    """Routing by a field name splits each numpy batch into one sub-batch per view."""
    batch = np.array([(1, 0, b"a", 0), (2, 0, b"b", 0), (3, 0, b"a", 0)], RECORD)
    a_rows: list[Any] = []
    rest: list[Any] = []
    router = route(Source([batch]), key="comm")
    async with anyio.create_task_group() as tasks, router:
        tasks.start_soon(_consume, router.view(b"a"), a_rows)
        tasks.start_soon(_consume, router.default(), rest)
        await anyio.wait_all_tasks_blocked()
    assert [b["pid"].tolist() for b in a_rows] == [[1, 3]]
    assert [b["pid"].tolist() for b in rest] == [[2]]


@pytest.mark.parametrize("time", [float("nan"), float("inf"), float("-inf")])
async def test_an_event_time_that_is_not_a_number_is_refused(time: float) -> None:
    """A NaN or infinite event time used to loop forever (or build every window up to it)."""
    counter = WindowCounter(1.0, 1.0)
    counter.add(0.5, "a")
    with pytest.raises(ValueError, match="event times must be finite"):
        counter.add(time, "a")
    with pytest.raises(ValueError, match="event times must be finite"):
        counter.add_many(np.array([1.5, time]), ["a", "b"])


async def test_a_long_quiet_stretch_is_one_empty_window() -> None:
    """Ten minutes without events at every=1 ms close in one empty window, not 600,000."""
    counter = WindowCounter(0.001, 0.001)
    counter.add(0.0005, "a")
    closed = counter.add(600.0005, "b")
    assert [(w.counts, w.end) for w in closed] == [({"a": 1}, 0.001), ({}, pytest.approx(600.0))]


async def test_a_view_closed_while_the_router_waits_on_it_counts_that_item_dropped() -> None:
    """Under "block", the router waits on a full view; its consumer closes it: the item the
    router was sending is dropped and counted, as is every later one, so delivered + dropped
    is every item of its key."""
    items = [("v", 1), ("v", 2), ("v", 3)]
    router = route(_burst(items), key=lambda item: item[0], buffer_size=1, policy="block")
    with anyio.fail_after(5):
        async with router:
            view = router.view("v")
            await anyio.wait_all_tasks_blocked()  # the router holds item 2, the buffer item 1
            assert view.stats == ViewStats(delivered=1, dropped=0)
            await view.aclose()
            await anyio.wait_all_tasks_blocked()
    assert view.stats == ViewStats(delivered=1, dropped=2)


def test_an_event_exactly_at_a_windows_end_closes_it_and_belongs_to_the_next() -> None:
    """Windows are [start, end): an event at 1.0 closes [0, 1) and counts in [1, 2); an
    event after it, at 0.999, is late, whether events come one by one or in a batch."""
    one_by_one = operators.WindowCounter(1.0, 1.0)
    assert one_by_one.add(0.5, "a") == []
    assert one_by_one.add(1.0, "b") == [WindowCount(0.0, 1.0, {"a": 1})]
    assert one_by_one.add(0.999, "c") == []
    assert one_by_one.flush() == [WindowCount(1.0, 2.0, {"b": 1}, late=1)]

    batched = operators.WindowCounter(1.0, 1.0)
    closed = batched.add_many(np.array([0.5, 1.0, 0.999]), ["a", "b", "c"])
    assert closed == [WindowCount(0.0, 1.0, {"a": 1})]
    assert batched.flush() == [WindowCount(1.0, 2.0, {"b": 1}, late=1)]


class LiveSource(Source):
    """A live source: it promises each event within ``latency_bound`` seconds of its time, and
    after its items it says nothing more (blocks), as a filtered kernel stream goes quiet. An
    item may be a callable, giving the event when its turn comes (a time read then)."""

    def __init__(self, items: list[Any], latency_bound: float = 0.01) -> None:
        super().__init__(items, then_block=True)
        self.latency_bound = latency_bound

    async def __anext__(self) -> Any:
        item = await super().__anext__()
        return item() if callable(item) else item


def _now(comm: str = "x") -> Event:
    return Event(pid=1, uid=0, comm=comm, timestamp_ns=time.monotonic_ns())


async def test_a_quiet_live_stream_emits_its_window_on_time() -> None:
    """Three events, then silence: the window they fell in is emitted once its end and the
    source's latency bound have passed, with no later event (it used to wait for one
    forever), and not before its end."""
    source = LiveSource([_now, _now, _now])
    with anyio.fail_after(30):
        async with source | window_count("comm", every=0.2) as windows:
            seen: list[WindowCount] = []
            while sum(window.total for window in seen) < 3:
                window = await windows.receive()
                assert wall_now() >= window.end  # closed after its end, never before
                seen.append(window)
    assert sum(window.counts.get("x", 0) for window in seen) == 3


async def test_an_event_after_its_window_closed_on_time_is_late_not_lost() -> None:
    """On a live source, an event whose window already closed on time (delayed past the
    source's promise) is counted as late in the next window emitted."""
    first_window_closed = anyio.Event()
    old = _now("old")

    async def delayed() -> Event:
        await first_window_closed.wait()
        return old  # its time is in the window that closed

    class Delaying(LiveSource):
        """Cancel-safe as a live source is: an item is taken only once it is handed out."""

        def __init__(self, items: list[Any]) -> None:
            super().__init__([])
            self._pending = list(items)

        async def __anext__(self) -> Any:
            await anyio.lowlevel.checkpoint()
            if not self._pending:
                await anyio.sleep_forever()
            item = self._pending[0]
            value = await item() if callable(item) else item
            del self._pending[0]
            return value

    with anyio.fail_after(30):
        async with Delaying([old, delayed]) | window_count("comm", every=0.2) as windows:
            first = await windows.receive()
            first_window_closed.set()
            later = await windows.receive()
    assert first.counts == {"old": 1}
    assert later.late == 1
    assert later.start == pytest.approx(first.end) or later.start > first.end  # floats


@attrs.frozen
class NodeEvent:
    """A fleet event as a node stamped it: wall-clock seconds of that node's clock."""

    node: str
    time: float


async def test_a_node_clock_in_the_future_does_not_make_the_others_late() -> None:
    """Fleet windows on event time: one node's event an hour ahead closes every window, and the
    other node's events after it are late; with max_future, it closes nothing, the others'
    windows fill as their events come, and the future event is counted in its own window."""
    now = wall_now()
    base = math.floor(now)
    events = [
        NodeEvent("a", base + 0.1),
        NodeEvent("b", base + 3600.5),  # a clock an hour ahead
        NodeEvent("a", base + 0.2),
        NodeEvent("a", base + 1.1),
        NodeEvent("a", base + 2.1),
    ]

    def windows(**options: Any) -> Any:
        counted = window_count("node", every=1, time="time", time_scale=1, **options)
        return _all(Source(events) | counted)

    blinded = await windows()
    assert sum(w.late for w in blinded) == 3
    kept = await windows(max_future=5)
    assert [(w.start - base, w.counts, w.late) for w in kept if w.counts or w.late] == [
        (0.0, {"a": 2}, 0),
        (1.0, {"a": 1}, 0),
        (2.0, {"a": 1}, 0),
        (3600.0, {"b": 1}, 0),
    ]
    with pytest.raises(ValueError, match="wall clock's base"):
        window_count("node", every=1, time=lambda e: e.time, max_future=5)
    with pytest.raises(ValueError, match="max_future must be"):
        window_count("node", every=1, time="time", time_scale=1, max_future=-1)


async def test_events_within_the_lateness_still_count() -> None:
    """lateness: a window stays open that long past its end, for events out of order."""
    events = [_at(0.5, "a"), _at(1.2, "b"), _at(0.9, "a"), _at(1.6, "b"), _at(0.7, "late")]
    strict = await _all(Source(events) | window_count("comm", every=1))
    assert sum(w.late for w in strict) == 2
    patient = await _all(Source(events) | window_count("comm", every=1, lateness=0.5))
    assert [(w.start - BASE, w.counts, w.late) for w in patient] == [
        (0.0, {"a": 2}, 0),  # 0.9 came while [0, 1) waited 0.5 past its end: counted
        (1.0, {"b": 2}, 1),  # 0.7 came after 1.6 had closed [0, 1): late, on the next window
    ]
    with pytest.raises(ValueError, match="lateness must be"):
        window_count("comm", every=1, lateness=-1)
