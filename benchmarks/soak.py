"""Soak: a whole pipeline under steady load for a long time; memory, fds and accounting.

A paced generator makes --rate getppid() calls a second and a loop runs /bin/true every 50 ms.
The pipeline: syscall events of the generator and execve events (uid 0, filtered in the kernel)
merged, routed by kind into two views, each counted in 1-second event-time windows. Every second
it samples the process's RSS and open fds. At the end it checks that the RSS stayed bounded
(the last quarter's median against the end of the warm-up; the least-squares slope is reported
too), that the fd count stayed constant, and that every count is exact: produced == received +
dropped (+ unread at close) for both kernel sources, and every event received was counted in
exactly one window.

    sudo .venv/bin/python -m benchmarks.soak [--duration 600] [--rate 50000] [--backend trio]

Prints one JSON object; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from typing import Any

import anyio

import aiobpf
from aiobpf.operators import WindowCount
from benchmarks import _loadgen
from benchmarks._common import CONSUMER_CPU, GENERATOR_CPU, LOOPS, machine, run_on


def _rss_mib() -> float:
    pages = int(open("/proc/self/statm").read().split()[1])  # noqa: SIM115 -- one read
    return pages * resource.getpagesize() / 2**20


def _fds() -> int:
    """Open fds, less the pipes and pidfds of the /bin/true runs that come and go."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += not (target.startswith("pipe:") or target == "anon_inode:[pidfd]")
    return count


def _slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 3:
        return 0.0
    times, values = zip(*samples, strict=True)
    return statistics.linear_regression(times, values).slope * 60


def _accounted(stats: aiobpf.RingStats) -> int:
    """Every record a closed source saw, however it ended."""
    return stats.received + stats.pending + stats.unread + (stats.dropped or 0) + stats.malformed


async def _count(windows: Any, totals: dict[str, int], name: str) -> None:
    async for window in windows:
        assert isinstance(window, WindowCount)
        totals[name] += window.total + window.late


async def soak(duration: float, rate: int) -> dict[str, Any]:
    os.sched_setaffinity(0, {CONSUMER_CPU})
    calls = int(duration * rate)
    generator = _loadgen.start(_loadgen.build(), calls, rate, GENERATOR_CPU)
    samples: list[tuple[float, float]] = []
    fds: list[int] = []
    counted = {"syscall": 0, "execve": 0}
    try:
        syscalls = aiobpf.syscall_events(
            syscalls=["getppid"], tgids=[generator.pid], max_latency=0.001, ring_size=1 << 22
        )
        execs = aiobpf.execve_events() | aiobpf.filter_uid(0)
        async with syscalls, execs:
            assert isinstance(execs, aiobpf.programs.ExecveEvents)
            start = time.monotonic()
            async with anyio.create_task_group() as tasks, aiobpf.merge(syscalls, execs) as merged:
                router = aiobpf.route(merged, key=lambda event: type(event).__name__)
                async with router:
                    by_name = router.view("SyscallEvent") | aiobpf.window_count("name", every=1)
                    by_comm = router.view("ExecveEvent") | aiobpf.window_count("comm", every=1)
                    tasks.start_soon(_count, by_name, counted, "syscall")
                    tasks.start_soon(_count, by_comm, counted, "execve")
                    exec_loop = anyio.CancelScope()

                    async def run_execs() -> None:
                        with exec_loop:
                            while True:
                                await anyio.run_process(["/bin/true"])
                                await anyio.sleep(0.05)

                    tasks.start_soon(run_execs)
                    assert generator.stdin is not None
                    generator.stdin.write(b"g")
                    generator.stdin.close()
                    while generator.poll() is None:
                        await anyio.sleep(1)  # the sampling period
                        samples.append((time.monotonic() - start, _rss_mib()))
                        fds.append(_fds())
                    exec_loop.cancel()
                    # let the last records arrive, then close the sources: the merge, the views
                    # and the windows then end on their own, flushing every count
                    with anyio.move_on_after(10):
                        # the kernel's counters are plain memory: nothing signals a change
                        while (stats := syscalls.stats).produced != stats.received + (  # noqa: ASYNC110
                            stats.dropped or 0
                        ):
                            await anyio.sleep(0.01)
                    await syscalls.aclose()
                    await execs.aclose()
            sys_stats, exec_stats = syscalls.stats, execs.stats
    finally:
        generator.kill()
        generator.wait()
    warm = [s for s in samples if s[0] >= max(duration * 0.2, min(duration / 2, 30))]
    slope = _slope_per_minute(warm)
    # Growth: the last quarter against the end of the warm-up. The allocator grows in steps
    # (a burst buffered, an arena extended) that a slope over a short run makes look like a leak.
    values = [mib for _, mib in warm]
    quarter = max(len(values) // 4, 1)
    growth = (
        statistics.median(values[-quarter:]) - statistics.median(values[:quarter])
        if values
        else 0.0
    )
    exact = {
        "syscall source": sys_stats.produced == _accounted(sys_stats),
        "execve source": exec_stats.produced == _accounted(exec_stats),
        "syscall produced == calls": sys_stats.produced == calls,
        "every syscall event counted in a window": counted["syscall"] == sys_stats.received,
        "every execve event counted in a window": counted["execve"] == exec_stats.received,
    }
    return {
        "machine": machine(),
        "duration_s": duration,
        "rate_per_s": rate,
        "syscall_events": {
            "produced": sys_stats.produced,
            "received": sys_stats.received,
            "unread_at_close": sys_stats.unread,
            "dropped": sys_stats.dropped,
            "counted_in_windows": counted["syscall"],
        },
        "execve_events": {
            "produced": exec_stats.produced,
            "received": exec_stats.received,
            "unread_at_close": exec_stats.unread,
            "dropped": exec_stats.dropped,
            "counted_in_windows": counted["execve"],
        },
        "rss_mib_first": samples[0][1] if samples else None,
        "rss_mib_last": samples[-1][1] if samples else None,
        "rss_slope_mib_per_min": slope,
        "rss_growth_mib": growth,
        "rss_mib_samples": [round(mib, 1) for _, mib in samples],
        "fds_min": min(fds, default=0),
        "fds_max": max(fds, default=0),
        "exact": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--backend", choices=LOOPS, default="asyncio")
    parser.add_argument(
        "--max-rss-growth", type=float, default=32.0, help="MiB, last quarter against warm-up"
    )
    args = parser.parse_args()
    result = run_on(args.backend, soak, args.duration, args.rate)
    result["backend"] = args.backend
    checks = {
        "rss bounded": result["rss_growth_mib"] <= args.max_rss_growth,
        "fds constant": result["fds_min"] == result["fds_max"],
        **result["exact"],
    }
    result["checks"] = checks
    print(json.dumps(result, indent=2))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
