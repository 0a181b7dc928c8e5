"""Record types derived from a user program's C struct, on the real kernel: a ring source
needs no hand-written record when BCC saw the struct the program writes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import numpy as np
import pytest

from aiobpf import RecordLayoutError, RingBuffer
from aiobpf.lowlevel import Program

pytestmark = pytest.mark.usefixtures("bpf")

PROGRAM = r"""
struct event {
    u32 pid;
    u32 uid;
    char comm[16];
    u64 grid[2][3];
    s8 flag;
    u16 small[3];
    u64 seq;
};
BPF_RINGBUF_OUTPUT(events, 8);
BPF_ARRAY(sequence, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    u32 zero = 0;
    u64 *next = sequence.lookup(&zero);
    if (!next)
        return 0;
    u64 seq = __sync_fetch_and_add(next, 1);
    struct event *ev = events.ringbuf_reserve(sizeof(struct event));
    if (!ev)
        return 0;
    ev->pid = bpf_get_current_pid_tgid();
    ev->uid = bpf_get_current_uid_gid();
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            ev->grid[i][j] = seq * 10 + i * 3 + j;
    ev->flag = -1;
    ev->small[0] = 1; ev->small[1] = 2; ev->small[2] = 3;
    ev->seq = seq;
    events.ringbuf_submit(ev, 0);
    return 0;
}
"""

NESTED = r"""
struct inner { u32 a; u32 b; };
struct event { u32 pid; struct inner inner; };
BPF_RINGBUF_OUTPUT(events, 8);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    struct event *ev = events.ringbuf_reserve(sizeof(struct event));
    if (!ev)
        return 0;
    ev->pid = 0;
    ev->inner.a = 0;
    ev->inner.b = 0;
    events.ringbuf_submit(ev, 0);
    return 0;
}
"""


def _own_comm() -> str:
    """The comm of the calling thread, as the kernel reports it."""
    return Path("/proc/thread-self/comm").read_text().strip()


def _program(text: str) -> Program:
    return Program.compile(text, cflags=[f"-DTARGET_TGID={os.getpid()}"])


@pytest.mark.anyio
async def test_records_come_typed_from_the_program_struct() -> None:
    """Three getppid() calls of this process come as three records with the struct's field
    names: exact pid, uid and comm (as text), nested arrays with their shape, small ints."""
    comm = _own_comm()
    program = _program(PROGRAM)
    async with RingBuffer.from_bcc(program.bpf, "events", owned=[program.close]) as ring:
        for _ in range(3):
            os.getppid()
        records = []
        with anyio.fail_after(10):
            async for record in ring:
                records.append(record)
                if len(records) == 3:
                    break
    assert [(r.pid, r.uid, r.comm, r.flag, list(r.small)) for r in records] == [
        (threading.get_native_id(), os.getuid(), comm, -1, [1, 2, 3])
    ] * 3
    assert [[list(row) for row in r.grid] for r in records] == [
        [[seq * 10 + i * 3 + j for j in range(3)] for i in range(2)] for seq in range(3)
    ]


@pytest.mark.anyio
async def test_batches_of_a_derived_record_are_structured_arrays() -> None:
    """Batches carry the struct's layout: char arrays as bytes, arrays with their shape."""
    program = _program(PROGRAM)
    async with RingBuffer.from_bcc(program.bpf, "events", owned=[program.close]) as ring:
        os.getppid()
        with anyio.fail_after(10):
            batch = await ring.receive_batch()
    assert batch.dtype.names == ("pid", "uid", "comm", "grid", "flag", "small", "seq")
    assert batch["grid"].shape == (1, 2, 3)
    assert batch["comm"][0] == _own_comm().encode()


def test_a_declared_record_that_is_not_the_program_struct_is_refused() -> None:
    """Declaring the record one field short is a RecordLayoutError when the source is made,
    not a stream of malformed records; the program it was given is released."""
    program = _program(PROGRAM)
    wrong = np.dtype([("pid", "<u4"), ("uid", "<u4"), ("comm", "S16")])
    with pytest.raises(RecordLayoutError, match=r"declared record \(24 bytes"):
        RingBuffer.from_bcc(program.bpf, "events", record=wrong, owned=[program.close])


@pytest.mark.anyio
async def test_a_struct_with_a_nested_struct_needs_a_declared_record() -> None:
    """BCC names a nested struct's type without its fields: the error says so, and a declared
    record still works."""
    program = _program(NESTED)
    try:
        with pytest.raises(RecordLayoutError, match="field 'inner' is a 'struct inner'"):
            RingBuffer.from_bcc(program.bpf, "events")
        declared = np.dtype([("pid", "<u4"), ("a", "<u4"), ("b", "<u4")])
        async with RingBuffer.from_bcc(program.bpf, "events", record=declared) as ring:
            os.getppid()
            with anyio.fail_after(10):
                batch = await ring.receive_batch()
        assert batch.dtype == declared
    finally:
        program.close()


@pytest.mark.anyio
async def test_a_wrong_record_that_cannot_be_checked_early_is_found_on_reading() -> None:
    """Where BCC cannot describe the struct, a declared record of the wrong size is not refused
    up front: the records of another size are skipped, counted, and the read says why."""
    program = _program(NESTED)
    declared = np.dtype([("pid", "<u4"), ("a", "<u4")])  # 8 bytes; the program writes 12
    async with RingBuffer.from_bcc(
        program.bpf, "events", record=declared, owned=[program.close]
    ) as ring:
        os.getppid()
        with anyio.fail_after(10), pytest.raises(RecordLayoutError, match="is 12 bytes"):
            await ring.receive()
        assert ring.stats.malformed >= 1
