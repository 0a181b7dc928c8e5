"""Builds and starts the load generators (C when gcc is there, Python otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_SOURCE = Path(__file__).with_name("loadgen.c")

_PYTHON_FALLBACK = """
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the process that started us
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


def _compiled(source: Path) -> list[str] | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    binary = Path(tempfile.gettempdir()) / f"aiobpf-{source.stem}"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        # built beside it and renamed over it: a generator running the old one keeps running
        fresh = binary.with_name(f"{binary.name}.{os.getpid()}")
        subprocess.run([compiler, "-O2", "-o", str(fresh), str(source)], check=True)
        fresh.rename(binary)
    return [str(binary)]


def build() -> list[str]:
    """The command prefix that runs the getppid generator."""
    return _compiled(_SOURCE) or [sys.executable, "-c", _PYTHON_FALLBACK]


_EXEC_FALLBACK = """
import ctypes, os, subprocess, sys, time
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the process that started us
n, rate = int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
sys.stdin.buffer.read(1)
start = time.monotonic()
for i in range(n):
    if rate > 0:
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
    subprocess.run(["/bin/true"], env={})
print(n, f"{time.monotonic() - start:.6f}")
"""


def build_exec_storm() -> list[str]:
    """The command prefix that runs the exec storm."""
    return _compiled(_SOURCE.with_name("execstorm.c")) or [sys.executable, "-c", _EXEC_FALLBACK]


def start(command: list[str], calls: int, rate: float | None, cpu: int) -> subprocess.Popen[bytes]:
    """Starts a generator pinned to ``cpu``, waiting for a byte on stdin to begin."""
    rate_args = [] if rate is None else [str(rate)]
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), *command, str(calls), *rate_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
