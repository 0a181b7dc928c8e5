"""Uprobes on the real kernel (it has no kprobes, but uprobes work): Program.attach_uprobe with
its errors, scoped to a process, and examples/bashreadline.py against a bash the test types
into."""

from __future__ import annotations

import json
import os
import pty
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import aiobpf
from aiobpf.lowlevel import Program

from . import kernel

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("bpf")

COUNTER = r"""
#include <uapi/linux/ptrace.h>
struct call { u32 pid; u32 tid; };
BPF_RINGBUF_OUTPUT(calls, 8);

int on_call(struct pt_regs *ctx)
{
    struct call *call = calls.ringbuf_reserve(sizeof(struct call));
    if (!call)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    call->pid = id >> 32;
    call->tid = id;
    calls.ringbuf_submit(call, 0);
    return 0;
}
"""


@pytest.mark.anyio
async def test_a_uprobe_on_a_library_function_sees_each_call_of_one_process() -> None:
    """A uprobe on libc's getppid (the library named as "c"), scoped to this process: five
    calls from Python come as exactly five records with this pid, whatever other processes
    call meanwhile."""
    program = Program.compile(COUNTER)
    try:
        program.attach_uprobe("c", "getppid", "on_call", pid=os.getpid())
    except BaseException:
        program.close()
        raise
    async with aiobpf.RingBuffer.from_bcc(program.bpf, "calls", owned=[program.close]) as ring:
        for _ in range(5):
            os.getppid()
        with anyio.fail_after(10):
            batches = [await ring.receive_batch()]
            while sum(map(len, batches)) < 5:
                batches.append(await ring.receive_batch())
        assert np.concatenate(batches)["pid"].tolist() == [os.getpid()] * 5
        assert len(ring.drain()) == 0  # nothing beyond the five


@pytest.mark.parametrize(
    ("binary", "symbol", "message"),
    [
        ("/bin/bash", "no_such_function_in_bash", "has no symbol 'no_such_function_in_bash'"),
        ("/no/such/binary", "main", "no binary '/no/such/binary'"),
        ("no-such-command-or-library", "main", "no binary 'no-such-command-or-library' on PATH"),
    ],
)
def test_a_missing_binary_or_symbol_is_an_unknown_symbol_error(
    binary: str, symbol: str, message: str
) -> None:
    """The error names what is missing; nothing is attached (the bpf fixture checks)."""
    with Program.compile(COUNTER) as program:
        with pytest.raises(aiobpf.UnknownSymbolError, match=message) as raised:
            program.attach_uprobe(binary, symbol, "on_call")
        assert isinstance(raised.value, LookupError)


@pytest.mark.anyio
async def test_bashreadline_sees_a_line_typed_into_bash(tmp_path: Path) -> None:
    """examples/bashreadline.py: a line typed into an interactive bash started by the test
    comes out with that bash's pid, uid 0, comm "bash" and the exact text; Ctrl-C ends it with
    status 0 and unloads its program."""
    before = kernel.loaded_program_ids()
    token = f"echo aiobpf-{secrets.token_hex(6)}"
    args = [sys.executable, str(ROOT / "examples" / "bashreadline.py"), "--json"]
    with anyio.fail_after(60):
        async with await anyio.open_process(args) as example:
            assert example.stdout is not None
            lines = BufferedByteReceiveStream(example.stdout)
            assert (await _next_json(lines))["type"] == "ready"  # attached from here on
            bash, master = _interactive_bash(tmp_path)
            try:
                os.write(master, f"{token}\nexit\n".encode())
                event = await _next_json(lines)
                while event.get("pid") != bash.pid:  # another bash on the machine
                    event = await _next_json(lines)
            finally:
                bash.kill()
                bash.wait()
                os.close(master)
            example.send_signal(signal.SIGINT)
            await example.wait()
            assert example.returncode == 0
    assert event == {"type": "line", "pid": bash.pid, "uid": 0, "comm": "bash", "line": token}
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - before) == set()


def _interactive_bash(home: Path) -> tuple[subprocess.Popen[bytes], int]:
    """bash reading from a terminal (readline is used only then), and the terminal's master."""
    master, slave = pty.openpty()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "TERM": "dumb", "PS1": "$ "}
    bash = subprocess.Popen(
        ["/bin/bash", "--norc", "--noprofile", "-i"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    return bash, master


async def _next_json(lines: BufferedByteReceiveStream) -> dict[str, Any]:
    return dict(json.loads(await lines.receive_until(b"\n", 1 << 20)))
