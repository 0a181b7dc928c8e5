"""Window counts of execve calls: in user space over events, or in the kernel, side by side.

An exec storm (vfork + execve of /bin/true, pinned to CPU 1) runs N execs; meanwhile this
process, pinned to CPU 0, counts them by comm in 1-second windows, either with
`execve_events() | window_count("comm", every=1)` (an event per exec through the ring, counted
in Python) or with `execve_window_counts("comm", every=1)` (a kernel hash map drained once per
window). Reported: execs/s offered, the consumer's CPU, and that both counted every exec.

    sudo .venv/bin/python -m benchmarks.window_pushdown [--execs 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import anyio
import anyio.to_thread

import aiobpf
from benchmarks import _loadgen
from benchmarks._common import CONSUMER_CPU, GENERATOR_CPU, machine

#: Each way of counting, with the latency budget of the user-space ones.
MODES: dict[str, Any] = {
    "user space: execve_events, window_count, read at once": 0.0,
    "user space, default (adaptive) latency budget": "auto",
    "user space, 10 ms latency budget": 0.01,
    "kernel: execve_window_counts": None,
}


async def _trial(mode: str, execs: int) -> dict[str, Any]:
    storm = _loadgen.start(_loadgen.build_exec_storm(), execs, None, GENERATOR_CPU)
    counted = 0
    events: aiobpf.programs.ExecveEvents | None = None
    try:
        if mode.startswith("user"):
            events = aiobpf.execve_events(max_latency=MODES[mode])
            await events.open()
            source: Any = events | aiobpf.window_count("comm", every=1)
        else:
            windows = aiobpf.execve_window_counts("comm", every=1)
            await windows.open()
            source = windows
        done = anyio.Event()
        async with anyio.create_task_group() as tasks:
            start = time.monotonic(), time.process_time()

            def run_storm() -> None:
                assert storm.stdin is not None
                storm.stdin.write(b"g")
                storm.stdin.close()
                storm.wait()

            async def count() -> None:
                nonlocal counted
                async for window in source:
                    counted += window.counts.get("true", 0)
                done.set()

            tasks.start_soon(count)
            await anyio.to_thread.run_sync(run_storm)
            wall = time.monotonic() - start[0]
            cpu = time.process_time() - start[1]
            # kernel windows close on the drain clock: let one more drain pass, then end the
            # streams (the user-space window_count flushes its open window at the end)
            await anyio.sleep(1.5)
            await (events.aclose() if events is not None else source.aclose())
            await done.wait()
    finally:
        storm.kill()
        storm.wait()
    assert storm.stdout is not None
    offered, seconds = storm.stdout.read().split()
    return {
        "execs_per_s": int(offered) / float(seconds),
        "cpu_pct": 100 * cpu / wall,
        "counted": counted,
        "execs": int(offered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {CONSUMER_CPU})
    rows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeat):
        for mode in MODES:
            rows[mode].append(anyio.run(_trial, mode, args.execs))
    print(f"Machine: {machine()}")
    print(
        "Command: sudo .venv/bin/python -m benchmarks.window_pushdown "
        f"--execs {args.execs} --repeat {args.repeat}"
    )
    print(f"{args.execs} execs of /bin/true per run; medians of {args.repeat} runs.\n")
    print(
        "| counting | execs/s offered | consumer CPU % | CPU vs user space | every exec counted |"
    )
    print("|---|---|---|---|---|")
    base = statistics.median(r["cpu_pct"] for r in rows[next(iter(MODES))])
    for mode in MODES:
        runs = rows[mode]
        cpu = statistics.median(r["cpu_pct"] for r in runs)
        rate = statistics.median(r["execs_per_s"] for r in runs)
        exact = all(r["counted"] >= r["execs"] for r in runs)
        print(f"| {mode} | {rate:.0f} | {cpu:.1f} | {cpu / base:.2f}x | {exact} |")


if __name__ == "__main__":
    main()
