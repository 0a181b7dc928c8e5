"""The aiobpf command and the examples, run as a user would run them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from . import kernel

ROOT = Path(__file__).resolve().parent.parent
UID = 61011


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiobpf", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ["top-uids", "--top", "0"],
        ["top-uids", "--interval", "-1"],
        ["execsnoop", "--uid", "nobody"],
        ["execsnoop", "--max-latency", "0.01", "--busy-poll", "0.01"],
        ["execsnoop", "--busy-poll", "-1"],
        ["syscalls", "--pid", "x"],
        ["no-such-tool"],
        [],
    ],
)
def test_bad_arguments_are_a_usage_error_not_a_traceback(args: list[str]) -> None:
    """Bad arguments print usage and exit 2, with no traceback."""
    result = _run(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_tools() -> None:
    """--help names every tool; the installed script is the same command."""
    result = _run("--help")
    assert result.returncode == 0
    for tool in ("execsnoop", "top-uids", "hello"):
        assert tool in result.stdout
    script = Path(sys.executable).with_name("aiobpf")
    assert script.exists()
    assert subprocess.run([str(script), "--help"], capture_output=True).returncode == 0


@pytest.mark.usefixtures("bpf")
def test_the_demo_shows_its_own_execs() -> None:
    """`make demo`'s script: the header once tracing, then the commands it runs itself (their
    comm and filename), then the tally; it ends on time with status 0."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AIOBPF_DEMO_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["TIME", "UID", "PID", "PPID", "RET", "COMM", "FILENAME"]
    seen = {tuple(line.split()[5:7]) for line in lines[1:-1]}
    for command in ("uname", "id", "hostname"):
        assert (command, f"/usr/bin/{command}") in seen, lines
    assert re.fullmatch(r"-- \d+ execs seen, 0 lost \(ring full\)", lines[-1]), lines


async def _lines(process: Process) -> BufferedByteReceiveStream:
    assert process.stdout is not None
    return BufferedByteReceiveStream(process.stdout)


async def _json_until(stream: BufferedByteReceiveStream, done: Any) -> dict[str, Any]:
    while True:
        line = json.loads(await stream.receive_until(b"\n", 1 << 20))
        if done(line):
            return dict(line)


async def _stop(process: Process) -> str:
    process.send_signal(signal.SIGINT)
    await process.wait()
    assert process.stderr is not None
    return (await process.stderr.receive(1 << 20)).decode() if process.returncode else ""


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize(
    "command",
    [["-m", "aiobpf", "top-uids"], [str(ROOT / "examples" / "top_uids.py")]],
    ids=["aiobpf top-uids", "examples/top_uids.py"],
)
async def test_top_uids_json_counts_exactly_the_execs_of_a_fresh_uid(command: list[str]) -> None:
    """--json prints one {"time", "counts"} object per interval; N execs under a fresh uid
    show as exactly N; Ctrl-C exits 0 with no traceback."""
    args = [sys.executable, *command, "--json", "--interval", "0.2", "--uid", str(UID)]
    with anyio.fail_after(60):
        async with await anyio.open_process(args) as process:
            stream = await _lines(process)
            first = await _json_until(stream, lambda line: True)  # attached from here on
            assert set(first) == {"time", "counts"}
            assert isinstance(first["time"], float)
            for _ in range(3):
                await anyio.run_process(kernel.setpriv_command(UID, "/bin/true"))
            last = await _json_until(stream, lambda line: line["counts"].get(str(UID), 0) >= 3)
            error = await _stop(process)
    assert last["counts"] == {str(UID): 3}
    assert process.returncode == 0, error


@pytest.mark.usefixtures("bpf")
def test_duration_exits_zero_on_its_own() -> None:
    """--duration S ends the tool after S seconds with status 0."""
    result = _run("top-uids", "--duration", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_execsnoop_json_reports_a_known_program(tmp_path: Path) -> None:
    """execsnoop --json prints the documented keys with the exact pid, uid and filename."""
    program = kernel.uniquely_named_program(tmp_path, "snoop-me")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    args = [sys.executable, "-m", "aiobpf", "execsnoop", "--json", "--uid", str(UID)]
    args += ["--max-latency", "0.01"]  # the budget only delays the lines
    with anyio.fail_after(60):
        async with await anyio.open_process(args) as process:
            stream = await _lines(process)
            async with anyio.create_task_group() as tasks:

                async def run_until_seen() -> None:
                    while True:  # the tool prints nothing until it is attached and sees an exec
                        await anyio.run_process(kernel.setpriv_command(UID, program))
                        await anyio.sleep(0.1)

                tasks.start_soon(run_until_seen)
                line = await _json_until(stream, lambda line: line["filename"] == str(program))
                tasks.cancel_scope.cancel()
            error = await _stop(process)
    assert set(line) == {"time", "uid", "pid", "ppid", "comm", "filename", "retval"}
    assert (line["uid"], line["comm"], line["retval"]) == (UID, "snoop-me", 0)
    assert process.returncode == 0, error


GETPPID_CHILD = """
import os, sys
sys.stdin.readline()
for _ in range(25):
    os.getppid()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_syscalls_json_counts_a_process_exactly() -> None:
    """`aiobpf syscalls --pid P --json` counts P's 25 getppid calls exactly, over its windows."""
    with anyio.fail_after(60):
        async with await anyio.open_process([sys.executable, "-c", GETPPID_CHILD]) as child:
            args = [sys.executable, "-m", "aiobpf", "syscalls", "--json", "--interval", "0.2"]
            async with await anyio.open_process([*args, "--pid", str(child.pid)]) as tool:
                stream = await _lines(tool)
                await _json_until(stream, lambda line: True)  # attached from here on
                assert child.stdin is not None
                assert child.stdout is not None
                await child.stdin.send(b"go\n")
                await child.stdout.receive()  # "done": all 25 calls were made
                seen = 0

                def counted(line: dict[str, Any]) -> bool:
                    nonlocal seen
                    seen += int(line["counts"].get("getppid", 0))
                    return seen >= 25

                await _json_until(stream, counted)
                last = await _json_until(stream, lambda line: True)  # one more window
                seen += last["counts"].get("getppid", 0)
                error = await _stop(tool)
            await child.stdin.send(b"bye\n")
    assert seen == 25
    assert tool.returncode == 0, error
