"""The examples no other test runs, as a user runs them: each started, a known process made
to do what it shows, its line looked for, then Ctrl-C (status 0, everything detached)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import kernel

pytestmark = pytest.mark.usefixtures("bpf")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _started(example: str, *args: str) -> subprocess.Popen[str]:
    """The example, running until it says it traces (its first line)."""
    running = subprocess.Popen(
        [sys.executable, str(EXAMPLES / example), *args],
        stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert running.stdout is not None
    running.stdout.readline()  # attached from here on
    return running


def _lines_until(running: subprocess.Popen[str], wanted: str) -> Iterator[str]:
    assert running.stdout is not None
    for line in running.stdout:
        yield line
        if wanted in line:
            return
    raise AssertionError(f"the example ended before a line with {wanted!r}")


def _stopped(running: subprocess.Popen[str]) -> int:
    running.send_signal(signal.SIGINT)
    try:
        running.communicate(timeout=60)
    finally:
        running.kill()
    return running.returncode


@pytest.mark.parametrize("example", ["execsnoop.py", "hello_world.py"])
def test_an_exec_shows_in_the_exec_examples(example: str, tmp_path: Path) -> None:
    """execsnoop.py shows a uniquely named program's exec by its path; hello_world.py (its own
    ring, and the trace pipe) says hello from its pid, as setpriv execs it."""
    program = kernel.uniquely_named_program(tmp_path, "example-me")
    tmp_path.chmod(0o755)
    for args in ([], ["--trace-pipe"]) if example == "hello_world.py" else ([],):
        running = _started(example, *args)
        try:
            process = subprocess.Popen(kernel.setpriv_command(61404, program))
            process.wait()
            wanted = str(program) if example == "execsnoop.py" else f"-{process.pid}"
            lines = list(_lines_until(running, wanted))
        finally:
            status = _stopped(running)
        assert status in (0, -signal.SIGINT), status
        assert any(wanted in line for line in lines)


def test_the_syscall_router_example_shows_a_process_s_timers() -> None:
    """syscall_router.py --pid: a child's timer_create and timer_delete come through their
    views, as the example labels them."""
    child_code = (
        "import ctypes, sys, time; libc = ctypes.CDLL(None); sys.stdin.readline(); "
        "timer = ctypes.c_void_p(); libc.timer_create(1, None, ctypes.byref(timer)); "
        "libc.timer_delete(timer)"
    )
    child = subprocess.Popen([sys.executable, "-c", child_code], stdin=subprocess.PIPE)
    try:
        running = _started("syscall_router.py", "--pid", str(child.pid))
        try:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.close()
            assert child.wait(timeout=60) == 0
            lines = list(_lines_until(running, "Deleting the timer"))
        finally:
            _stopped(running)
    finally:
        child.kill()
        child.wait()
    assert f"Creating a timer: python (pid {child.pid})\n" in lines
    assert f"Deleting the timer: python (pid {child.pid})\n" in lines
