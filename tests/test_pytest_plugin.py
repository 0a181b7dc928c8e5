"""pytest --aiobpf-spawned on the real kernel: a test suite of its own, run as a user runs
it, whose tests spawn known processes (a failing one, a killed one, a double-forked daemon
below a shell): each is reported under the test that spawned it, with how it ended."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("bpf")

SUITE = r"""
import os, signal, subprocess, time

def test_quiet():
    assert True

def _ended(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True

def test_spawns_a_failure_and_a_daemon(tmp_path):
    subprocess.run(["/bin/sh", "-c", "exit 3"])
    # a daemon: the shell forks a child that forks again and leaves; the grandchild lives on
    pidfile = tmp_path / "daemon.pid"
    subprocess.run(["/bin/sh", "-c", f"( /bin/sleep 0.2 & echo $! > {pidfile} ) ; exit 0"])
    pid = int(pidfile.read_text())
    while not _ended(pid):  # the daemon's own end, within this test (the kernel's state)
        time.sleep(0.01)

def test_kills_one():
    process = subprocess.Popen(["/bin/sleep", "30"])
    process.send_signal(signal.SIGKILL)
    process.wait()
"""


def test_each_test_s_processes_are_reported_under_it(tmp_path: Path) -> None:
    suite = tmp_path / "test_spawning.py"
    suite.write_text(SUITE)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--aiobpf-spawned",  # the plugin: an entry point
         "-q", "-p", "no:cacheprovider", str(suite)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.stdout.split("processes the tests spawned (aiobpf)")[1]
    sections: dict[str, list[str]] = {}
    current = ""
    for line in report.splitlines():
        if line.startswith("test_spawning.py::"):
            current = line.split(":")[2]
            sections[current] = []
        elif line.startswith("  ") and current:
            sections[current].append(line.split(None, 1)[1])
    assert set(sections) == {"test_spawns_a_failure_and_a_daemon", "test_kills_one"}
    assert "test_spawning.py::test_kills_one: 1 processes, 1 failed" in report
    assert sections["test_kills_one"] == ["/bin/sleep -> SIGKILL"]
    spawned = sections["test_spawns_a_failure_and_a_daemon"]
    # the shell, the shell that forked the subshell, the subshell (no exec), the daemon
    assert spawned == [
        "/bin/sh -> exit 3",
        "/bin/sh -> exit 0",
        "(forked, no exec) -> exit 0",
        "/bin/sleep -> exit 0",
    ]
    assert "test_spawning.py::test_spawns_a_failure_and_a_daemon: 4 processes, 1 failed" in report
    assert "test_quiet" not in report
