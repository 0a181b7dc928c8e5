"""What tracing an exec storm costs the tracer, tool against tool: `aiobpf execsnoop --json`
against libbpf-tools' C execsnoop (CO-RE, the floor) and a bpftrace one-liner, side by side.

    python -m benchmarks.exec_tools [--execs 3000] [--rate 1400] [--turns 3] [--previous SRC]

Each turn starts every tool in an order of its own (shuffled, seeded by the turn), lets it
attach (its first line), runs the exec storm (execstorm.c: vfork + exec of /bin/true, as fast
as it goes, on the other CPU), waits until the tool has printed every exec, and reads the tool's
own CPU time (every thread's, /proc/PID/task/*/schedstat) across the storm: its cost per
exec. The BPF programs' own time is charged to the exec'ing processes, alike for every tool.
Output goes to a pipe the benchmark drains (as to a terminal or a file, the tool formats every
line). The storm is paced (``--rate``, 1,400 execs a second by default, as a busy build
machine; 0 for as fast as it goes).
``--previous SRC`` adds aiobpf from another checkout's ``src``, in the same turns.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import _loadgen
from ._common import CONSUMER_CPU, GENERATOR_CPU, machine

BPFTRACE = 'tracepoint:syscalls:sys_enter_execve { printf("%d %s\\n", pid, str(args->filename)); }'
LIBBPF_EXECSNOOP = Path("/usr/sbin/execsnoop")


def _tools(previous: str | None) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    aiobpf = [sys.executable, "-m", "aiobpf", "execsnoop", "--json"]
    tools: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "aiobpf execsnoop --json": (aiobpf, None),
        "aiobpf execsnoop --json --no-redact": ([*aiobpf, "--no-redact"], None),
    }
    if previous is not None:
        tools["aiobpf --json (previous)"] = (aiobpf, {**os.environ, "PYTHONPATH": previous})
    if LIBBPF_EXECSNOOP.exists():
        tools["libbpf-tools execsnoop (C)"] = (["stdbuf", "-oL", str(LIBBPF_EXECSNOOP)], None)
    if shutil.which("bpftrace"):
        tools["bpftrace one-liner"] = (["bpftrace", "-e", BPFTRACE], None)
    return tools


def _cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, every thread's, in nanoseconds' resolution (schedstat:
    /proc/PID/stat counts clock ticks, 10 ms, too coarse for a storm of a few thousand)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def _trial(command: list[str], env: dict[str, str] | None, execs: int, rate: float) -> float:
    """The tool's CPU seconds per exec across one storm of ``execs``."""
    tool = subprocess.Popen(
        ["taskset", "-c", str(CONSUMER_CPU), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert tool.stdout is not None
    assert tool.stderr is not None
    seen = 0
    done = threading.Event()
    ready = threading.Event()

    def drain() -> None:
        nonlocal seen
        assert tool.stdout is not None
        for line in tool.stdout:
            ready.set()  # a header, or bpftrace's "Attaching"
            if "/true" in line:
                seen += 1
                if seen >= execs:
                    done.set()
        ready.set()

    def said() -> None:
        assert tool.stderr is not None
        for line in tool.stderr:
            if "tracing" in line:  # aiobpf --json says it on stderr once attached
                ready.set()

    readers = [threading.Thread(target=target, daemon=True) for target in (drain, said)]
    for reader in readers:
        reader.start()
    try:
        if not ready.wait(60):
            raise RuntimeError(f"{command[:3]} did not start")
        time.sleep(0.2)  # let a header's tool reach its read loop (libbpf-tools prints first)
        storm = _loadgen.start(_loadgen.build_exec_storm(), execs, rate or None, GENERATOR_CPU)
        before = _cpu_seconds(tool.pid)
        assert storm.stdin is not None
        storm.stdin.write(b"x")
        storm.stdin.close()
        storm.wait()
        if not done.wait(60):
            raise RuntimeError(f"{command[:3]} printed {seen} of {execs} execs")
        return (_cpu_seconds(tool.pid) - before) / execs
    finally:
        tool.terminate()
        tool.wait()
        for reader in readers:
            reader.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=3000, help="execs per storm (3000)")
    parser.add_argument(
        "--rate", type=float, default=1400, help="execs a second (1400; 0: unpaced)"
    )
    parser.add_argument("--turns", type=int, default=3, help="turns of every tool (3)")
    parser.add_argument("--previous", help="another checkout's src, measured in the same turns")
    args = parser.parse_args()
    tools = _tools(args.previous)
    costs: dict[str, list[float]] = {name: [] for name in tools}
    for turn in range(args.turns):
        order = list(tools)
        random.Random(turn).shuffle(order)
        for name in order:
            command, env = tools[name]
            costs[name].append(_trial(command, env, args.execs, args.rate))
    pace = f"{args.rate:g} a second" if args.rate else "unpaced"
    print(f"# {machine()}; {args.execs} execs of /bin/true per storm ({pace}), {args.turns} turns")
    reference = costs.get("libbpf-tools execsnoop (C)")
    floor = statistics.median(reference) if reference else None
    print(f"{'tool':<40} {'µs/exec (median)':>17} {'min':>7} {'max':>7} {'x C':>6}")
    for name, values in costs.items():
        median = statistics.median(values)
        ratio = f"{median / floor:.2f}" if floor else "-"
        print(
            f"{name:<40} {median * 1e6:>17.1f} {min(values) * 1e6:>7.1f} "
            f"{max(values) * 1e6:>7.1f} {ratio:>6}"
        )


if __name__ == "__main__":
    main()
