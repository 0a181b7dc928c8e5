"""Cgroup v2 ids and paths (aiobpf.lowlevel.cgroup_*), against what a BPF program sees: a child
moved into a cgroup the test creates is seen by ``bpf_get_current_cgroup_id()`` with the id of
that cgroup, and the id leads back to its path."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from aiobpf import RingBuffer
from aiobpf.lowlevel import Program, cgroup_id, cgroup_of, cgroup_path, cgroup_root

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


@contextlib.contextmanager
def _new_cgroup() -> Iterator[Path]:
    """A cgroup of the test's own, removed afterwards (once its processes are gone)."""
    path = cgroup_root() / f"aiobpf-test-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_a_program_sees_the_cgroup_a_process_was_moved_into() -> None:
    """The child is moved after the program is attached and before its getppid() call: the
    event carries the new cgroup's id, which names its path, and nothing once it is removed."""
    with _new_cgroup() as cgroup:
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
