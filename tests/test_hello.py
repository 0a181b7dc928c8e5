"""Hello world on the real kernel: on the trace pipe and on the structured log channel."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import aiobpf

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

UID = 61021


async def test_hello_line_of_a_known_process_on_both_channels(tmp_path: Path) -> None:
    """setpriv running a program as a fresh uid: its execve shows "Hello World!" with its pid,
    uid and comm in the log ring, and with its pid on the trace pipe."""
    program = kernel.uniquely_named_program(tmp_path, "hello-me")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    with anyio.fail_after(30):
        async with aiobpf.hello_world() as logs:
            async with aiobpf.trace_pipe(keep=lambda line: line.message == "Hello World!") as pipe:
                process = await anyio.open_process(kernel.setpriv_command(UID, program))
                await process.wait()
                async for line in pipe:
                    if line.pid == process.pid:
                        break
            async for record in logs:
                if record.pid == process.pid and record.uid == UID:
                    break
    assert process.returncode == 0
    assert line.function == "bpf_trace_printk"
    assert record.text == "Hello World!"
    assert record.level == "info"
    # sys_enter_execve runs before the exec takes effect: the caller is still setpriv
    assert record.comm == "setpriv"
    assert logs.stats.dropped == 0


async def test_a_fresh_trace_pipe_leaves_out_what_the_buffer_held_before() -> None:
    """Lines written before a fresh pipe opens (here through trace_marker, so that nothing
    reads them first) are history: left out and counted stale; lines after it come."""
    import secrets

    marker = kernel.tracefs() / "trace_marker"
    token = secrets.token_hex(6)
    for number in range(3):
        marker.write_text(f"old {token} {number}")
    with anyio.fail_after(30):
        async with aiobpf.trace_pipe(keep=lambda line: token in line.message, fresh=True) as pipe:
            marker.write_text(f"new {token}")
            line = await pipe.receive()
            assert line.message.strip() == f"new {token}"
            assert pipe.stats.stale >= 3  # ours, and whatever else the buffer held
            assert pipe.stats.received == 1
