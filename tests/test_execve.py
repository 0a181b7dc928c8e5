"""execve_events() on the real kernel: exact events for known processes, and clean release."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import numpy as np
import pytest

import aiobpf
from aiobpf import ExecveEvent, RingBuffer
from aiobpf._core.clock import wall_now
from aiobpf.lowlevel import EXECVE_RECORD
from aiobpf.testing import getppid_program, getppid_record, getppid_ring

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

TEST_UID = 54321


async def _first(events: aiobpf.programs.ExecveEvents, filename: str) -> ExecveEvent:
    async for event in events:
        if event.filename == filename:
            return event
    raise AssertionError("the source ended before the event arrived")


async def test_exact_event_for_a_known_program_run_as_another_user(tmp_path: Path) -> None:
    """A uniquely named program run under a chosen uid yields its exact pid, uid, comm, filename."""
    name = f"aiobpf-t{os.getpid() % 100000}"
    program = kernel.uniquely_named_program(tmp_path, name)
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    with anyio.fail_after(30):
        async with aiobpf.execve_events() as events:
            process = kernel.spawn_as(TEST_UID, program)
            try:
                event = await _first(events, str(program))
            finally:
                process.wait()
    assert process.returncode == 0
    assert event.pid == process.pid
    assert event.tid == process.pid
    assert event.ppid == os.getpid()
    assert event.uid == TEST_UID
    assert event.gid == TEST_UID
    assert event.comm == name[:15]
    assert event.filename == str(program)
    assert event.retval == 0
    assert event.message == "hello world"
    assert event.timestamp_ns > 0


async def test_a_short_filename_after_a_long_one_carries_nothing_of_it(tmp_path: Path) -> None:
    """Records are built in a buffer reused per CPU: /bin/true exec'd right after a program with
    a 230-byte path, on the same CPU, comes out exactly, in batches (raw bytes) as in events."""
    deep = tmp_path / ("d" * 200)
    deep.mkdir()
    program = kernel.uniquely_named_program(deep, "long-path")
    for directory in (tmp_path, deep):
        directory.chmod(0o755)
    # taskset becomes sh on CPU 0; sh runs the program, then becomes /bin/true, all on CPU 0
    command = ["taskset", "-c", "0", "sh", "-c", f"{program}; exec /bin/true"]
    rows: list[np.ndarray[Any, Any]] = []
    with anyio.fail_after(30):
        async with aiobpf.execve_events() as events:
            async with await anyio.open_process(command) as process:
                await process.wait()
            async for batch in events.ring.batches():
                rows.append(batch[batch["pid"] == process.pid])
                if any(row["filename"].startswith(b"/bin/true") for row in rows[-1]):
                    break
    mine = np.concatenate(rows)
    assert mine["filename"].tolist()[-1] == b"/bin/true"
    assert ExecveEvent.decode(mine)[-1].filename == "/bin/true"


async def test_busy_polling_reads_real_execs_without_sleeping_on_the_fd(tmp_path: Path) -> None:
    """In the low-latency mode (busy_poll) the source looks at the ring instead of sleeping on
    its fd: three execs of a known program arrive exactly, and no wake-up was needed."""
    program = kernel.uniquely_named_program(tmp_path, "poll-me")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    with anyio.fail_after(30):
        async with aiobpf.execve_events(busy_poll=60.0) as events:
            for _ in range(3):
                async with await anyio.open_process([str(program)]) as process:
                    await process.wait()
                event = await _first(events, str(program))
                assert (event.pid, event.comm, event.retval) == (process.pid, "poll-me", 0)
            assert events.stats.wakeups == 0


async def test_failed_exec_is_reported_with_its_errno(tmp_path: Path) -> None:
    """An exec of a missing file is reported, with retval -ENOENT and the caller's comm."""
    missing = tmp_path / "does-not-exist"
    with anyio.fail_after(30):
        async with aiobpf.execve_events() as events:
            with pytest.raises(FileNotFoundError):
                subprocess.Popen([str(missing)])  # noqa: ASYNC220 -- fails at once, by design
            event = await _first(events, str(missing))
    assert event.retval == -errno.ENOENT
    assert event.uid == os.getuid()


async def test_bare_async_for_attaches_on_first_iteration() -> None:
    """`async for ev in execve_events()` works without `async with`; aclose still releases."""
    events = aiobpf.execve_events()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:

            async def run_true() -> None:
                while True:  # until the consumer sees one: the source attaches lazily
                    await anyio.run_process(["true"])
                    await anyio.sleep(0.05)

            tasks.start_soon(run_true)
            async for event in events:
                if event.comm == "true":
                    break
            tasks.cancel_scope.cancel()
    await events.aclose()


async def test_loss_is_counted_exactly_with_a_tiny_ring_and_a_blocked_consumer() -> None:
    """With a one-page ring nobody reads, received + dropped == produced, and drops happened."""
    calls = 5000
    with anyio.fail_after(30):
        async with getppid_ring(os.getpid(), ring_size=4096) as ring:
            for _ in range(calls):
                os.getppid()
            received = 0
            async for batch in ring.batches():
                received += len(batch)
                if ring.stats.received + (ring.stats.dropped or 0) == calls:
                    break
            stats = ring.stats
    assert stats.produced == calls
    assert stats.received == received == 4096 // 40
    assert stats.dropped == calls - received


async def test_records_arrive_in_sequence_without_gaps_when_the_consumer_keeps_up() -> None:
    """Batches read while the producer runs deliver every sequence number once, in order."""
    calls = 20_000
    seen: list[int] = []
    with anyio.fail_after(60):
        async with getppid_ring(os.getpid(), ring_size=1 << 20) as ring:
            for _ in range(calls):
                os.getppid()
            async for batch in ring.batches():
                seen.extend(batch["seq"].tolist())
                if len(seen) == calls:
                    break
            stats = ring.stats
    assert seen == list(range(calls))
    assert stats.dropped == 0
    assert stats.produced == calls


async def test_open_close_cycles_return_to_baseline() -> None:
    """200 ring source cycles and 10 program cycles leave fds, BPF objects and kernel programs
    exactly as they were."""
    fds, objects = kernel.open_fd_count(), kernel.bpf_objects()
    programs = kernel.loaded_program_ids()
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    try:
        for _ in range(200):
            async with RingBuffer.from_bcc(program.bpf, "events", record=getppid_record()) as ring:
                os.getppid()
                assert (await ring.receive()).tgid == os.getpid()
    finally:
        program.close()
    for _ in range(10):
        async with aiobpf.execve_events() as events:
            assert events.stats.received == 0
    assert kernel.open_fd_count() == fds
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_cancelling_a_consumer_mid_stream_detaches_everything() -> None:
    """A consumer cancelled while events flow leaves no program attached in the kernel."""
    programs = kernel.loaded_program_ids()
    objects = kernel.bpf_objects()
    received, ring_size = 0, 256 * 1024
    with anyio.move_on_after(30) as scope:
        async with (
            aiobpf.execve_events(ring_size=ring_size) as events,
            anyio.create_task_group() as tasks,
        ):

            async def storm() -> None:
                while True:
                    await anyio.run_process(["true"])

            tasks.start_soon(storm)
            async for _ in events:
                received += 1
                if received == 20:
                    scope.cancel()
    # cancellation is seen at the next checkpoint: at the latest once the batch in hand, at
    # most a full ring of records (each with its 8-byte header), has been handed out
    assert 20 <= received < 20 + ring_size // (EXECVE_RECORD.itemsize + 8)
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_closing_detaches_off_the_event_loop() -> None:
    """Each tracepoint's detach waits out a grace period in the kernel: closing detaches in a
    worker thread, so the loop is free meanwhile (it runs a call the detaching thread makes,
    which anyio refuses from the loop's own thread), and the program ends unloaded."""
    programs = kernel.loaded_program_ids()
    ran_on_the_loop: list[bool] = []
    with anyio.fail_after(30):
        async with aiobpf.execve_events() as events:
            detach = events.detach

            def detach_and_call_the_loop() -> None:
                anyio.from_thread.run_sync(ran_on_the_loop.append, True)
                detach()

            events.detach = detach_and_call_the_loop  # type: ignore[method-assign]
    assert ran_on_the_loop == [True]
    assert events.closed
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_a_close_cancelled_while_detaching_still_releases_everything() -> None:
    """A cancel that comes while the program detaches does not cut closing short: the program
    is detached and unloaded, and the counts balance."""
    programs = kernel.loaded_program_ids()
    events = aiobpf.execve_events()
    await events.open()
    await anyio.run_process(["true"])
    detach = events.detach
    with anyio.CancelScope() as scope:

        def cancel_then_detach() -> None:
            anyio.from_thread.run_sync(scope.cancel)
            detach()

        events.detach = cancel_then_detach  # type: ignore[method-assign]
        await events.aclose()
    assert scope.cancel_called
    assert events.closed
    stats = events.stats
    assert stats.produced is not None
    assert stats.produced >= 1
    assert stats.produced == stats.received + stats.unread + (stats.dropped or 0)
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_cancelled_while_compiling_leaves_nothing_attached() -> None:
    """A cancel that lands while the program compiles in its worker thread leaks nothing."""
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    with anyio.move_on_after(0.01) as scope:
        async with aiobpf.execve_events():
            pytest.fail("the body must not run: the scope was cancelled during open")
    assert scope.cancelled_caught
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def _close_while_opening(
    events: aiobpf.programs.ExecveEvents, reached: threading.Event, go: threading.Event
) -> bool:
    """Opens ``events`` in a task, closes it from another once ``reached`` is set (by a step
    of the open that then waits for ``go``), and returns whether the close had returned by the
    time every task was blocked: it must not, while the open is still under way."""

    async def open_it() -> None:
        with pytest.raises(anyio.ClosedResourceError, match="closed while it opened"):
            await events.open()

    closed = anyio.Event()

    async def close_it() -> None:
        await events.aclose()
        closed.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(open_it)
        await anyio.to_thread.run_sync(reached.wait)
        tasks.start_soon(close_it)
        await anyio.wait_all_tasks_blocked()
        returned_early = closed.is_set()
        go.set()
    return returned_early


async def test_a_close_while_the_program_loads_waits_for_the_open_and_attaches_nothing() -> None:
    """Closing a source whose program is still loading (in its worker thread) returns only once
    that open has ended: the opener gets ClosedResourceError, the program is never attached,
    and nothing stays loaded."""
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    events = aiobpf.execve_events()
    loading, go = threading.Event(), threading.Event()
    load, attach = events._compile, events._attach
    attached: list[object] = []

    def slow_load() -> Any:
        loading.set()
        go.wait(30)
        return load()

    def recorded_attach(program: Any) -> None:
        attached.append(program)
        attach(program)

    events._compile = slow_load  # type: ignore[method-assign]
    events._attach = recorded_attach  # type: ignore[method-assign]
    with anyio.fail_after(60):
        returned_early = await _close_while_opening(events, loading, go)
    assert not returned_early, "the close returned while the program was still loading"
    assert attached == []
    assert events.closed
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_a_close_while_the_program_attaches_never_frees_it_under_the_attach() -> None:
    """Closing while the program attaches (in its worker thread) waits for the attach to end
    before anything is detached or unloaded: it used to free the object under libbpf's attach
    (a segmentation fault). The attach finds the object open; nothing stays attached."""
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    events = aiobpf.execve_events()
    attaching, go = threading.Event(), threading.Event()
    attach = events._attach
    closed_under_the_attach: list[bool] = []

    def slow_attach(program: Any) -> None:
        attaching.set()
        go.wait(30)
        closed_under_the_attach.append(program.closed)
        attach(program)

    events._attach = slow_attach  # type: ignore[method-assign]
    with anyio.fail_after(60):
        returned_early = await _close_while_opening(events, attaching, go)
    assert not returned_early, "the close returned while the program was still attaching"
    assert closed_under_the_attach == [False]
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


def test_closing_at_random_moments_of_an_open_never_crashes(tmp_path: Path) -> None:
    """Closes execve_events() at random moments of its open, many times, in a process of its
    own: it used to end in a segmentation fault within 150 tries. Every try ends with the
    opener told it was closed, or opened and then closed; nothing stays loaded."""
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), "60"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.split() == ["60", "tries"]


RACE_SCRIPT = """
import random, sys
import anyio, aiobpf

async def main(tries):
    rng = random.Random(7)
    for _ in range(tries):
        events = aiobpf.execve_events()

        async def open_it():
            try:
                await events.open()
            except anyio.ClosedResourceError:
                pass

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(open_it)
            await anyio.sleep(rng.uniform(0, 0.05))
            await events.aclose()
    print(tries, "tries")

anyio.run(main, int(sys.argv[1]))
"""


async def test_bcc_reader_delivers_the_same_records() -> None:
    """The fallback reader (BCC's per-record callback) yields the same exact records."""
    calls = 500
    async with getppid_ring(os.getpid(), ring_size=1 << 16, reader="bcc") as ring:
        for _ in range(calls):
            os.getppid()
        seqs: list[int] = []
        with anyio.fail_after(10):
            async for batch in ring.batches():
                seqs.extend(batch["seq"].tolist())
                if len(seqs) == calls:
                    break
        stats = ring.stats
    assert seqs == list(range(calls))
    assert stats.produced == calls
    assert stats.dropped == 0


async def test_filters_on_execve_events_run_in_the_kernel() -> None:
    """filter_uid / filter_comm on execve_events() run in the kernel: other execs are never
    submitted (the program's produced counter does not move for them), and a filter added
    while running takes effect at once."""
    wanted, other = 61031, 61032
    with anyio.fail_after(30):
        source = aiobpf.execve_events() | aiobpf.filter_uid(wanted)
        assert isinstance(source, aiobpf.programs.ExecveEvents)  # pushed down: no user-space stage
        async with source as events:
            for uid in (other, other, other, wanted, wanted):
                await anyio.run_process(kernel.setpriv_command(uid, "/bin/true"))
            seen = [await events.receive() for _ in range(2)]
            assert events.stats.produced == 2
            assert events | aiobpf.filter_comm("no-such-comm") is events
            await anyio.run_process(kernel.setpriv_command(wanted, "/bin/true"))
            assert events.stats.produced == 2
    assert [(e.uid, e.comm, e.filename) for e in seen] == [(wanted, "true", "/bin/true")] * 2


# -- every way into exec: execveat, fexecve, a thread, argv --------------------------------------

# Each child execs a known program one way, having printed what the test must expect.
_EXECVEAT = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
directory, name = os.path.split(sys.argv[1])
fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
print(fd, flush=True)
argv = (ctypes.c_char_p * 3)(name.encode(), b"via-execveat", None)
envp = (ctypes.c_char_p * 1)(None)
libc.syscall(322, fd, name.encode(), argv, envp, 0)  # execveat, relative to the directory
raise SystemExit(ctypes.get_errno())
"""
_FEXECVE = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(fd, flush=True)
os.execve(fd, ["fexec-me", "via-fexecve"], {})  # glibc: execveat(fd, "", ..., AT_EMPTY_PATH)
"""
_FROM_A_THREAD = """
import os, sys, threading
def run():
    print(threading.get_native_id(), flush=True)
    os.execv(sys.argv[1], [sys.argv[1], "from-a-thread"])
thread = threading.Thread(target=run)
thread.start()
thread.join()
"""
AT_EMPTY_PATH = 0x1000


async def _child_execs(tmp_path: Path, name: str, code: str) -> tuple[int, str, list[ExecveEvent]]:
    """Runs ``code`` in a child Python with a copy of true named ``name`` as its argument: the
    child's pid, what it printed before exec'ing, and every exec event of its pid (its own
    start first), each reported exactly once."""
    program = kernel.uniquely_named_program(tmp_path, name)
    marker = kernel.uniquely_named_program(tmp_path, "marker")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    with anyio.fail_after(30):
        async with aiobpf.execve_events() as events:
            async with await anyio.open_process(
                [sys.executable, "-c", code, str(program)]
            ) as child:
                assert child.stdout is not None
                printed = (await child.stdout.receive()).decode().strip()
                assert await child.wait() == 0
            mine = [e for e in await _events_until(events, marker) if e.pid == child.pid]
    assert events.stats.dropped == 0
    assert mine[0].filename == sys.executable  # the child's own start
    return child.pid, printed, mine


async def _events_until(events: aiobpf.programs.ExecveEvents, marker: Path) -> list[ExecveEvent]:
    """The events before the marker program's exec, run now: every exec that returned before
    this call is among them (the ring keeps the order records were reserved in)."""
    await anyio.run_process([str(marker)])
    seen: list[ExecveEvent] = []
    async for event in events:
        if event.filename == str(marker):
            return seen
        seen.append(event)
    raise AssertionError("the source ended before the marker")


async def test_execveat_relative_to_a_directory_fd(tmp_path: Path) -> None:
    """execveat(dirfd, "name", ...) is reported once, as execveat, with its dirfd, the name as
    given, the argv and the new program's comm."""
    _, fd, mine = await _child_execs(tmp_path, "at-exec-me", _EXECVEAT)
    assert [(e.syscall, e.comm, e.filename, e.argv, e.retval) for e in mine[1:]] == [
        ("execveat", "at-exec-me", "at-exec-me", ("at-exec-me", "via-execveat"), 0)
    ]
    assert (mine[1].dirfd, mine[1].flags) == (int(fd), 0)


async def test_fexecve_is_an_execveat_of_an_empty_path(tmp_path: Path) -> None:
    """fexecve (execveat with AT_EMPTY_PATH on an open fd) is reported once, as execveat with
    an empty filename, the fd and the flag, and the argv it was given."""
    _, fd, mine = await _child_execs(tmp_path, "fexec-me", _FEXECVE)
    assert [(e.syscall, e.comm, e.filename, e.argv, e.retval) for e in mine[1:]] == [
        ("execveat", "fexec-me", "", ("fexec-me", "via-fexecve"), 0)
    ]
    assert (mine[1].dirfd, mine[1].flags & AT_EMPTY_PATH) == (int(fd), AT_EMPTY_PATH)


async def test_exec_from_a_thread_other_than_the_leader(tmp_path: Path) -> None:
    """A thread that is not its process's leader execs: the kernel gives it the leader's id on
    the way, and the exec is still reported once, with the process's pid, the thread's id, the
    new comm and the argv."""
    pid, tid, mine = await _child_execs(tmp_path, "thread-exec-me", _FROM_A_THREAD)
    program = str(tmp_path / "thread-exec-me")
    assert int(tid) != pid
    assert [(e.tid, e.comm, e.filename, e.argv, e.retval) for e in mine[1:]] == [
        (int(tid), "thread-exec-me", program, (program, "from-a-thread"), 0)
    ]


async def test_argv_is_kept_within_its_bounds(tmp_path: Path) -> None:
    """Arguments arrive as given, empty ones included; more than max_args, or one longer than
    255 bytes, set argv_truncated; a call within the bounds does not."""
    program = kernel.uniquely_named_program(tmp_path, "argv-me")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    calls = [
        [str(program), "", "two words", "x" * 255],  # all kept: 255 bytes is the longest
        [str(program), *map(str, range(9))],  # one more than max_args
        [str(program), "y" * 300],  # cut at 255 bytes
    ]
    with anyio.fail_after(30):
        async with aiobpf.execve_events(max_args=4) as events:
            for argv in calls:
                await anyio.run_process(argv)
            seen = []
            async for event in events:
                if event.filename == str(program):
                    seen.append((event.argv, event.argv_truncated, event.filename_truncated))
                    if len(seen) == len(calls):
                        break
    assert seen == [
        (tuple(calls[0]), False, False),
        ((str(program), "0", "1", "2"), True, False),
        ((str(program), "y" * 255), True, False),
    ]


def test_max_args_is_checked() -> None:
    """max_args outside 0..64 is refused at the call, naming the argument."""
    for bad in (-1, 65, 2.5):
        with pytest.raises(ValueError, match="max_args must be a whole number from 0 to 64"):
            aiobpf.execve_events(max_args=bad)  # type: ignore[arg-type]


async def test_a_pushed_down_filter_holds_from_the_first_event(tmp_path: Path) -> None:
    """Filters given before the source opens are in the kernel before its program is attached:
    other users' execs made all the while it opens never reach it, and the first event is the
    filtered user's."""
    program = kernel.uniquely_named_program(tmp_path, "filtered-first")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            done = anyio.Event()

            async def others() -> None:
                while not done.is_set():  # root's execs, before, while and after the opening
                    with anyio.CancelScope(shield=True):  # a process is never left unreaped
                        await anyio.run_process(["/bin/true"])

            tasks.start_soon(others)
            async with aiobpf.execve_events() | aiobpf.filter_uid(TEST_UID) as events:
                await anyio.run_process(kernel.setpriv_command(TEST_UID, program))
                first = await events.receive()
            done.set()
    assert (first.uid, first.filename) == (TEST_UID, str(program))


async def test_a_full_selection_is_replaced_by_another_full_one(tmp_path: Path) -> None:
    """A kernel set of 1,024 uids replaced by 1,024 others (the set's capacity): the new one is
    in force, and no stale uid of the old one passes. Putting the new values in before taking
    the old ones out used to overflow the map halfway (E2BIG)."""
    program = kernel.uniquely_named_program(tmp_path, "reselected")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    old = frozenset(range(100_000, 101_024))
    new = frozenset([*range(200_000, 201_023), TEST_UID])
    with anyio.fail_after(30):
        events = aiobpf.execve_events()
        events.select("uid", old)  # in force from the attach: nobody else's execs pass
        async with events:
            events.select("uid", new)  # replaced while it runs
            await anyio.run_process(kernel.setpriv_command(100_000, program))  # old only
            await anyio.run_process(kernel.setpriv_command(TEST_UID, program))
            first = await events.receive()
    assert (first.uid, first.filename) == (TEST_UID, str(program))


HOLD_MID_EXEC = r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
TRACEME, CONT, SETOPTIONS, DETACH, TRACEEXEC, EVENT_EXEC = 0, 7, 0x4200, 17, 0x10, 4
count, program = int(sys.argv[1]), sys.argv[2]
held = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        libc.ptrace(TRACEME, 0, None, None)
        os.kill(os.getpid(), signal.SIGSTOP)
        os.execv(program, [program])
    _, status = os.waitpid(pid, 0)
    libc.ptrace(SETOPTIONS, pid, None, ctypes.c_void_p(TRACEEXEC))
    libc.ptrace(CONT, pid, None, None)
    _, status = os.waitpid(pid, 0)  # stopped inside execve, before it returns
    assert status >> 8 == signal.SIGTRAP | (EVENT_EXEC << 8), status
    held.append(pid)
print(" ".join(map(str, held)), flush=True)
sys.stdin.readline()
for pid in held:
    libc.ptrace(DETACH, pid, None, None)
for pid in held:
    os.waitpid(pid, 0)
"""


async def test_execs_held_mid_exec_by_a_user_do_not_blind_the_source() -> None:
    """An unprivileged user holds 64 of its processes inside execve (ptrace's exec stop): the
    execs of everyone else are still reported while they are held (a fixed table of execs in
    flight, once full, dropped them), and each held exec is reported when released."""
    holder_uid, other_uid, count = 61097, 61098, 64
    with kernel.shared_directory() as shared:  # pytest's own is root's alone
        held_program = kernel.uniquely_named_program(shared, "held-exec")
        other_program = kernel.uniquely_named_program(shared, "free-exec")
        await _hold_and_exec(holder_uid, other_uid, count, held_program, other_program)


async def _hold_and_exec(
    holder_uid: int, other_uid: int, count: int, held_program: Path, other_program: Path
) -> None:
    holder = [*kernel.setpriv_command(holder_uid, sys.executable), "-c", HOLD_MID_EXEC]
    with anyio.fail_after(60):
        source = aiobpf.execve_events()
        async with (
            source | aiobpf.filter_uid([holder_uid, other_uid]) as events,
            await anyio.open_process([*holder, str(count), str(held_program)]) as holding,
        ):
            assert holding.stdout is not None
            assert holding.stdin is not None
            held = {int(pid) for pid in (await holding.stdout.receive()).split()}
            assert len(held) == count
            other = await anyio.run_process(kernel.setpriv_command(other_uid, other_program))
            first = await events.receive()  # the setpriv exec of the held helper came before
            while first.uid != other_uid:
                first = await events.receive()
            assert first.filename == str(other_program)
            await holding.stdin.send(b"go\n")
            await holding.wait()
            released = [event async for event in _first_n(events, count)]
            assert other.returncode == 0
    assert {event.pid for event in released} == held
    assert {(event.filename, event.retval, event.uid) for event in released} == {
        (str(held_program), 0, holder_uid)
    }
    assert source.stats.dropped == 0


async def _first_n(events: Any, count: int) -> Any:
    async for event in events:
        yield event
        count -= 1
        if count == 0:
            return


async def test_a_filtered_quiet_stream_emits_its_window_on_time(tmp_path: Path) -> None:
    """execve_events() | filter_uid(U) | window_count: three execs of a fresh uid, then
    silence: their windows are emitted on time, each after its end, with no later event (a
    window waited for one, forever, on a quiet filtered stream). Each exec is counted in its
    window, or, if a starved reader handed it out after its window closed, as late in the
    next: never lost."""
    uid = 61100
    program = kernel.uniquely_named_program(tmp_path, "windowed")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    counted: list[aiobpf.WindowCount] = []
    with anyio.fail_after(60):
        pipeline = aiobpf.execve_events() | aiobpf.filter_uid(uid)
        async with pipeline | aiobpf.window_count("comm", every=1) as windows:
            for _ in range(3):
                await anyio.run_process(kernel.setpriv_command(uid, program), check=False)
            while sum(window.total + window.late for window in counted) < 3:
                window = await windows.receive()
                assert wall_now() >= window.end  # bounds are Unix seconds
                counted.append(window)
    in_windows = sum(window.counts.get("windowed", 0) for window in counted)
    assert in_windows + sum(window.late for window in counted) == 3


async def test_a_pushed_down_uid_is_in_the_kernel_set_as_the_program_reads_it() -> None:
    """filter_uid puts the uid in the program's set as a native u32, and nothing else: read back
    from the map itself, the set holds 0x01020304 (in the wrong byte order it held 0x04030201,
    and only a 30 s wait for an event that never came showed it)."""
    import numpy as np

    from aiobpf._kernel.map_io import MapReader

    source = aiobpf.execve_events()
    async with source | aiobpf.filter_uid(0x01020304):
        program = source._program
        assert program is not None
        fd = program.own_map_fd("filter_uids")
        reader = MapReader(fd, "filter_uids", key=np.dtype("=u4"), value=np.dtype("u1"))
        keys, _ = reader.read(delete=False)
    assert keys.tolist() == [0x01020304]
