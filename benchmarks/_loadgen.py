"""Builds and starts the getppid load generator (C when gcc is there, Python otherwise)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_SOURCE = Path(__file__).with_name("loadgen.c")

_PYTHON_FALLBACK = """
import os, sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
sys.stdin.buffer.read(1)
start = time.monotonic()
for i in range(n):
    if rate > 0 and i % 64 == 0:
        while time.monotonic() < start + i / rate:
            pass
    os.getppid()
print(n, f"{time.monotonic() - start:.6f}")
"""


def build() -> list[str]:
    """The command prefix that runs the generator."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return [sys.executable, "-c", _PYTHON_FALLBACK]
    binary = Path(tempfile.gettempdir()) / "aiobpf-loadgen"
    if not binary.exists() or binary.stat().st_mtime < _SOURCE.stat().st_mtime:
        subprocess.run([compiler, "-O2", "-o", str(binary), str(_SOURCE)], check=True)
    return [str(binary)]


def start(command: list[str], calls: int, rate: float, cpu: int) -> subprocess.Popen[bytes]:
    """Starts the generator pinned to ``cpu``, waiting for a byte on stdin to begin."""
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), *command, str(calls), str(rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
