"""The soak, short: the whole pipeline under 50 k events/s for 30 s (the long run is
`python -m benchmarks.soak --duration 600`, results in RELIABILITY.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.usefixtures("bpf")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_pipeline_soak_30_seconds(backend: str) -> None:
    """execve + syscall sources -> merge -> route -> window counts at 50 k events/s: bounded
    memory, constant fds, and every event produced is received and counted in a window."""
    command = [sys.executable, "-m", "benchmarks.soak", "--duration", "30", "--backend", backend]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    failed = [name for name, passed in report["checks"].items() if not passed]
    assert result.returncode == 0, (failed, report, result.stderr[-2000:])
    assert all(report["checks"].values())
    assert report["syscall_events"]["produced"] == 30 * 50_000
    # drops are allowed (a stalled machine overflows the ring), but every one is counted
    events = report["syscall_events"]
    assert events["received"] + events["dropped"] == events["produced"]
