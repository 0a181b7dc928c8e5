"""Syscall dispatch through a kernel tail-call table, on the real kernel."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import anyio
import pytest

import aiobpf
from aiobpf.operators import View
from aiobpf.programs import SyscallDispatch, SyscallEvent

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

TIMERS = 7
IGNORED = 5
PARENT_CALLS = 11

# Waits for a line on stdin, then makes exactly TIMERS timer_create + timer_delete pairs,
# IGNORED access and pipe calls and PARENT_CALLS getppid calls, all through libc's syscall().
CHILD = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
nr = {{name: int(value) for name, value in (arg.split("=") for arg in sys.argv[1:])}}
sys.stdin.readline()
timer = ctypes.c_int(0)
fds = (ctypes.c_int * 2)()
for _ in range({TIMERS}):
    assert libc.syscall(nr["timer_create"], 1, None, ctypes.byref(timer)) == 0
    assert libc.syscall(nr["timer_delete"], timer) == 0
for _ in range({IGNORED}):
    libc.syscall(nr["access"], b"/", 0)
    assert libc.syscall(nr["pipe"], fds) == 0
for _ in range({PARENT_CALLS}):
    libc.syscall(nr["getppid"])
print("done", flush=True)
"""


async def _collect(view: View[SyscallEvent], into: list[SyscallEvent], count: int) -> None:
    async for event in view:
        into.append(event)
        if len(into) == count:
            return


async def test_views_and_counters_show_exactly_what_a_child_did() -> None:
    """A child's N timer_create and N timer_delete reach their emit views exactly, its ignored
    syscalls emit nothing but are counted, and a count slot counts its getppid calls."""
    numbers = {
        name: aiobpf.syscall_number(name)
        for name in ("timer_create", "timer_delete", "access", "pipe", "getppid")
    }
    args = [sys.executable, "-c", CHILD, *(f"{k}={v}" for k, v in numbers.items())]
    created: list[SyscallEvent] = []
    deleted: list[SyscallEvent] = []
    with anyio.fail_after(60):
        async with (
            await anyio.open_process(args) as child,
            SyscallDispatch(tgids=[child.pid]) as dispatch,
        ):
            dispatch.install(["timer_create", "timer_delete"], "emit")
            dispatch.install(["access", "pipe"], "ignore")
            dispatch.install("getppid", "count")
            assert dispatch.table == {
                "access": "ignore",
                "pipe": "ignore",
                "getppid": "count",
                "timer_create": "emit",
                "timer_delete": "emit",
            }
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_collect, dispatch.view("timer_create"), created, TIMERS)
                tasks.start_soon(_collect, dispatch.view("timer_delete"), deleted, TIMERS)
                assert child.stdin is not None
                await child.stdin.send(b"go\n")
                await child.wait()
            counts = dispatch.counts()
            stats = dispatch.stats
    assert child.returncode == 0
    assert [(e.pid, e.name) for e in created] == [(child.pid, "timer_create")] * TIMERS
    assert [(e.pid, e.name) for e in deleted] == [(child.pid, "timer_delete")] * TIMERS
    assert all(e.args[0] == 1 for e in created)  # CLOCK_MONOTONIC, the first argument
    assert counts == {"getppid": PARENT_CALLS}
    assert stats.ignored == 2 * IGNORED
    assert stats.events.produced == 2 * TIMERS
    assert stats.events.dropped == 0


async def test_handlers_change_while_running_without_reloading() -> None:
    """Installing, removing and reinstalling a slot takes effect at once in the same program."""
    programs_before = kernel.held_program_ids()
    async with SyscallDispatch(tids=[kernel.current_tid()]) as dispatch:
        programs = kernel.held_program_ids() - programs_before
        dispatch.install("getppid", "count")
        for _ in range(3):
            os.getppid()
        assert dispatch.counts() == {"getppid": 3}
        dispatch.remove("getppid")
        for _ in range(4):
            os.getppid()
        assert dispatch.counts() == {"getppid": 3}
        assert dispatch.fallthrough_counts()["getppid"] == 4
        dispatch.install("getppid", "count")
        os.getppid()
        assert dispatch.counts() == {"getppid": 4}
        assert kernel.held_program_ids() - programs_before == programs  # nothing reloaded


async def test_user_handler_in_c() -> None:
    """A handler written in C by the user fills a slot like the built-in ones."""
    user = """
    BPF_ARRAY(user_hits, u64, 1);
    int my_handler(struct bpf_raw_tracepoint_args *ctx) {
        u32 zero = 0;
        u64 *hits = user_hits.lookup(&zero);
        if (hits) __sync_fetch_and_add(hits, 1);
        return 0;
    }
    """
    async with SyscallDispatch(tids=[kernel.current_tid()], user_handlers=user) as dispatch:
        dispatch.install("getppid", "my_handler")
        for _ in range(6):
            os.getppid()
        assert dispatch.user_program is not None
        poller: aiobpf.MapPoller[Any, Any] = aiobpf.MapPoller.from_bcc(
            dispatch.user_program.bpf, "user_hits"
        )
        async with poller:
            assert poller.read().values == {0: 6}
        with pytest.raises(LookupError, match="no handler 'nope'"):
            dispatch.install("getppid", "nope")
        with pytest.raises(LookupError, match="no syscall named 'getppidd'"):
            dispatch.install("getppidd", "count")


async def test_user_handlers_that_do_not_compile_leave_nothing_loaded() -> None:
    """A user handler BCC refuses is a CompileError with the compiler's words, raised once the
    prebuilt dispatcher was loaded: that one is released too."""
    programs, objects = kernel.held_program_ids(), kernel.bpf_objects()
    broken = "int mine(struct bpf_raw_tracepoint_args *ctx) { return no_such_thing; }"
    with pytest.raises(aiobpf.CompileError, match="no_such_thing"):
        async with SyscallDispatch(tids=[kernel.current_tid()], user_handlers=broken):
            pass
    assert kernel.bpf_objects() == objects
    assert kernel.held_program_ids() == programs


async def test_closing_detaches_and_frees_everything() -> None:
    """After the dispatcher closes, its programs, maps and links are gone from the kernel."""
    programs, objects = kernel.held_program_ids(), kernel.bpf_objects()
    async with SyscallDispatch(tids=[kernel.current_tid()]) as dispatch:
        dispatch.install("getppid", "emit")
        os.getppid()
        ours = kernel.held_program_ids() - programs
        assert len(ours) == 4  # dispatch and the three built-in handlers
    assert kernel.bpf_objects() == objects  # every fd closed at once
    assert kernel.wait_until_unloaded(ours) == set()


async def test_syscall_events_source() -> None:
    """syscall_events() yields typed events of the chosen syscalls of the tasks in scope."""
    async with aiobpf.syscall_events(syscalls=["getppid"], tids=[kernel.current_tid()]) as events:
        os.getppid()
        with anyio.fail_after(10):
            event = await events.__anext__()
    assert (event.pid, event.tid, event.name, event.nr) == (
        os.getpid(),
        kernel.current_tid(),
        "getppid",
        aiobpf.syscall_number("getppid"),
    )
    assert event.uid == os.getuid()


async def test_scope_by_comm_and_uid_is_decided_in_the_kernel() -> None:
    """A comm scope admits the tasks of that name only; a uid scope of another user admits none
    of ours (in_scope does not move)."""
    name = b"aiobpf-scope"
    libc = ctypes.CDLL(None, use_errno=True)
    previous = kernel.comm_of(os.getpid()) if kernel.current_tid() == os.getpid() else None
    assert libc.prctl(15, name, 0, 0, 0) == 0  # PR_SET_NAME: this thread's comm
    try:
        async with SyscallDispatch(comms=[name.decode()]) as dispatch:
            dispatch.install("getppid", "count")
            for _ in range(5):
                os.getppid()
            assert dispatch.counts() == {"getppid": 5}
    finally:
        if previous is not None:
            libc.prctl(15, previous.encode(), 0, 0, 0)
    async with SyscallDispatch(uids=[61041], tids=[kernel.current_tid()]) as dispatch:
        dispatch.install("getppid", "count")
        for _ in range(5):
            os.getppid()
        assert dispatch.counts() == {}
        assert dispatch.stats.in_scope == 0


async def test_a_view_that_would_never_yield_is_refused() -> None:
    """view() of a syscall counted, ignored or falling through to a default that does not
    emit says so, instead of a view that waits for ever; once emitted, it is given."""
    async with SyscallDispatch(tgids=[os.getpid()]) as dispatch:
        dispatch.install("getppid", "count")
        with pytest.raises(ValueError, match=r"getppid \(count\): not set to emit"):
            dispatch.view("getppid")
        with pytest.raises(ValueError, match=r"getpid \(empty, default count\)"):
            dispatch.view("getpid")
        dispatch.set_default("emit")
        dispatch.view("getpid")  # the default emits now
        dispatch.install("getppid", "emit")
        dispatch.view("getppid")


def test_views_before_entering_are_a_clear_error() -> None:
    """Asking a dispatcher for a view before `async with` says how to use it."""
    with pytest.raises(aiobpf.NotOpenError, match="use it with 'async with'"):
        SyscallDispatch().view("execve")


# A 64-bit process that makes 32-bit (ia32) syscalls through int $0x80, as a 32-bit program's
# would be: getpid is 20 there (writev here) and getppid 64 (getsockopt here).
_IA32_CALLS = r"""
#include <unistd.h>
int main(void) {
    char go;
    if (read(0, &go, 1) != 1) return 1;
    for (int i = 0; i < 7; i++) {
        long nr = 64, ret;
        __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr) : "memory");
        if (ret != getppid()) return 2;
    }
    return 0;
}
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="ia32 syscalls are x86-64's")
async def test_ia32_syscalls_are_counted_apart_not_mislabelled(tmp_path: Any) -> None:
    """ia32 syscalls (here getppid, number 64 there and getsockopt's here) of a task in scope
    are not dispatched under the 64-bit table's names: counted as ia32, and nothing else."""
    source, binary = tmp_path / "ia32.c", tmp_path / "ia32-calls"
    source.write_text(_IA32_CALLS)
    await anyio.run_process(["cc", "-O1", "-o", str(binary), str(source)])
    async with (
        await anyio.open_process([str(binary)]) as child,
        SyscallDispatch(tgids=[child.pid], default="count") as dispatch,
    ):
        dispatch.install("getsockopt", "count")
        assert child.stdin is not None
        await child.stdin.send(b"g")
        assert await child.wait() == 0  # each ia32 getppid returned what the 64-bit one does
        stats = dispatch.stats
        counts, fallthrough = dispatch.counts(), dispatch.fallthrough_counts()
    assert stats.ia32 == 7
    assert counts == {}  # no getsockopt: the 64-bit table's number 64
    assert "getsockopt" not in fallthrough
    assert fallthrough["getppid"] == 7  # the 64-bit calls it compared with
