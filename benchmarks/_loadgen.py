"""Builds and starts the load generators (C when gcc is there, Python otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_SOURCE = Path(__file__).with_name("loadgen.c")

#: How a paced generator spaces its calls (see loadgen.c): kept every 64 calls ("burst"), every
#: call ("even"), or exponential gaps ("poisson": independent arrivals).
PATTERNS = ("burst", "even", "poisson")

_PYTHON_FALLBACK = """
import ctypes, os, random, sys, time
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the process that started us
n, rate = int(sys.argv[1]), float(sys.argv[2])
pattern = sys.argv[3] if len(sys.argv) > 3 else "burst"
gaps = random.Random(1)
sys.stdin.buffer.read(1)
start = due = time.monotonic()
for i in range(n):
    if rate > 0:
        due = due + gaps.expovariate(rate) if pattern == "poisson" else start + i / rate
        if pattern != "burst" or i % 64 == 0:
            while time.monotonic() < due:
                pass
    os.getppid()
print(n, f"{time.monotonic() - start:.6f}")
"""


def _compiled(source: Path, *libraries: str) -> list[str] | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    binary = Path(tempfile.gettempdir()) / f"aiobpf-{source.stem}"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        # built beside it and renamed over it: a generator running the old one keeps running
        fresh = binary.with_name(f"{binary.name}.{os.getpid()}")
        command = [compiler, "-O2", "-o", str(fresh), str(source), *libraries]
        if subprocess.run(command, capture_output=True).returncode != 0:
            return None
        fresh.rename(binary)
    return [str(binary)]


def build() -> list[str]:
    """The command prefix that runs the getppid generator."""
    return _compiled(_SOURCE, "-lm", "-lpthread") or [sys.executable, "-c", _PYTHON_FALLBACK]


def build_ring_poller() -> list[str] | None:
    """The command prefix of the C libbpf ring consumer (ringpoll.c); None where it cannot be
    built (no compiler, or no libbpf-dev: scripts/setup.sh installs it)."""
    return _compiled(_SOURCE.with_name("ringpoll.c"), "-lbpf")


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


def start(
    command: list[str],
    calls: int,
    rate: float | None,
    cpu: int,
    pattern: str = "burst",
    sources: int = 1,
) -> subprocess.Popen[bytes]:
    """Starts a generator pinned to ``cpu``, waiting for a byte on stdin to begin; a paced one
    spaces its calls by ``pattern`` (one of PATTERNS), split between ``sources`` threads with
    arrivals of their own (the C generator only)."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    if sources != 1 and command[0] == sys.executable:
        raise ValueError("several sources need the C generator: install gcc")
    rate_args = [] if rate is None else [str(rate)]
    if rate is not None and (pattern != "burst" or sources != 1):
        rate_args += [pattern] + ([str(sources)] if sources != 1 else [])
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), *command, str(calls), *rate_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
