"""Reliability on the real kernel: lifecycles, cancellation, exact loss accounting, kills.

The promise: under load, faults and cancellation, aiobpf loses nothing silently and leaves
nothing behind in the kernel.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiobpf
from aiobpf.testing import getppid_program, getppid_record, getppid_ring

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

CYCLES = 1000


async def test_a_thousand_cycles_of_each_source_kind_return_to_baseline() -> None:
    """1,000 open -> receive -> close cycles of a ring source, a map poller and the trace pipe
    leave the process's fds and BPF objects exactly as they were; closing twice is harmless."""
    fds, objects = kernel.open_fd_count(), kernel.bpf_objects()
    text, flags = getppid_program(ring_size=1 << 16)
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    marker = kernel.tracefs() / "trace_marker"
    try:
        for cycle in range(CYCLES):
            ring = aiobpf.RingBuffer.from_bcc(program.bpf, "events", record=getppid_record())
            async with ring:
                os.getppid()
                assert (await ring.receive()).seq == cycle
            await ring.aclose()
            poller: aiobpf.MapPoller[Any, Any] = aiobpf.MapPoller.from_bcc(
                program.bpf, "load_sequence", interval=1
            )
            async with poller:
                assert poller.read().values == {0: cycle + 1}
            await poller.aclose()
            async with aiobpf.trace_pipe(keep=lambda line: line.pid == os.getpid()) as pipe:
                marker.write_text(f"aiobpf cycle {cycle}\n")
                line = await pipe.__anext__()
                assert line.message.endswith(f"aiobpf cycle {cycle}")
    finally:
        program.close()
    assert kernel.open_fd_count() == fds
    assert kernel.bpf_objects() == objects


async def test_a_source_dropped_open_warns_and_is_released() -> None:
    """A ring source dropped without closing emits ResourceWarning and still closes its fds."""
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    try:
        objects = kernel.bpf_objects()
        ring = aiobpf.RingBuffer.from_bcc(program.bpf, "events", record=getppid_record())
        assert kernel.bpf_objects() != objects
        with pytest.warns(ResourceWarning, match="was not closed"):  # noqa: PT031
            del ring
            gc.collect()
        assert kernel.bpf_objects() == objects
    finally:
        program.close()


@pytest.mark.parametrize("reader", ["mmap", "bcc"])
async def test_closing_counts_what_nobody_read(reader: str) -> None:
    """Records the program delivered that nobody read before the source closed are counted as
    unread: after closing, received + pending + unread + dropped == produced, exactly. The
    program is detached before the count, so nothing comes after it."""
    calls = 500
    async with getppid_ring(
        os.getpid(),
        ring_size=1 << 16,
        reader=reader,  # type: ignore[arg-type]
    ) as ring:
        for _ in range(200):
            os.getppid()
        for _ in range(120):
            await ring.receive()  # takes the 200 as one batch: 80 stay pending in the source
        for _ in range(calls - 200):
            os.getppid()  # stay in the ring: nobody reads them
        ring_source = ring.ring
    for _ in range(10):
        os.getppid()  # after closing: detached, not counted anywhere
    stats = ring_source.stats
    assert (stats.produced, stats.dropped) == (calls, 0)
    assert (stats.received, stats.pending, stats.unread) == (120, 80, calls - 200)
    assert ring.stats == stats


async def test_random_cancellations_lose_and_duplicate_nothing() -> None:
    """1,000 random cancellations of a consumer while records flow: every record reaches a
    consumer exactly once, in order, and the only gaps are the drops the kernel counted."""
    rng = random.Random(1234)
    seen: list[int] = []
    calls = 300_000
    with anyio.fail_after(120):
        async with getppid_ring(os.getpid(), ring_size=1 << 16) as ring:
            async with anyio.create_task_group() as tasks:

                def produce() -> None:
                    for _ in range(calls):
                        os.getppid()

                tasks.start_soon(anyio.to_thread.run_sync, produce)
                for _ in range(CYCLES):
                    budget = rng.randrange(0, 300)
                    # cancelled after `budget` records, or while waiting (a random deadline), or
                    # before it starts (budget 0)
                    with anyio.CancelScope(
                        deadline=anyio.current_time() + rng.random() / 500
                    ) as scope:
                        if budget == 0:
                            scope.cancel()
                        taken = 0
                        async for record in ring:
                            seen.append(record.seq)
                            taken += 1
                            if taken == budget:
                                scope.cancel()
                                await anyio.lowlevel.checkpoint()
            while (stats := ring.stats).received + (stats.dropped or 0) < calls:
                seen.extend((await ring.receive_batch())["seq"].tolist())
            stats = ring.stats
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert stats.produced == calls
    assert len(seen) + (stats.dropped or 0) == calls
    assert stats.received == len(seen)


# getppid N times as fast as Python can; says "half" half way, so that the consumer can start
# late and the ring is sure to overflow.
STORM = """
import os, sys
sys.stdin.readline()
calls = int(sys.argv[1])
for i in range(calls):
    os.getppid()
    if i == calls // 2:
        print("half", flush=True)
"""


@pytest.mark.parametrize("path", ["batches", "records", "operators"])
async def test_exact_accounting_at_full_rate_through_a_small_ring(path: str) -> None:
    """10 million records at the producer's full rate through a 64 KiB ring: produced ==
    received + dropped, exactly, for the batch path, the per-record path and an operator chain."""
    calls = 10_000_000
    received = 0
    with anyio.fail_after(120):
        async with await anyio.open_process([sys.executable, "-c", STORM, str(calls)]) as storm:
            async with getppid_ring(storm.pid, ring_size=1 << 16) as ring:
                assert storm.stdin is not None
                assert storm.stdout is not None
                await storm.stdin.send(b"go\n")
                await storm.stdout.receive()  # half way: the ring overflowed meanwhile

                def settled() -> bool:
                    stats = ring.stats
                    return stats.produced == calls and stats.produced == (
                        stats.received + stats.pending + (stats.dropped or 0)
                    )

                if path == "batches":
                    async for batch in ring.batches():
                        received += len(batch)
                        if settled():
                            break
                else:
                    stream: Any = ring
                    if path == "operators":
                        stream = ring | aiobpf.operators.filter(lambda r: r.seq >= 0)
                        stream = stream | aiobpf.operators.map(lambda r: r.seq)
                    async for _ in stream:
                        received += 1
                        if ring.stats.pending == 0 and settled():
                            break
                stats = ring.stats
            await storm.wait()
    assert stats.produced == calls
    assert stats.received == received
    assert received + (stats.dropped or 0) == calls
    assert (stats.dropped or 0) > 0  # the ring was really overrun


async def test_close_wakes_a_consumer_blocked_on_a_kernel_ring() -> None:
    """aclose() from another task ends a consumer waiting on a quiet kernel ring. Nobody execs
    as the filtered uid, so nothing but the close can end the consumer: a close that did not
    wake it would hang, which the bound catches however slowly the machine runs."""
    ended = anyio.Event()
    source = aiobpf.execve_events() | aiobpf.filter_uid(61051)  # nobody execs as this uid
    async with source as events:

        async def consume() -> None:
            async for _ in events:
                pytest.fail("no event was expected")
            ended.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                await events.aclose()
                await ended.wait()


_CHILD = """
import json, sys, anyio, aiobpf
sys.path.insert(0, {root!r})
from tests import kernel
async def main():
    async with aiobpf.execve_events() as events:
        print(json.dumps(sorted(kernel.loaded_program_ids())), flush=True)
        async for _ in events:
            pass
anyio.run(main)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_process_leaves_nothing_attached(sig: signal.Signals) -> None:
    """A process streaming events killed by SIGKILL or SIGTERM leaves no program loaded."""
    import json

    programs = kernel.loaded_program_ids()
    root = str(Path(__file__).resolve().parent.parent)
    code = _CHILD.format(root=root)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            childs = set(json.loads(child.stdout.readline())) - programs
            assert childs, "the child should have loaded programs"
        finally:
            child.send_signal(sig)
            child.wait()
    assert kernel.wait_until_unloaded(childs) == set()


@contextlib.contextmanager
def _generator(
    calls: int, rate: float, pattern: str = "burst"
) -> Iterator[subprocess.Popen[bytes]]:
    """The getppid load generator, started paused on CPU 1 (``go`` starts it); killed after."""
    from benchmarks import _loadgen

    generator = _loadgen.start(_loadgen.build(), calls, rate, 1, pattern=pattern)
    try:
        yield generator
    finally:
        generator.kill()
        generator.wait()
        assert generator.stdout is not None
        generator.stdout.close()


def _go(generator: subprocess.Popen[bytes]) -> None:
    assert generator.stdin is not None
    generator.stdin.write(b"g")
    generator.stdin.close()


async def test_a_budget_the_ring_cannot_hold_is_not_waited_out() -> None:
    """A 16 KiB ring holds about 10 ms of a 40 k/s producer. Waiting out a 100 ms latency budget
    every time would lose some nine records in ten, in at most 31 reads over the 3 s; the
    source measures the rate it is fed at and stops waiting, so it reads whenever it runs.

    What follows from the code, whatever the machine's load: many more reads than budgets fit
    in the run, and far fewer losses than waiting them out. (How few depends on how long the
    scheduler leaves the consumer off a CPU: about 3,600 idle, 8,800 beside two CPU hogs.)"""
    calls = 120_000  # three seconds
    received = 0
    with _generator(calls, 40_000.0) as generator:
        async with getppid_ring(generator.pid, ring_size=16384, max_latency=0.1) as ring:
            exited = anyio.Event()

            async def wait_generator() -> None:
                await anyio.to_thread.run_sync(generator.wait, abandon_on_cancel=True)
                exited.set()

            _go(generator)
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(wait_generator)
                    async for batch in ring.batches():
                        received += len(batch)
                        if received + (ring.stats.dropped or 0) == calls:
                            break
                    await exited.wait()
            stats = ring.stats
    assert stats.produced == calls == received + (stats.dropped or 0)
    assert stats.batches > 10 * 31, stats  # waiting out every budget allows at most 31 reads
    assert (stats.dropped or 0) < 108_000 // 2, stats  # waiting them out loses about 108,000


async def test_the_default_budget_shares_reads_among_evenly_spaced_records() -> None:
    """At 5,000 evenly spaced records a second, a source with default settings gathers the
    records that come within its 4 ms bound into one read (about 20), where reading at once
    would wake it for each: fewer than a third as many reads as records, and every record
    received or counted as dropped. A loaded machine only makes batches bigger (a late
    consumer finds more in the ring; a late generator catches up in bursts)."""
    calls = 10_000  # two seconds
    received = 0
    with _generator(calls, 5_000.0, pattern="even") as generator:
        async with getppid_ring(generator.pid) as ring:
            _go(generator)
            with anyio.fail_after(60):
                async for batch in ring.batches():
                    received += len(batch)
                    if received + (ring.stats.dropped or 0) == calls:
                        break
            stats = ring.stats
    assert stats.produced == calls == received + (stats.dropped or 0)
    assert stats.batches * 3 < received, stats


async def test_a_ring_read_through_bcc_can_be_read_again_by_another_source() -> None:
    """BCC opens a ring's consumer once per BPF object: sources reading one ring in turn share
    it (the second used to fail with BCC's bare "Could not open ring buffer"), and a second
    source at the same time is refused with anyio's BusyResourceError."""
    text, flags = getppid_program(ring_size=1 << 16)
    record = getppid_record()
    with aiobpf.lowlevel.Program.compile(text, cflags=flags) as program:
        for calls in (5, 3):
            async with aiobpf.RingBuffer.from_bcc(
                program.bpf, "events", record=record, reader="bcc"
            ) as ring:
                with pytest.raises(anyio.BusyResourceError):
                    aiobpf.RingBuffer.from_bcc(program.bpf, "events", record=record, reader="bcc")
                for _ in range(calls):
                    os.getppid()
                seqs = [(await ring.receive()).seq for _ in range(calls)]
            assert seqs == sorted(seqs)
            assert len(set(seqs)) == calls
            assert ring.stats.received == calls
