"""Exec storm: aiobpf's execve_events() against BCC's idiomatic callback on the same program.

Exec events, under load. A generator pinned to one core runs /bin/true N times (vfork +
execve + wait), unpaced or paced; the program aiobpf ships for ``execve_events()``
(``sys_enter_execve``/``sys_exit_execve`` tracepoints, 296-byte records, a 256 KiB ring)
submits one record per exec on the machine and counts what it produced and dropped. Each
consumer runs in its own process on the other core:

- ``bcc-callback``: the same compiled program, consumed BCC's way (``open_ring_buffer`` with a
  callback decoding through ``table.event()``, driven by ``ring_buffer_poll``);
- ``aiobpf-events``: ``async for event in execve_events()``, the typed frozen ``ExecveEvent``;
- ``aiobpf-batches``: ``execve_events().ring.batches()``, numpy arrays.

``--budgets`` adds aiobpf runs with a latency budget (``max_latency``): at this rate the reader
catches up after every exec, so each one costs a wake-up unless a budget gathers them.

    sudo .venv/bin/python -m benchmarks.execve_throughput [--execs 20000] [--budgets 0,10]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _loadgen
from benchmarks._common import (
    CONSUMER_CPU,
    GENERATOR_CPU,
    LOOPS,
    ROOT,
    batch_latencies,
    budget_label,
    budgets,
    finish,
    go,
    latency_percentiles,
    machine,
    max_latency,
    run_on,
    run_trial,
)

CONSUMERS = {
    "bcc-callback": ["-"],
    "aiobpf-events": list(LOOPS),
    "aiobpf-batches": list(LOOPS),
}
RING_SIZE = 256 * 1024
LATENCY_EVERY = 8


def _trial(
    consumer: str, loop: str, execs: int, rate: float, budget_ms: float | str
) -> dict[str, Any]:
    os.sched_setaffinity(0, {CONSUMER_CPU})
    generator = _loadgen.start(_loadgen.build_exec_storm(), execs, rate, GENERATOR_CPU)
    try:
        if consumer == "bcc-callback":
            return _bcc_trial(generator)
        batches = consumer == "aiobpf-batches"
        return run_on(loop, _aiobpf_trial, generator, batches, max_latency(budget_ms))
    finally:
        generator.kill()
        generator.wait()


def _bcc_trial(generator: subprocess.Popen[bytes]) -> dict[str, Any]:
    from aiobpf._core.validate import ring_pages
    from aiobpf._kernel.btf import member_offset
    from aiobpf.lowlevel import Program
    from aiobpf.programs._text import include_flags

    flags = [
        *include_flags(),
        f"-DAIOBPF_RING_PAGES={ring_pages(RING_SIZE)}",
        "-DAIOBPF_ARGS_KEPT=20",  # argv kept as execve_events() does
        f"-DAIOBPF_TASK_REAL_PARENT={member_offset('task_struct', 'real_parent')}",
        f"-DAIOBPF_TASK_TGID={member_offset('task_struct', 'tgid')}",
    ]
    text = (Path(__file__).parent / "execve_bcc.bpf.c").read_text()
    program = Program.compile(text, cflags=flags)
    bpf = program.bpf
    events, counts = bpf["events"], bpf["events_counts"]
    received = 0
    latencies: list[int] = []

    def callback(_: Any, data: Any, size: int) -> None:
        nonlocal received
        event = events.event(data)
        _ = event.pid, event.comm
        received += 1
        if received % LATENCY_EVERY == 0:
            latencies.append(time.monotonic_ns() - event.timestamp_ns)

    def totals() -> tuple[int, int]:
        produced, dropped = (int(counts.sum(ctypes.c_int(slot)).value) for slot in (0, 1))
        return produced, dropped

    events.open_ring_buffer(callback)
    start = go(generator)
    while generator.poll() is None:
        bpf.ring_buffer_poll(100)
    # other processes' execs may still be on their way: drain until the counters balance
    for _ in range(100):
        bpf.ring_buffer_poll(10)
        produced, dropped = totals()
        if produced == received + dropped:
            break
    result = finish(
        generator, start, {"produced": produced, "dropped": dropped, "received": received}
    )
    program.close()
    return {**result, **latency_percentiles(latencies)}


async def _aiobpf_trial(
    generator: subprocess.Popen[bytes], batches: bool, budget: Any
) -> dict[str, Any]:
    import anyio
    import anyio.to_thread

    from aiobpf import execve_events

    received = 0
    latencies: list[int] = []
    async with execve_events(ring_size=RING_SIZE, max_latency=budget) as events:
        done = False

        def complete() -> bool:
            if not done:
                return False
            stats = events.stats
            return stats.produced == received + (stats.dropped or 0)

        async def wait_generator(scope: anyio.CancelScope) -> None:
            nonlocal done
            await anyio.to_thread.run_sync(generator.wait, abandon_on_cancel=True)
            done = True
            if complete():  # else the consumer ends it when the last records arrive
                scope.cancel()

        start = go(generator)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_generator, tasks.cancel_scope)
            if batches:
                async for batch in events.ring.batches():
                    now = time.monotonic_ns()
                    latencies.extend(batch_latencies(batch, received, now, LATENCY_EVERY))
                    received += len(batch)
                    if complete():
                        tasks.cancel_scope.cancel()
            else:
                async for event in events:
                    _ = event.pid, event.comm
                    received += 1
                    if received % LATENCY_EVERY == 0:
                        latencies.append(time.monotonic_ns() - event.timestamp_ns)
                    if complete():
                        tasks.cancel_scope.cancel()
        stats = events.stats
        counts = {
            "produced": stats.produced or 0,
            "dropped": stats.dropped or 0,
            "received": received,
            "wakeups": stats.wakeups,
            "batches": stats.batches,
        }
        # before closing, as for BCC's consumers: the figures leave out the teardown
        result = finish(generator, start, counts)
    return {**result, **latency_percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execs", type=int, default=20_000, help="execs per trial")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rates", default="0,2000", help="offered rates, execs/s (0 = unpaced)")
    parser.add_argument(
        "--budgets",
        default="auto,0",
        help="aiobpf latency budgets (max_latency), milliseconds, or auto (the default)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "execve_throughput.ndjson"
    )
    parser.add_argument("--trial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        print(json.dumps(_trial(*json.loads(args.trial))))
        return
    rates = [float(rate) for rate in args.rates.split(",")]
    series = _series(budgets(args.budgets))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with args.out.open("w") as out:
        for repetition in range(args.repeat):
            for rate in rates:
                for consumer, loop, budget_ms in series:
                    row: dict[str, Any] = {
                        "consumer": consumer,
                        "loop": loop,
                        "budget_ms": budget_ms,
                        "rate": rate,
                        "repetition": repetition,
                    }
                    spec = [consumer, loop, args.execs, rate, budget_ms]
                    row.update(run_trial("execve_throughput", spec))
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    print(
                        f"  {_label(consumer, budget_ms):22} {loop:8} rate={rate:>6.0f} "
                        f"received/s={row['received_per_s']:>8.0f} "
                        f"drop={row['drop_pct']:5.1f}% cpu={row['cpu_pct']:5.1f}% "
                        f"balanced={row['balanced']}",
                        file=sys.stderr,
                    )
    _summary(rows, args)


def _series(budgets: list[float | str]) -> list[tuple[str, str, float | str]]:
    """consumer, loop and latency budget of each trial of a repetition (BCC has no budget)."""
    return [
        (consumer, loop, budget_ms)
        for consumer, loops in CONSUMERS.items()
        for loop in loops
        for budget_ms in ([0.0] if consumer == "bcc-callback" else budgets)
    ]


def _label(consumer: str, budget_ms: float | str) -> str:
    return consumer + budget_label(budget_ms)


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"Machine: {machine()}")
    print(
        f"Command: sudo .venv/bin/python -m benchmarks.execve_throughput {' '.join(sys.argv[1:])}"
    )
    print(f"{args.execs} execs per run; medians of {args.repeat} runs.\n")
    columns = ["offered", "consumer", "loop", "execs/s offered", "received/s", "drop %"]
    columns += ["CPU %", "CPU µs per event", "CPU vs BCC", "latency p50 / p99 (µs)", "balanced"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for rate in sorted({row["rate"] for row in rows}):
        group = [row for row in rows if row["rate"] == rate]

        def per_event(row: dict[str, Any]) -> float:
            cpu_s = float(row["cpu_pct"]) / 100 * float(row["wall_s"])
            return cpu_s / max(int(row["received"]), 1) * 1e6

        bcc = [per_event(row) for row in group if row["consumer"] == "bcc-callback"]
        base = statistics.median(bcc) if bcc else None
        for consumer, loop, budget_ms in _series(budgets(args.budgets)):
            series = (consumer, loop, budget_ms)
            runs = [r for r in group if (r["consumer"], r["loop"], r["budget_ms"]) == series]
            if not runs:
                continue
            cost = statistics.median(per_event(r) for r in runs)

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(float(r.get(key, 0)) for r in runs)

            cells = [
                "unpaced" if rate == 0 else f"{rate:g}/s",
                _label(consumer, budget_ms),
                loop,
                f"{med('offered_per_s'):.0f}",
                f"{med('received_per_s'):.0f}",
                f"{med('drop_pct'):.2f}",
                f"{med('cpu_pct'):.1f}",
                f"{cost:.1f}",
                f"{cost / base:.2f}x" if base else "-",
                f"{med('latency_p50_us'):.0f} / {med('latency_p99_us'):.0f}",
                f"{sum(r['balanced'] for r in runs)}/{len(runs)}",
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
