"""RingBuffer as an async source, on a synthetic ring woken through a pipe (no root needed)."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import pytest

import aiobpf
from aiobpf import RingBuffer
from aiobpf._defaults import BACKENDS

from .synthetic import SyntheticRing, record_bytes

pytestmark = pytest.mark.anyio

RECORD = np.dtype([("value", "<u8"), ("extra", "<u8")])


@pytest.fixture
def ring() -> Iterator[SyntheticRing]:
    synthetic = SyntheticRing(4096, RECORD)
    yield synthetic
    synthetic.close()


async def test_records_arrive_when_the_fd_becomes_readable(ring: SyntheticRing) -> None:
    """A consumer blocks on the fd, and wakes to each commit, one record at a time."""
    received: list[int] = []
    async with ring.source() as source:

        async def consume() -> None:
            async for record in source:
                received.append(record.value)
                if len(received) == 6:
                    return

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            for value in range(6):
                await anyio.wait_all_tasks_blocked()
                ring.submit(record_bytes(value))
        assert received == list(range(6))
        assert source.stats.received == 6
        assert source.stats.wakeups >= 1


async def test_batches_are_arrays_of_everything_available(ring: SyntheticRing) -> None:
    """One wake-up hands out every committed record as one numpy array."""
    for value in range(50):
        ring.submit(record_bytes(value))
    async with ring.source() as source:
        batch = await source.receive_batch()
        assert batch.dtype == RECORD
        assert batch["value"].tolist() == list(range(50))
        assert source.stats.batches == 1


async def test_a_record_of_another_size_comes_after_the_good_ones_and_reading_goes_on(
    ring: SyntheticRing,
) -> None:
    """The records before a malformed one are handed out first; then the consumer gets
    RecordLayoutError once; the source reads on, and stats count the skipped record."""
    for payload in (record_bytes(1), bytes(24), record_bytes(2)):
        ring.submit(payload)
    async with ring.source() as source:
        assert (await source.receive()).value == 1
        assert (await source.receive()).value == 2
        with pytest.raises(aiobpf.RecordLayoutError, match="24 bytes"):
            await source.receive()
        ring.submit(record_bytes(3))
        assert (await source.receive()).value == 3
        assert (source.stats.received, source.stats.malformed) == (3, 1)
    assert source.stats.malformed == 1


async def test_cancelled_consumer_loses_no_record(ring: SyntheticRing) -> None:
    """Records of a batch not yet handed out stay in the source after the consumer is cancelled."""
    for value in range(10):
        ring.submit(record_bytes(value))
    async with ring.source() as source:
        first: list[int] = []
        with anyio.CancelScope() as scope:
            async for record in source:
                first.append(record.value)
                if len(first) == 3:
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
        assert first == [0, 1, 2]
        assert source.stats.pending == 7
        with anyio.move_on_after(5):
            rest = [record.value async for record in _take(source, 7)]
        assert rest == list(range(3, 10))
        assert source.stats.received == 10


async def _take(source: RingBuffer[Any], count: int) -> AsyncIterator[Any]:
    async for record in source:
        yield record
        count -= 1
        if count == 0:
            return


async def test_cancelling_a_blocked_wait_takes_nothing(ring: SyntheticRing) -> None:
    """A consumer cancelled while waiting leaves the records committed later for the next read."""
    async with ring.source() as source:
        with anyio.move_on_after(0):
            await source.receive()
        ring.submit(record_bytes(42))
        assert (await source.receive()).value == 42


async def test_close_wakes_a_blocked_consumer_and_ends_its_loop(ring: SyntheticRing) -> None:
    """Closing from another task ends the blocked consumer's async for; later use raises."""
    source = ring.source()
    ended = anyio.Event()

    async def consume() -> None:
        async for _ in source:
            pytest.fail("no record was produced")
        ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await source.aclose()
            await ended.wait()
    assert source.closed
    with pytest.raises(anyio.ClosedResourceError):
        await source.receive()
    await source.aclose()  # idempotent


async def test_second_concurrent_reader_is_refused(ring: SyntheticRing) -> None:
    """Only one task may wait on a source; a second gets BusyResourceError."""
    async with ring.source() as source, anyio.create_task_group() as tasks:
        tasks.start_soon(source.receive)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.BusyResourceError):
            await source.receive()
        tasks.cancel_scope.cancel()


async def test_ctypes_records_share_the_batch_memory(ring: SyntheticRing) -> None:
    """A ctypes.Structure record type yields instances of it, with the right values."""
    import ctypes

    from aiobpf.lowlevel import record_type

    class Record(ctypes.Structure):
        _fields_ = [("value", ctypes.c_uint64), ("extra", ctypes.c_uint64)]

    for value in range(3):
        ring.submit(record_bytes(value))
    source: RingBuffer[Record] = RingBuffer(
        name="synthetic", fd=ring.read_fd, record=record_type(Record), reader=ring.reader()
    )
    # Structures share the memory of their batch, which they keep alive
    async with source:
        records = [await source.receive() for _ in range(3)]
    assert [record.value for record in records] == [0, 1, 2]
    assert all(isinstance(record, Record) for record in records)


async def test_unclosed_source_warns_and_is_released(ring: SyntheticRing) -> None:
    """A source dropped without closing emits ResourceWarning and still runs its release."""
    released: list[bool] = []
    source = ring.source(on_close=[lambda: released.append(True)])
    with pytest.warns(ResourceWarning, match="was not closed"):  # noqa: PT031 -- del, then collect
        del source
        gc.collect()
    assert released == [True]


def test_a_source_read_under_one_loop_then_others_waits_on_each(ring: SyntheticRing) -> None:
    """The gate remembers the loop its reader ran on, to skip asking sniffio on every wait:
    read again under another loop (a new asyncio loop, trio, uvloop), it waits on that one."""
    source = ring.source(max_latency=0)

    async def read_one(value: int) -> list[int]:
        async def submit() -> None:
            await anyio.wait_all_tasks_blocked()  # the reader waits on the fd
            ring.submit(record_bytes(value))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(submit)
            with anyio.fail_after(10):
                batch = await source.receive_batch()
        return [int(v) for v in batch["value"]]

    loops = [*BACKENDS.values(), *BACKENDS.values()]
    seen = [
        anyio.run(read_one, value, backend=backend, backend_options=options)
        for value, (backend, options) in enumerate(loops)
    ]
    anyio.run(source.aclose)
    assert seen == [[value] for value in range(len(loops))]
    assert source.stats.received == len(loops)


def test_negative_latency_budget_is_refused(ring: SyntheticRing) -> None:
    """max_latency must be >= 0; the message names it and the value."""
    with pytest.raises(
        ValueError, match="max_latency must be 'auto' or a finite number >= 0 seconds, got"
    ):
        ring.source(max_latency=-1)


async def test_busy_polling_sees_records_without_a_wake_up(ring: SyntheticRing) -> None:
    """With busy_poll, a consumer that ran the ring dry keeps looking at it: a record committed
    without waking the fd (as with BPF_RB_NO_WAKEUP, which nothing else would notice) arrives,
    with no wake-up at all."""
    async with ring.source(busy_poll=60.0) as source:
        ring.submit(record_bytes(1))
        assert (await source.receive()).value == 1

        async def submit_unannounced() -> None:
            for _ in range(10):  # let the consumer run the ring dry and start looking
                await anyio.lowlevel.checkpoint()
            ring.submit(record_bytes(2), wake=False)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(submit_unannounced)
                assert (await source.receive()).value == 2
        assert source.stats.wakeups == 0


async def _closed_from_another_task(
    source: RingBuffer[Any], consumer_waiting: Callable[[], Awaitable[None]]
) -> list[int]:
    """Runs a consumer of ``source``, waits for ``consumer_waiting()`` to put it where it
    waits, then closes the source from this task: the close must return at once (not after
    the 60 s the consumer would wait) and the consumer's loop must end. What it received."""
    received: list[int] = []

    async def consume() -> None:
        async for record in source:
            received.append(record.value)

    # The bounds tell "cut short" from "waited out" (60 s) with room for a slow, loaded machine.
    with anyio.fail_after(50):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await consumer_waiting()
            closing = anyio.current_time()
            await source.aclose()
            # a fail_after alone misses this on asyncio
            assert anyio.current_time() - closing < 30
    assert source.closed
    return received


async def test_closing_ends_a_busy_polling_consumer(ring: SyntheticRing) -> None:
    """A consumer looking at an empty ring (busy_poll) ends its loop when another task closes
    the source."""

    async def looking_at_the_ring() -> None:
        for _ in range(10):
            await anyio.lowlevel.checkpoint()

    assert await _closed_from_another_task(ring.source(busy_poll=60.0), looking_at_the_ring) == []


async def test_closing_does_not_wait_a_latency_budget_out(ring: SyntheticRing) -> None:
    """A consumer woken by a record waits out its budget (here 60 s) before reading; closing
    the source from another task cuts that wait short: close returns and the loop ends, at
    once."""
    source = ring.source(max_latency=60.0)

    async def waiting_its_budget() -> None:
        await anyio.wait_all_tasks_blocked()
        ring.submit(record_bytes(1))  # wakes the consumer, which then waits its budget
        while source.stats.wakeups == 0:  # the loop has yet to see the fd readable
            await anyio.lowlevel.checkpoint()
        await anyio.wait_all_tasks_blocked()

    assert await _closed_from_another_task(source, waiting_its_budget) == []
    assert source.stats.wakeups == 1


async def test_a_consumer_cancelled_in_its_budget_keeps_the_record(ring: SyntheticRing) -> None:
    """A consumer cancelled while it waits out its budget (trio: on a timerfd; asyncio: a loop
    timer) takes nothing: the next read gets the record, and closing the source lets go of
    every fd it opened to sleep."""
    fds = len(os.listdir("/proc/self/fd"))
    async with ring.source(max_latency=60.0) as source:
        with anyio.CancelScope() as scope:

            async def cancel_once_waiting_its_budget() -> None:
                await anyio.wait_all_tasks_blocked()
                ring.submit(record_bytes(7))  # wakes the consumer, which then waits its budget
                while source.stats.wakeups == 0:
                    await anyio.lowlevel.checkpoint()
                await anyio.wait_all_tasks_blocked()
                scope.cancel()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(cancel_once_waiting_its_budget)
                await source.receive()
                pytest.fail("the budget was not waited out")
        assert source.stats.wakeups == 1
        with anyio.fail_after(30):  # the record is in the ring: no budget is waited again
            assert (await source.receive()).value == 7
    assert len(os.listdir("/proc/self/fd")) == fds


def test_busy_polling_is_checked(ring: SyntheticRing) -> None:
    """busy_poll must be >= 0, and cannot be combined with a latency budget."""
    with pytest.raises(ValueError, match="busy_poll must be a finite number >= 0 seconds, got -1"):
        ring.source(busy_poll=-1)
    with pytest.raises(ValueError, match="pull opposite ways"):
        ring.source(busy_poll=0.001, max_latency=0.001)


async def test_per_record_iteration_of_a_large_batch_lets_other_tasks_run() -> None:
    """Handing out a large batch checkpoints every 256 records: other tasks run, none is lost."""
    ring = SyntheticRing(1 << 16, RECORD)
    try:
        for value in range(2000):
            ring.submit(record_bytes(value))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        seen: list[int] = []
        async with ring.source() as source, anyio.create_task_group() as tasks:
            tasks.start_soon(ticker)
            async for record in source:
                seen.append(record.value)
                if len(seen) == 2000:
                    break
            tasks.cancel_scope.cancel()
        assert seen == list(range(2000))
        assert ticks >= 2000 // 256 - 2  # a round of the scheduler per checkpoint, give or take
    finally:
        ring.close()


async def test_drain_takes_what_is_held_and_what_the_ring_holds(ring: SyntheticRing) -> None:
    """drain() hands out, without waiting, the records taken but not yet handed out and then
    what the ring holds, in order; an empty ring drains to nothing; a closed source refuses."""
    async with ring.source() as source:
        for value in range(3):
            ring.submit(record_bytes(value))
        assert (await source.receive()).value == 0  # 1 and 2 are now held by the source
        for value in range(3, 5):
            ring.submit(record_bytes(value))
        drained = source.drain()
        assert drained["value"].tolist() == [1, 2, 3, 4]
        assert len(source.drain()) == 0
        assert source.stats.received == 5
    with pytest.raises(anyio.ClosedResourceError):
        source.drain()
