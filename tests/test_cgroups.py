"""Cgroup v2 ids and paths (aiobpf.lowlevel.cgroup_*), against what a BPF program sees: a child
moved into a cgroup the test creates is seen by ``bpf_get_current_cgroup_id()`` with the id of
that cgroup, and the id leads back to its path. ``filter_cgroup`` keeps the execs of a cgroup
the test creates and of the cgroups below it, in the kernel and in user space alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import numpy as np
import pytest

import aiobpf
from aiobpf import RingBuffer
from aiobpf.lowlevel import Program, cgroup_id, cgroup_of, cgroup_path

from . import kernel

PROGRAM = r"""
struct seen { u32 pid; u32 pad; u64 cgroup; };
BPF_RINGBUF_OUTPUT(events, 8);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    struct seen *seen = events.ringbuf_reserve(sizeof(struct seen));
    if (!seen)
        return 0;
    seen->pid = bpf_get_current_pid_tgid() >> 32;
    seen->pad = 0;
    seen->cgroup = bpf_get_current_cgroup_id();
    events.ringbuf_submit(seen, 0);
    return 0;
}
"""

CHILD = """
import os, sys
sys.stdin.readline()
os.getppid()
print("called", flush=True)
sys.stdin.readline()
"""


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_a_program_sees_the_cgroup_a_process_was_moved_into() -> None:
    """The child is moved after the program is attached and before its getppid() call: the
    event carries the new cgroup's id, which names its path, and nothing once it is removed."""
    with kernel.new_cgroup() as cgroup:
        async with await anyio.open_process([sys.executable, "-c", CHILD]) as child:
            try:
                program = Program.compile(PROGRAM, cflags=[f"-DTARGET_TGID={child.pid}"])
                async with RingBuffer.from_bcc(
                    program.bpf, "events", owned=[program.close]
                ) as ring:
                    _move(child.pid, cgroup)
                    assert child.stdin is not None
                    await child.stdin.send(b"go\n")
                    with anyio.fail_after(10):
                        seen = await ring.receive()
                relative = "/" + cgroup.name
                assert (seen.pid, seen.cgroup) == (child.pid, cgroup_id(cgroup))
                assert cgroup_path(seen.cgroup) == relative
                assert cgroup_of(child.pid) == relative
                assert cgroup_id(relative) == cgroup_id(cgroup.name) == seen.cgroup
            finally:
                child.kill()
                await child.wait()
    assert cgroup_path(seen.cgroup) is None  # removed: the id names nothing any more


def _move(pid: int, cgroup: Path) -> None:
    (cgroup / "cgroup.procs").write_text(f"{pid}\n")


def test_the_root_and_a_missing_cgroup() -> None:
    """The root is "/"; a path that is not a cgroup is a FileNotFoundError naming it."""
    assert cgroup_path(cgroup_id("/")) == "/"
    with pytest.raises(FileNotFoundError, match="no cgroup 'no-such-cgroup'"):
        cgroup_id("no-such-cgroup")
    assert cgroup_of(os.getpid()).startswith("/")


async def _exec_in(cgroup: Path | None, program: Path) -> None:
    command = [str(program)] if cgroup is None else kernel.in_cgroup_command(cgroup, program)
    await anyio.run_process(command)


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_filter_cgroup_keeps_a_cgroup_and_those_below_it_in_the_kernel(
    tmp_path: Path,
) -> None:
    """Execs outside the cgroup, in it and in a cgroup below it, run one after the other: the
    ring, in order, holds only the last two, with their cgroup ids; the kernel dropped the
    others, since nothing else was ever received."""
    programs = {name: kernel.uniquely_named_program(tmp_path, name) for name in "abc"}
    with kernel.new_cgroup() as top, kernel.new_cgroup(top) as inner:
        source = aiobpf.execve_events(max_latency=0)
        async with source | aiobpf.filter_cgroup(top.name) as events:
            await _exec_in(None, programs["a"])
            await _exec_in(top, programs["b"])
            await _exec_in(inner, programs["c"])
            with anyio.fail_after(10):
                seen = [await events.receive(), await events.receive()]
            assert source.stats.received == 2
        assert [(event.comm, event.cgroup_id) for event in seen] == [
            ("b", cgroup_id(top)),
            ("c", cgroup_id(inner)),
        ]
        assert [cgroup_path(event.cgroup_id) for event in seen] == [
            f"/{top.name}",
            f"/{top.name}/{inner.name}",
        ]


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_two_cgroup_filters_keep_where_their_trees_meet(tmp_path: Path) -> None:
    """Filtering on a cgroup, then on one below it, keeps the lower one's execs: not the
    intersection of the two id sets, which is empty."""
    programs = {name: kernel.uniquely_named_program(tmp_path, name) for name in "bc"}
    with kernel.new_cgroup() as top, kernel.new_cgroup(top) as inner:
        source = aiobpf.execve_events(max_latency=0)
        async with source | aiobpf.filter_cgroup(top) | aiobpf.filter_cgroup(inner) as events:
            await _exec_in(top, programs["b"])
            await _exec_in(inner, programs["c"])
            with anyio.fail_after(10):
                seen = await events.receive()
            assert source.stats.received == 1
        assert (seen.comm, seen.cgroup_id) == ("c", cgroup_id(inner))


async def _stream(items: list[Any]) -> Any:
    for item in items:
        yield item


@pytest.mark.anyio
@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")
async def test_filter_cgroup_in_user_space_on_events_and_batches() -> None:
    """On a stream that cannot filter in the kernel, the same cgroups pass: the cgroup, those
    below it (created after the filter was made), not its parent's other children."""
    with kernel.new_cgroup() as top, kernel.new_cgroup() as other:
        keep = aiobpf.filter_cgroup(str(top))
        with kernel.new_cgroup(top) as inner:
            ids = [cgroup_id(top), cgroup_id(inner), cgroup_id(other), cgroup_id("/")]
            events = [SimpleNamespace(cgroup_id=number) for number in ids]
            kept = [event.cgroup_id async for event in keep(_stream(events))]
            assert kept == ids[:2]
            batch = np.array([(number,) for number in ids], dtype=[("cgroup_id", "<u8")])
            batches = [rows async for rows in keep(_stream([batch]))]
            assert [rows["cgroup_id"].tolist() for rows in batches] == [ids[:2]]


@pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")
def test_filter_cgroup_refuses_what_is_no_cgroup() -> None:
    """A path or an id with no cgroup is a FileNotFoundError at the call, naming it."""
    with pytest.raises(FileNotFoundError, match="no cgroup 'no-such-cgroup'"):
        aiobpf.filter_cgroup("no-such-cgroup")
    with pytest.raises(FileNotFoundError, match="no cgroup has id 12345678901"):
        aiobpf.filter_cgroup(12345678901)
    with pytest.raises(TypeError, match="a cgroup is a path or an id"):
        aiobpf.filter_cgroup([1.5])  # type: ignore[list-item]
