"""Exec tracing checked against references nobody here wrote: stress-ng's exec stressor (it
execs through execve and execveat, from threads too, with failing paths) under a fresh uid,
counted at the same time by bpftrace in kernel maps, by `aiobpf execsnoop` (text on asyncio,
JSON on trio) and by `aiobpf top-uids`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from . import kernel
from .test_cli import _start_execsnoop, _stopped_output

pytestmark = pytest.mark.usefixtures("bpf")

UID = 61077

#: Both exec syscalls of one uid, counted at entry, as aiobpf counts them.
REFERENCE = f"""
tracepoint:syscalls:sys_enter_execve /uid == {UID}/ {{ @execve = count(); }}
tracepoint:syscalls:sys_enter_execveat /uid == {UID}/ {{ @execveat = count(); }}
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (scripts/setup.sh test installs it)")
    return path


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_storm_is_counted_exactly_as_bpftrace_counts_it(tmp_path: Path) -> None:
    """Every execve and execveat stress-ng makes is either shown or counted lost by execsnoop
    stopped with SIGINT (seen + lost == bpftrace's count, text and JSON), and top-uids counts
    exactly as many; stress-ng used both syscalls."""
    bpftrace = subprocess.Popen(
        [_tool("bpftrace"), "-f", "json", "-e", REFERENCE],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=_sigint_default,
    )
    tools: list[subprocess.Popen[str]] = [bpftrace]
    try:
        assert bpftrace.stdout is not None
        while "attached_probes" not in (line := bpftrace.stdout.readline()):
            assert line, "bpftrace ended before attaching"
        text = _start_execsnoop("--uid", str(UID), as_json=False, backend="asyncio")
        tools.append(text)
        as_json = _start_execsnoop("--uid", str(UID), as_json=True, backend="trio")
        tools.append(as_json)
        top = subprocess.Popen(
            [sys.executable, "-m", "aiobpf", "top-uids", "--json", "--uid", str(UID)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_sigint_default,
        )
        tools.append(top)
        assert top.stdout is not None
        assert json.loads(top.stdout.readline())["type"] == "counts"  # attached from here on

        tmp_path.chmod(0o777)  # stress-ng works in its current directory
        storm = ["--exec", "2", "--exec-ops", "100", "--timeout", "60", "-q"]
        as_uid = kernel.setpriv_command(UID, _tool("stress-ng"))
        subprocess.run([*as_uid, *storm], cwd=tmp_path, check=True)

        text_lines = _stopped_output(text)
        json_records = [json.loads(line) for line in _stopped_output(as_json)]
        top_records = [json.loads(line) for line in _stopped_output(top)]
        bpftrace.send_signal(signal.SIGINT)
        reference_output, _ = bpftrace.communicate(timeout=60)
    finally:
        for tool in tools:
            tool.kill()
            tool.wait()
    counts: dict[str, int] = {}
    for line in reference_output.splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("type") == "map":
            counts.update(record["data"])
    execve, execveat = counts.get("@execve", 0), counts.get("@execveat", 0)
    assert execve > 0
    assert execveat > 0
    reference = execve + execveat

    *events, summary = text_lines
    exec_lines, lost_lines, others = [], [], []
    for line in events:
        if re.match(r"\d\d:\d\d:\d\d ", line):
            exec_lines.append(line)
        elif re.fullmatch(r"-- \d+ lost", line):
            lost_lines.append(line)
        else:
            others.append(line)
    assert others == []  # every line an exec or a loss
    seen, lost = (int(word) for word in summary.split()[1:5:3])
    assert summary == f"-- {seen} execs seen, {lost} lost"
    assert len(exec_lines) == seen
    assert sum(int(line.split()[1]) for line in lost_lines) == lost
    assert seen + lost == reference

    *events_json, summary_json = json_records
    shown = [record for record in events_json if record["type"] == "exec"]
    told_lost = sum(record["count"] for record in events_json if record["type"] == "lost")
    assert summary_json == {"schema": 1, "type": "summary", "seen": len(shown), "lost": told_lost}
    assert len(shown) + told_lost == reference
    if told_lost == 0:
        by_syscall = [record["syscall"] for record in shown]
        assert (by_syscall.count("execve"), by_syscall.count("execveat")) == (execve, execveat)

    final = top_records[-1]
    assert final["type"] == "summary"
    assert final["counts"][str(UID)] + final["lost"] == reference
