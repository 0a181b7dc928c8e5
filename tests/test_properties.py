"""Property-based tests of the pure parts: the ring consumer protocol against a model of the
kernel's ring, and window counting against itself (batches against single events) and against
a plain reference."""

from __future__ import annotations

import collections
import itertools
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aiobpf._kernel import ring_protocol
from aiobpf.operators import WindowCount, WindowCounter, merge, route, top_n

from .synthetic import SyntheticRing, record_bytes

RECORD = np.dtype([("value", "<u8"), ("extra", "<u8")])

# -- the ring protocol ----------------------------------------------------------------------

#: One step of a BPF program or of the consumer: reserve a record (of the declared size or not),
#: commit or discard the oldest (or a random) busy one, or read.
_STEP = st.one_of(
    st.tuples(st.just("reserve"), st.booleans()),
    st.tuples(st.just("commit"), st.integers(min_value=0, max_value=7)),
    st.tuples(st.just("discard"), st.integers(min_value=0, max_value=7)),
    st.tuples(st.just("read"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(_STEP, max_size=120),
    start=st.integers(min_value=0, max_value=255),
    few=st.sampled_from([0, 2, 8]),
)
def test_the_reader_delivers_exactly_the_committed_records_in_order(
    steps: list[tuple[str, Any]], start: int, few: int
) -> None:
    """Whatever the kernel's order of reserve, commit and discard (records wrapping around a
    256-byte ring, records of another size among them): every read returns the committed
    records of the declared size in reserve order up to the first busy one, never reads past
    the producer, skips and counts the others, and every record is accounted for. Both ways of
    reading (numpy runs, and record by record for a few) are held to it."""
    saved, ring_protocol._FEW = ring_protocol._FEW, few
    try:
        _check_the_reader(steps, start)
    finally:
        ring_protocol._FEW = saved


def _check_the_reader(steps: list[tuple[str, Any]], start: int) -> None:
    ring = SyntheticRing(256, RECORD, start=start * 8)
    reader = ring.reader()
    entries: collections.deque[dict[str, Any]] = collections.deque()  # in reserve order
    busy: list[dict[str, Any]] = []
    sequence = dropped = delivered = malformed = discarded = 0
    try:
        for action, argument in steps:
            if action == "reserve":
                payload = record_bytes(sequence) if argument else bytes(24)
                pos = ring.reserve(payload)
                if pos is None:
                    dropped += 1
                    continue
                entry = {"pos": pos, "value": sequence, "good": argument, "state": "busy"}
                sequence += 1
                entries.append(entry)
                busy.append(entry)
            elif action in ("commit", "discard") and busy:
                entry = busy.pop(argument % len(busy))
                length = 16 if entry["good"] else 24
                ring.commit(entry["pos"], length, discard=action == "discard", wake=False)
                entry["state"] = action
            elif action == "read":
                expected = []
                while entries and entries[0]["state"] != "busy":
                    entry = entries.popleft()
                    if entry["state"] == "discard":
                        discarded += 1
                    elif entry["good"]:
                        expected.append(entry["value"])
                    else:
                        malformed += 1
                got = reader.read()["value"].tolist()
                reader.take_error()
                assert got == expected
                delivered += len(got)
                assert reader.malformed == malformed
                assert int(ring.consumer_pos[0]) <= int(ring.producer_pos[0])
                head = entries[0]["pos"] if entries else int(ring.producer_pos[0])
                assert int(ring.consumer_pos[0]) == head
        in_ring = len(entries)
        assert delivered + malformed + discarded + in_ring + dropped == sequence + dropped
    finally:
        ring.close()


# -- window counting -------------------------------------------------------------------------

_EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=40, allow_nan=False, allow_infinity=False),
        st.sampled_from(["a", "b", "c"]),
    ),
    max_size=80,
)


def _rows(windows: list[Any]) -> list[tuple[float, float, dict[Any, int], int]]:
    return [(w.start, w.end, w.counts, w.late) for w in windows]


@settings(max_examples=300, deadline=None)
@given(
    events=_EVENTS,
    every=st.sampled_from([0.5, 1.0, 3.0]),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=6),
)
def test_batches_count_exactly_as_single_events_do(
    events: list[tuple[float, str]], every: float, cuts: list[int]
) -> None:
    """Out of order or not, cut into batches anywhere, a stream gives the same windows, counts
    and late events as when its events come one by one; and every event is counted once, in
    a window or as late."""
    one_by_one = WindowCounter(every, every)
    single = [w for time, key in events for w in one_by_one.add(time, key)] + one_by_one.flush()

    batched = WindowCounter(every, every)
    windows = []
    bounds = sorted({0, len(events), *(min(cut, len(events)) for cut in cuts)})
    for low, high in itertools.pairwise(bounds):
        part = events[low:high]
        times = np.array([time for time, _ in part], dtype=np.float64)
        windows += batched.add_many(times, [key for _, key in part])
    windows += batched.flush()

    assert _rows(windows) == _rows(single)
    assert sum(w.total + w.late for w in windows) == len(events)
    ends = [w.end for w in windows]
    assert ends == sorted(ends)
    assert all(w.start < w.end for w in windows)


@settings(max_examples=200, deadline=None)
@given(events=_EVENTS, every=st.sampled_from([0.5, 1.0, 3.0]))
def test_events_in_time_order_land_in_their_windows(
    events: list[tuple[float, str]], every: float
) -> None:
    """In time order nothing is late, and each event is counted in the window of its time,
    as a plain group-by says; quiet stretches come as empty windows between them."""
    events = sorted(events)
    counter = WindowCounter(every, every)
    times = np.array([time for time, _ in events], dtype=np.float64)
    windows = counter.add_many(times, [key for _, key in events]) + counter.flush()
    reference: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for time, key in events:
        reference[int(np.floor(time / every))][key] += 1
    counted = {round(w.start / every): w.counts for w in windows if w.counts}
    assert counted == {index: dict(counts) for index, counts in reference.items()}
    assert all(w.late == 0 for w in windows)
    for before, after in itertools.pairwise(windows):
        assert before.end == after.start  # no gap, no overlap


# -- routing, merging, ranking ---------------------------------------------------------------


async def _items(items: list[Any]) -> Any:
    for item in items:
        await anyio.lowlevel.checkpoint()
        yield item


@settings(max_examples=100, deadline=None)
@given(
    keys=st.lists(st.sampled_from("abcd"), max_size=200),
    buffer_size=st.integers(min_value=1, max_value=8),
    viewed=st.sets(st.sampled_from("abc"), min_size=1),
)
def test_route_under_block_gives_each_view_exactly_its_items_in_order(
    keys: list[str], buffer_size: int, viewed: set[str]
) -> None:
    """With consumers that keep reading, the "block" policy loses nothing: each view gets the
    items of its key in stream order, the default view the rest."""
    items = list(enumerate(keys))

    async def run() -> dict[str, list[Any]]:
        got: dict[str, list[Any]] = {key: [] for key in [*viewed, "rest"]}
        router = route(_items(items), key=lambda item: item[1], buffer_size=buffer_size)
        async with anyio.create_task_group() as tasks, router:
            views = {key: router.view(key) for key in viewed}
            default = router.default()

            async def consume(view: Any, into: list[Any]) -> None:
                async for item in view:
                    into.append(item)

            for key, view in views.items():
                tasks.start_soon(consume, view, got[key])
            await consume(default, got["rest"])
        return got

    got = anyio.run(run)
    for key in viewed:
        assert got[key] == [item for item in items if item[1] == key]
    assert got["rest"] == [item for item in items if item[1] not in viewed]


@settings(max_examples=100, deadline=None)
@given(streams=st.lists(st.lists(st.integers(), max_size=40), min_size=1, max_size=4))
def test_merge_keeps_every_item_and_each_streams_order(streams: list[list[int]]) -> None:
    tagged = [[(n, i, value) for i, value in enumerate(s)] for n, s in enumerate(streams)]

    async def run() -> list[Any]:
        async with merge(*(_items(items) for items in tagged), buffer_size=4) as merged:
            return [item async for item in merged]

    out = anyio.run(run)
    assert sorted(out) == sorted(item for items in tagged for item in items)
    for n, items in enumerate(tagged):
        assert [item for item in out if item[0] == n] == items


@settings(max_examples=200, deadline=None)
@given(
    counts=st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 50)),
    n=st.integers(1, 10),
)
def test_top_n_keeps_the_n_largest_counts_largest_first(counts: dict[str, int], n: int) -> None:
    window = WindowCount(start=0.0, end=1.0, counts=dict(counts.items()))

    async def run() -> list[WindowCount]:
        return [w async for w in _items([window]) | top_n(n)]

    (ranked,) = anyio.run(run)
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]
    assert list(ranked.counts.items()) == expected
