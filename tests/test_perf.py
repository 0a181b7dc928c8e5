"""PerfBuffer on the real kernel: samples of a BPF_PERF_OUTPUT map read from the mapped per-CPU
buffers, exactly, in order per CPU, with the kernel's lost samples counted."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import pytest

import aiobpf
from aiobpf import PerfBuffer
from aiobpf.lowlevel import Program
from aiobpf.testing import getppid_program

from . import kernel

pytestmark = pytest.mark.usefixtures("bpf")


def _perf_program() -> Program:
    text, flags = getppid_program(output="perf")
    return Program.compile(text, cflags=flags)


@contextlib.contextmanager
def _on_one_cpu() -> Iterator[int]:
    """Keeps the calling thread on one CPU: its samples all go to that CPU's buffer."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


async def _receive(source: PerfBuffer[Any], until: int) -> npt.NDArray[np.void]:
    """Batches until ``until`` samples are received or counted as dropped."""
    batches: list[npt.NDArray[np.void]] = []
    with anyio.fail_after(10):
        while sum(map(len, batches)) + (source.stats.dropped or 0) < until:
            batches.append(await source.receive_batch())
    return np.concatenate(batches)


@pytest.mark.anyio
async def test_every_sample_arrives_once_in_order_per_cpu() -> None:
    """3,000 getppid() calls of this process come as exactly 3,000 samples, the record type
    taken from the program's struct, each CPU's in sequence order, none lost."""
    program = _perf_program()
    async with PerfBuffer.from_bcc(program.bpf, "events", owned=[program.close]) as perf:
        for _ in range(3000):
            os.getppid()
        batch = await _receive(perf, 3000)
        stats = perf.stats
    assert sorted(batch["seq"].tolist()) == list(range(3000))
    for cpu in set(batch["cpu"].tolist()):
        seqs = batch["seq"][batch["cpu"] == cpu]
        assert (np.diff(seqs.astype(np.int64)) > 0).all(), cpu
    assert set(batch["tgid"].tolist()) == {os.getpid()}
    assert (stats.produced, stats.received, stats.dropped, stats.lost) == (3000, 3000, 0, 0)


@pytest.mark.anyio
async def test_samples_a_full_buffer_loses_are_counted_exactly() -> None:
    """3,000 samples at once into one page per CPU: most are lost. Received plus the program's
    dropped count is what it produced, and the kernel's own count, reported with the next
    sample that fits, is the same number."""
    program = _perf_program()
    async with PerfBuffer.from_bcc(
        program.bpf, "events", page_cnt=1, owned=[program.close]
    ) as perf:
        with _on_one_cpu():
            for _ in range(3000):
                os.getppid()
            received = len(await _receive(perf, 3000))
            os.getppid()  # the next sample that fits carries the kernel's count before it
            received += len(await _receive(perf, 3001 - received))
        stats = perf.stats
    assert stats.produced == 3001 == received + (stats.dropped or 0)
    assert 0 < (stats.dropped or 0) < 3000
    assert stats.lost == stats.dropped


@pytest.mark.anyio
async def test_batches_can_be_ordered_by_a_timestamp() -> None:
    """With order_by, samples of all CPUs come sorted by the program's timestamp."""
    program = _perf_program()
    async with PerfBuffer.from_bcc(
        program.bpf, "events", order_by="timestamp_ns", owned=[program.close]
    ) as perf:
        for _ in range(200):
            os.getppid()
        batch = await _receive(perf, 200)
    assert (np.diff(batch["timestamp_ns"].astype(np.int64)) >= 0).all()


def test_bad_arguments_are_refused_and_release_everything() -> None:
    """A ring is not a perf buffer, page counts are powers of two, order_by names a field;
    every refusal releases the program it was given."""
    programs = kernel.loaded_program_ids()
    ring_text, ring_flags = getppid_program()
    with (
        Program.compile(ring_text, cflags=ring_flags) as ring_program,
        pytest.raises(aiobpf.MapTypeError, match="expected a perf event array"),
    ):
        PerfBuffer.from_bcc(ring_program.bpf, "events")
    for options, message in [
        ({"page_cnt": 3}, "page_cnt must be a power of two"),
        ({"order_by": "when"}, "order_by must name a field"),
    ]:
        program = _perf_program()
        with pytest.raises(ValueError, match=message):
            PerfBuffer.from_bcc(program.bpf, "events", owned=[program.close], **options)  # type: ignore[arg-type]
        assert program.closed
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


@pytest.mark.anyio
async def test_closing_ends_a_consumer_waiting_on_the_buffers() -> None:
    """A consumer waiting on the buffers' epoll fd is woken by a close from another task: its
    loop ends, with nothing received, and the program is released."""
    programs = kernel.loaded_program_ids()
    program = _perf_program()
    perf = PerfBuffer.from_bcc(program.bpf, "events", owned=[program.close])
    received: list[object] = []

    async def consume() -> None:
        async for record in perf:
            received.append(record)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await perf.aclose()
    assert received == []
    assert program.closed
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


@pytest.mark.anyio
async def test_a_sample_that_came_just_before_a_wait_still_wakes_it() -> None:
    """A sample written after the reader last looked and before its wait registers the fd: the
    registration's poll takes the perf event's wake-up (perf_poll swaps it for zero), so the
    loop's own poll would see nothing. The wait looks at the buffers again and ends."""
    program = _perf_program()
    async with PerfBuffer.from_bcc(program.bpf, "events", owned=[program.close]) as perf:
        os.getppid()  # the sample, and its wake-up, before the wait
        with anyio.fail_after(5):
            assert await perf._gate.wait_readable(perf._fd)
        batch = await _receive(perf, 1)
    assert len(batch) == 1
