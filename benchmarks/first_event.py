"""Time to the first event: how long after it starts a tracing tool shows an exec.

Starts ``aiobpf execsnoop`` and bpftrace's execsnoop one-liner in turn, each several times,
while a prober runs a uniquely named program every few milliseconds; the time from the tool's
start to the first line naming that program is its time to the first event (start-up, loading
and attaching, and the first read). Paired in one run: the ratio against bpftrace is what the
target is stated in.

    sudo .venv/bin/python -m benchmarks.first_event [--starts 5] [--every 0.005]
        [--previous OTHER_CHECKOUT/src]

``--previous`` adds the execsnoop of another checkout (its ``src`` put first on PYTHONPATH),
timed in the same turns: the same tool before and after a change, side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._common import machine

TOOLS = {
    "aiobpf execsnoop": [sys.executable, "-m", "aiobpf", "execsnoop"],
    "bpftrace one-liner": [
        "bpftrace",
        "-e",
        'tracepoint:syscalls:sys_enter_execve { printf("%s\\n", str(args->filename)); }',
    ],
}


def _first_event(
    command: list[str],
    probe: Path,
    every: float,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> float:
    """Seconds from starting ``command`` to its first output line naming ``probe``."""
    found = threading.Event()
    start = time.monotonic()
    tool = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, env=env
    )
    seen_at: list[float] = []

    def read() -> None:
        assert tool.stdout is not None
        for line in tool.stdout:
            if probe.name in line and not seen_at:
                seen_at.append(time.monotonic())
                found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while not found.wait(every):  # an exec every `every` seconds until the tool shows one
            subprocess.run([str(probe)], check=True)
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{command[0]} showed no exec within {timeout} s")
    finally:
        tool.terminate()
        tool.wait()
        reader.join()
    return seen_at[0] - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="starts of each tool (5)")
    parser.add_argument("--every", type=float, default=0.005, help="seconds between probe execs")
    parser.add_argument("--previous", type=Path, help="another checkout's src, timed alongside")
    args = parser.parse_args()
    tools: dict[str, tuple[list[str], dict[str, str] | None]] = {
        tool: (command, None) for tool, command in TOOLS.items()
    }
    if args.previous is not None:
        previous = {**os.environ, "PYTHONPATH": str(args.previous.resolve())}
        tools[f"aiobpf execsnoop ({args.previous})"] = (TOOLS["aiobpf execsnoop"], previous)
    missing = [tool for tool, command in TOOLS.items() if shutil.which(command[0]) is None]
    if missing:
        parser.error(f"not installed: {missing} (scripts/setup.sh test installs bpftrace)")
    times: dict[str, list[float]] = {tool: [] for tool in tools}
    with tempfile.TemporaryDirectory() as directory:
        probe = Path(directory) / "first-event-probe"
        shutil.copy(shutil.which("true") or "/bin/true", probe)
        for start in range(args.starts):
            for tool, (command, env) in tools.items():  # in turn: all see the same machine
                seconds = _first_event(command, probe, args.every, env)
                times[tool].append(seconds)
                print(f"  start {start + 1}: {tool:30} {seconds * 1000:7.1f} ms", file=sys.stderr)
    print(f"Machine: {machine()}")
    print(f"Command: sudo .venv/bin/python -m benchmarks.first_event {' '.join(sys.argv[1:])}")
    print(f"Medians of {args.starts} starts each, in turn; a probe exec every {args.every} s.\n")
    print("| tool | first event (median) | min - max | against bpftrace |")
    print("|---|---|---|---|")
    reference = statistics.median(times["bpftrace one-liner"])
    for tool, values in times.items():
        median = statistics.median(values)
        print(
            f"| {tool} | {median * 1000:.0f} ms | {min(values) * 1000:.0f} - "
            f"{max(values) * 1000:.0f} ms | {median / reference:.2f}x |"
        )


if __name__ == "__main__":
    main()
