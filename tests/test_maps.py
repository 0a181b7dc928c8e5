"""Map polling on the real kernel: exact per-uid execve counts in every mode."""

from __future__ import annotations

import os
from typing import Any

import anyio
import numpy as np
import pytest

import aiobpf
from aiobpf._kernel.objects import BpfObject
from aiobpf.programs._text import prebuilt_path
from aiobpf.testing import getppid_program

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

UID = 61001
OTHER_UID = 61002


async def _exec_as(uid: int, times: int) -> None:
    """Runs /bin/true ``times`` times as ``uid``: exactly one execve each under that uid."""
    for _ in range(times):
        await anyio.run_process(kernel.setpriv_command(uid, "/bin/true"))


async def test_snapshot_counts_exactly_the_executions_of_a_fresh_uid() -> None:
    """N executions under a fresh uid read back as exactly N, cumulative across readings."""
    with anyio.fail_after(30):
        async with aiobpf.execve_counts(interval=0.1) as counts:
            await _exec_as(UID, 5)
            first = await counts.__anext__()
            await _exec_as(UID, 2)
            second = await counts.__anext__()
    assert first.values[UID] == 5
    assert second.values[UID] == 7
    assert first.mode == "snapshot"


#: Exec calls per uid as a user would write it for BCC (aiobpf's own is a prebuilt object).
COUNTS_FOR_BCC = r"""
BPF_HASH(counts, u32, u64, 10240);

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    u32 uid = (u32)bpf_get_current_uid_gid();
    u64 zero = 0;
    u64 *count = counts.lookup_or_try_init(&uid, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}
"""


def _counts_poller(
    loader: str, mode: aiobpf.sources.Mode, batch: bool
) -> aiobpf.MapPoller[Any, Any]:
    """A poller of a uid -> exec calls map: of a BCC program, or of aiobpf's prebuilt one."""
    if loader == "bcc":
        program = aiobpf.lowlevel.Program.compile(COUNTS_FOR_BCC)
        return aiobpf.MapPoller.from_bcc(
            program.bpf, "counts", interval=0.05, mode=mode, batch=batch, owned=[program.close]
        )
    prebuilt = BpfObject.load(prebuilt_path("top_uids"))
    prebuilt.attach_tracepoints()
    (fd,) = prebuilt.map_fds("counts")
    return aiobpf.MapPoller.from_fd(
        fd,
        name="counts",
        key=np.uint32,
        value=np.uint64,
        interval=0.05,
        mode=mode,
        batch=batch,
        owned=[prebuilt.close],
    )


@pytest.mark.parametrize("loader", ["bcc", "libbpf"])
@pytest.mark.parametrize(("mode", "batch"), [("delta", True), ("drain", True), ("drain", False)])
async def test_windows_add_up_while_execs_keep_happening(
    mode: aiobpf.sources.Mode, batch: bool, loader: str
) -> None:
    """Delta and drain readings taken while execs run add up to exactly the execs made, for a
    map of a program BCC compiled and of one libbpf loaded."""
    made = 0
    seen = 0
    with anyio.fail_after(60):
        poller = _counts_poller(loader, mode, batch)
        async with poller:
            readings = 0
            async with anyio.create_task_group() as tasks:

                async def execs() -> None:
                    nonlocal made
                    for _ in range(40):
                        await _exec_as(UID, 1)
                        made += 1

                tasks.start_soon(execs)
                async for reading in poller:
                    seen += reading.values.get(UID, 0)
                    readings += 1
                    if made == 40 and readings > 3:
                        break
            final = poller.read()
            seen += final.values.get(UID, 0)
    assert made == 40
    assert seen == 40
    assert readings > 3


async def test_uid_filter_runs_in_the_kernel() -> None:
    """With uids=[U], another uid's execs are never counted; U's are."""
    with anyio.fail_after(30):
        async with aiobpf.execve_counts(interval=0.1, uids=[UID]) as counts:
            await _exec_as(OTHER_UID, 3)
            await _exec_as(UID, 2)
            reading = await counts.__anext__()
    assert reading.values == {UID: 2}


def test_drain_refuses_arrays_and_maps_of_other_types() -> None:
    """Draining an array, or polling a ring buffer, is refused with the reason."""
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    try:
        with pytest.raises(ValueError, match="mode 'drain' needs a hash map"):
            aiobpf.MapPoller.from_bcc(program.bpf, "load_sequence", mode="drain")
        with pytest.raises(aiobpf.MapTypeError, match="polling reads hash, array"):
            aiobpf.MapPoller.from_bcc(
                program.bpf, "events", key=np.dtype("<u4"), value=np.dtype("<u4")
            )
        with pytest.raises(aiobpf.MapTypeError, match="declared key is 8"):
            aiobpf.MapPoller.from_bcc(program.bpf, "load_sequence", key=np.dtype("<u8"))
        with pytest.raises(ValueError, match="interval must be a finite number > 0 seconds, got 0"):
            aiobpf.MapPoller.from_bcc(program.bpf, "load_sequence", interval=0)
    finally:
        program.close()


async def test_closing_wakes_a_waiting_consumer() -> None:
    """aclose() from another task ends the consumer's loop at once, not at the next tick."""
    with anyio.fail_after(30):
        poller = aiobpf.execve_counts(interval=3600)
        await poller.open()
        async with anyio.create_task_group() as tasks:

            async def consume() -> None:
                async for _ in poller:
                    pytest.fail("no reading is due for an hour")

            tasks.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            await poller.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        poller.read()


PER_CPU_PROGRAM = r"""
struct key_t {
    u32 uid;
    char comm[16];
};
BPF_PERCPU_HASH(by_user, struct key_t, u64, 64);
BPF_PERCPU_ARRAY(totals, u64, 4);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    struct key_t key = {};
    key.uid = (u32)bpf_get_current_uid_gid();
    bpf_get_current_comm(key.comm, sizeof(key.comm));
    u64 zero = 0;
    u64 *count = by_user.lookup_or_try_init(&key, &zero);
    if (count)
        *count += 1;
    u32 slot = 2;
    u64 *total = totals.lookup(&slot);
    if (total)
        *total += 1;
    return 0;
}
"""


async def test_per_cpu_maps_with_struct_keys_sum_over_cpus() -> None:
    """A per-CPU hash keyed by a struct reads back as {attrs record: sum over CPUs}, and a
    per-CPU array as {index: sum}, exactly, with calls spread over both CPUs."""
    flags = [f"-DTARGET_TGID={os.getpid()}"]
    program = aiobpf.lowlevel.Program.compile(PER_CPU_PROGRAM, cflags=flags)
    try:
        by_user = aiobpf.MapPoller.from_bcc(program.bpf, "by_user", interval=0.05)
        totals = aiobpf.MapPoller.from_bcc(program.bpf, "totals", interval=0.05, mode="delta")
        async with by_user, totals:
            await totals.__anext__()  # the baseline reading
            affinity = os.sched_getaffinity(0)
            try:
                for cpu in sorted(affinity):
                    os.sched_setaffinity(0, {cpu})
                    for _ in range(100):
                        os.getppid()
            finally:
                os.sched_setaffinity(0, affinity)
            users = (await by_user.__anext__()).values
            changes = (await totals.__anext__()).values
    finally:
        program.close()
    calls = 100 * len(affinity)
    ((key, count),) = users.items()
    assert (key.uid, key.comm) == (os.getuid(), kernel.comm_of(os.getpid()).encode())
    assert count == calls
    assert changes == {2: calls}


@pytest.mark.parametrize("key", ["uid", "comm"])
async def test_execve_windows_counted_in_the_kernel(key: str, tmp_path: Any) -> None:
    """execve_window_counts counts each exec once, by uid or by comm, across drained windows."""
    program = kernel.uniquely_named_program(tmp_path, "kwindow-me")
    tmp_path.chmod(0o755)
    wanted = UID if key == "uid" else "kwindow-me"
    seen = 0
    with anyio.fail_after(30):
        async with aiobpf.execve_window_counts(key, every=0.1) as windows:  # type: ignore[arg-type]
            for _ in range(4):
                await anyio.run_process(kernel.setpriv_command(UID, program))
            async for window in windows:
                seen += window.counts.get(wanted, 0)
                if seen >= 4:
                    break
            extra = await windows.__anext__()  # one more window: nothing was held back
            seen += extra.counts.get(wanted, 0)
    assert seen == 4
