"""Ring buffer throughput: aiobpf's consumers against BCC's idiomatic ones, side by side.

A load generator pinned to one core calls getppid() (unpaced, or paced at a rate); a BPF program
filtered to its pid submits one record per call and counts what it produced and what it dropped.
Each consumer runs in its own process, pinned to the other core, and reports received/s, drop %,
its CPU use and end-to-end latency (the record's kernel timestamp against the monotonic clock at
delivery). Every configuration runs --repeat times, interleaved; the summary gives medians and
ratios against BCC's ring buffer callback measured in the same run.

Sweeps: offered load (--rates), ring size (--ring-kib), record size (--record-bytes), the
latency budget of aiobpf's consumers (--budgets) and their low-latency mode (--busy-polls).
Raw rows go to NDJSON (--out); plot them with ``python -m benchmarks.plot``.

    sudo .venv/bin/python -m benchmarks.ring_throughput [--calls 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _loadgen
from benchmarks._common import (
    CONSUMER_CPU,
    GENERATOR_CPU,
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

SLOW_SINK_EVERY, SLOW_SINK_PAUSE = 1000, 0.001  # the lossy view's consumer pauses this long
CONSUMERS = {
    "bcc-callback": "BCC's open_ring_buffer callback, decoding with table.event()",
    "bcc-perf": "BCC's open_perf_buffer callback with lost_cb (a perf buffer of the ring's size)",
    "aiobpf-batches": "async for batch in ring.batches() (numpy arrays)",
    "aiobpf-perf": "async for batch in PerfBuffer.batches(): a perf buffer of the ring's size",
    "aiobpf-records": "async for record in ring, reading a field of each",
    "aiobpf-operators": "records through filter() | map()",
    "aiobpf-route": "batches through route(..., 'cpu'): two views, each drained by a task",
    "aiobpf-route-lossy": (
        "records through route(..., 'cpu', policy='drop_oldest'), the generator's view drained "
        f"by a slow sink ({SLOW_SINK_PAUSE * 1e3:g} ms pause every {SLOW_SINK_EVERY} records): "
        "it drops in user space, and counts it"
    ),
}
BCC_CONSUMERS = ("bcc-callback", "bcc-perf")
#: The floor: C, libbpf's ring_buffer__consume on epoll (benchmarks/ringpoll.c), in its own
#: process; it reads the ring the Python trial loaded.
FLOOR = "libbpf-c"
CONSUMERS[FLOOR] = "C consumer: libbpf ring_buffer__consume on epoll (the floor)"
NATIVE_CONSUMERS = (*BCC_CONSUMERS, FLOOR)
LATENCY_EVERY = 64  # one latency sample (kernel timestamp to delivery) per this many records


# -- one trial, in its own process ---------------------------------------------------------------


def _trial(spec: dict[str, Any]) -> dict[str, Any]:
    os.sched_setaffinity(0, {CONSUMER_CPU})
    generator = _loadgen.start(
        _loadgen.build(),
        spec["calls"],
        spec["rate"],
        GENERATOR_CPU,
        spec.get("pattern", "burst"),
        spec.get("sources", 1),
    )
    try:
        if spec["consumer"] == FLOOR:
            return _libbpf_trial(generator, spec)
        if spec["consumer"] in BCC_CONSUMERS:
            return _bcc_trial(generator, spec)
        return run_on(spec["loop"], _aiobpf_trial, generator, spec)
    finally:
        generator.kill()
        generator.wait()


def _bcc_trial(generator: subprocess.Popen[bytes], spec: dict[str, Any]) -> dict[str, Any]:
    """BCC's idiomatic consumers: a callback per record decoding through table.event(), on the
    ring buffer (ring_buffer_poll) or on a perf buffer (perf_buffer_poll, with lost_cb)."""
    from bcc import BPF

    from aiobpf.testing import getppid_program

    perf = spec["consumer"] == "bcc-perf"
    ring_size = spec["ring_kib"] * 1024
    text, flags = getppid_program(
        generator.pid,
        ring_size=ring_size,
        record_size=spec["record_bytes"],
        output="perf" if perf else "ring",
    )
    bpf = BPF(text=text.encode(), cflags=flags)
    events, counts = bpf["events"], bpf["events_counts"]
    received = lost = 0
    latencies: list[int] = []

    def callback(_: Any, data: Any, size: int) -> None:
        nonlocal received
        event = events.event(data)
        _ = event.seq
        received += 1
        if received % LATENCY_EVERY == 0:
            latencies.append(time.monotonic_ns() - event.timestamp_ns)

    def lost_cb(count: int) -> None:
        nonlocal lost
        lost += count

    if perf:  # the generator's CPU gets a buffer of the ring's size (power-of-two pages)
        events.open_perf_buffer(callback, page_cnt=ring_size // 4096, lost_cb=lost_cb)
        poll, consume = bpf.perf_buffer_poll, bpf.perf_buffer_consume
    else:
        events.open_ring_buffer(callback)
        poll, consume = bpf.ring_buffer_poll, bpf.ring_buffer_consume
    start = go(generator)
    while generator.poll() is None:
        poll(100)
    consume()
    produced, dropped = (int(counts.sum(ctypes.c_int(slot)).value) for slot in (0, 1))
    result = finish(
        generator, start, {"produced": produced, "dropped": dropped, "received": received}
    )
    if perf:
        result["lost_cb"] = lost  # the perf buffer's own count of lost samples
    result.update(latency_percentiles(latencies))
    bpf.cleanup()
    return result


def _libbpf_trial(generator: subprocess.Popen[bytes], spec: dict[str, Any]) -> dict[str, Any]:
    """The floor: BCC loads the program here, a C process consumes the ring with libbpf (the
    map's fd is inherited), pinned to the consumer core; its own CPU time is what counts."""
    from bcc import BPF

    from aiobpf.testing import getppid_program

    poller = _loadgen.build_ring_poller()
    if poller is None:
        raise RuntimeError("the C consumer cannot be built: install libbpf-dev and gcc")
    text, flags = getppid_program(
        generator.pid, ring_size=spec["ring_kib"] * 1024, record_size=spec["record_bytes"]
    )
    bpf = BPF(text=text.encode(), cflags=flags)
    try:
        fd = bpf["events"].get_fd()
        consumer = subprocess.Popen(
            ["taskset", "-c", str(CONSUMER_CPU), *poller, str(fd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=[fd],
        )
        assert consumer.stdout is not None
        if consumer.stdout.readline() != b"ready\n":
            raise RuntimeError("the C consumer did not start")
        start = go(generator)
        generator.wait()
        assert consumer.stdin is not None
        consumer.stdin.close()  # the generator is done: take what is left and report
        report = json.loads(consumer.stdout.read())  # after "ready": the one JSON line
        consumer.wait()
        produced, dropped = (int(bpf["events_counts"].sum(ctypes.c_int(s)).value) for s in (0, 1))
        counts = {
            "produced": produced,
            "dropped": dropped,
            "received": report["received"],
            "wakeups": report["wakeups"],
        }
        result = finish(generator, start, counts, cpu=report["cpu_s"])
    finally:
        bpf.cleanup()
    return {
        **result,
        "latency_p50_us": report["latency_p50_us"],
        "latency_p99_us": report["latency_p99_us"],
    }


async def _aiobpf_trial(generator: subprocess.Popen[bytes], spec: dict[str, Any]) -> dict[str, Any]:
    import anyio
    import anyio.to_thread
    import numpy as np

    from aiobpf import PerfBuffer, RingStats
    from aiobpf.lowlevel import Program
    from aiobpf.operators import filter, map, route
    from aiobpf.testing import getppid_program, getppid_record, getppid_ring

    consumer = spec["consumer"]
    received = 0
    lossy: list[Any] = []  # a lossy router, then its views: what they dropped in user space
    latencies: list[int] = []
    ring: Any
    if consumer == "aiobpf-perf":  # the generator's CPU gets a buffer of the ring's size
        text, flags = getppid_program(
            generator.pid, record_size=spec["record_bytes"], output="perf"
        )
        program = Program.compile(text, cflags=flags)
        ring = PerfBuffer.from_bcc(
            program.bpf,
            "events",
            record=getppid_record(spec["record_bytes"]),
            page_cnt=spec["ring_kib"] * 1024 // 4096,
            max_latency=max_latency(spec["budget_ms"]),
            busy_poll=spec.get("busy_poll_us", 0.0) / 1e6,
            owned=[program.close],
        )
    else:
        ring = getppid_ring(
            generator.pid,
            ring_size=spec["ring_kib"] * 1024,
            record_size=spec["record_bytes"],
            max_latency=max_latency(spec["budget_ms"]),
            busy_poll=spec.get("busy_poll_us", 0.0) / 1e6,
        )
    async with ring:
        done = False

        def user_dropped() -> int:
            if not lossy:
                return 0
            router, *views = lossy
            return int(router.unrouted) + sum(int(view.stats.dropped) for view in views)

        def complete() -> bool:
            """The generator has exited and every record it produced is received or dropped,
            in the kernel or in user space."""
            if not done:
                return False
            stats: RingStats = ring.stats
            return stats.produced == received + (stats.dropped or 0) + user_dropped()

        def took_batch(batch: np.ndarray[Any, Any]) -> None:
            nonlocal received
            now = time.monotonic_ns()
            latencies.extend(batch_latencies(batch, received, now, LATENCY_EVERY))
            received += len(batch)

        def took_record(timestamp_ns: int) -> None:
            nonlocal received
            received += 1
            if received % LATENCY_EVERY == 0:
                latencies.append(time.monotonic_ns() - timestamp_ns)

        def took_typed(record: Any) -> None:
            took_record(record.timestamp_ns)

        async def wait_generator(scope: anyio.CancelScope) -> None:
            nonlocal done
            # Another process's exit has no fd to wait on here; a worker thread waits for it.
            await anyio.to_thread.run_sync(generator.wait, abandon_on_cancel=True)
            done = True
            if complete():
                scope.cancel()

        async def drain(
            items: Any,
            take: Callable[[Any], None],
            scope: anyio.CancelScope,
            *,
            slow_sink: bool = False,
        ) -> None:
            taken = 0
            async for item in items:
                take(item)
                if complete():
                    scope.cancel()
                taken += 1
                if slow_sink and taken % SLOW_SINK_EVERY == 0:
                    await anyio.sleep(SLOW_SINK_PAUSE)  # a sink that takes its time: a flush

        start = go(generator)
        async with anyio.create_task_group() as tasks:
            scope = tasks.cancel_scope
            tasks.start_soon(wait_generator, scope)
            if consumer in ("aiobpf-batches", "aiobpf-perf"):
                await drain(ring.batches(), took_batch, scope)
            elif consumer == "aiobpf-records":
                await drain(ring, took_typed, scope)
            elif consumer == "aiobpf-operators":
                timestamps = ring | filter(lambda r: r.seq >= 0) | map(lambda r: r.timestamp_ns)
                await drain(timestamps, took_record, scope)
            elif consumer == "aiobpf-route":
                async with route(ring.batches(), "cpu") as router:
                    tasks.start_soon(drain, router.default(), took_batch, scope)
                    await drain(router.view(GENERATOR_CPU), took_batch, scope)
            elif consumer == "aiobpf-route-lossy":
                async with route(ring, "cpu", policy="drop_oldest") as router:
                    others, generators = router.default(), router.view(GENERATOR_CPU)
                    lossy.extend([router, others, generators])
                    tasks.start_soon(drain, others, took_typed, scope)
                    await drain(generators, took_typed, scope, slow_sink=True)
            else:
                raise ValueError(f"unknown consumer {consumer!r}")
        stats = ring.stats
        counts = {
            "produced": stats.produced or 0,
            "dropped": stats.dropped or 0,
            "user_dropped": user_dropped(),
            "received": received,
            "wakeups": stats.wakeups,
            "batches": stats.batches,
        }
        # before closing, as for BCC's consumers: the figures leave out the teardown
        result = finish(generator, start, counts)
    return {**result, **latency_percentiles(latencies)}


# -- the sweep -----------------------------------------------------------------------------------


def _numbers(text: str, kind: type) -> list[Any]:
    return [kind(item) for item in text.split(",")]


def _configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every trial of one repetition: sizes x rates x consumers x loops x reading modes (aiobpf's
    latency budgets, then its busy-polling times; BCC's consumers have neither)."""
    modes: list[tuple[float | str, float]] = [
        (budget_ms, 0.0) for budget_ms in budgets(args.budgets)
    ]
    modes += [(0.0, poll_us) for poll_us in _numbers(args.busy_polls, float) if poll_us]
    specs = []
    sizes = itertools.product(_numbers(args.ring_kib, int), _numbers(args.record_bytes, int))
    for (ring_kib, record_bytes), rate in itertools.product(sizes, _numbers(args.rates, float)):
        calls = args.calls if rate == 0 else min(args.calls, int(rate * args.seconds))
        for consumer in args.consumers.split(","):
            bcc = consumer in NATIVE_CONSUMERS
            for loop in ["-"] if bcc else args.loops.split(","):
                for budget_ms, busy_poll_us in [(0.0, 0.0)] if bcc else modes:
                    specs.append(
                        {
                            "consumer": consumer,
                            "loop": loop,
                            "budget_ms": budget_ms,
                            "busy_poll_us": busy_poll_us,
                            "rate": rate,
                            "pattern": args.pattern,
                            "sources": args.sources,
                            "calls": calls,
                            "ring_kib": ring_kib,
                            "record_bytes": record_bytes,
                        }
                    )
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000_000, help="getppid calls per trial")
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="length of a paced trial (calls = rate x this)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rates", default="0,1000000,100000", help="offered rates, calls/s (0 = unpaced)"
    )
    parser.add_argument(
        "--pattern",
        choices=_loadgen.PATTERNS,
        default="burst",
        help="how a paced generator spaces its calls: the pace kept every 64 calls (burst), "
        "every call (even), or exponential gaps (poisson)",
    )
    parser.add_argument(
        "--sources",
        type=int,
        default=1,
        help="independent sources the paced load comes from: threads of the generator, each "
        "with its own arrivals at rate/SOURCES, sleeping between calls as processes do (1)",
    )
    parser.add_argument("--ring-kib", default="256", help="ring sizes, KiB (powers of two)")
    parser.add_argument("--record-bytes", default="32", help="record sizes (multiples of 8, >= 32)")
    parser.add_argument(
        "--budgets",
        default="auto,0,1",
        help="aiobpf latency budgets (max_latency), milliseconds, or auto (the default)",
    )
    parser.add_argument(
        "--busy-polls",
        default="0",
        help="aiobpf busy-polling times (busy_poll, low-latency mode), microseconds",
    )
    parser.add_argument("--consumers", default=",".join(CONSUMERS), help="which consumers")
    parser.add_argument("--loops", default="asyncio,trio", help="event loops for aiobpf")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "ring_throughput.ndjson"
    )
    parser.add_argument("--trial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        print(json.dumps(_trial(json.loads(args.trial))))
        return
    unknown = set(args.consumers.split(",")) - set(CONSUMERS)
    if unknown:
        parser.error(f"unknown consumers {sorted(unknown)}; choose from {sorted(CONSUMERS)}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with args.out.open("w") as out:
        for repetition in range(args.repeat):
            for spec in _configurations(args):
                row = {**spec, "repetition": repetition, "machine": machine()}
                row.update(run_trial("ring_throughput", spec))
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(
                    f"  {_label(row):28} ring={row['ring_kib']}K rec={row['record_bytes']}B "
                    f"rate={row['rate']:>9.0f} received/s={row['received_per_s']:>10.0f} "
                    f"drop={row['drop_pct']:5.1f}%+{row['user_drop_pct']:.1f}% "
                    f"cpu={row['cpu_pct']:5.1f}% "
                    f"balanced={row['balanced']}",
                    file=sys.stderr,
                )
    _summary(rows, args)


def _label(row: dict[str, Any]) -> str:
    """consumer, loop and reading mode: one series in the tables and plots."""
    if row["consumer"] in NATIVE_CONSUMERS:
        return str(row["consumer"])
    mode = budget_label(row["budget_ms"])
    if row.get("busy_poll_us"):
        mode = f"+poll{row['busy_poll_us']:g}us"
    return f"{row['consumer']}{mode} ({row['loop']})"


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"Machine: {machine()}")
    command = " ".join(sys.argv[1:])
    print(f"Command: sudo .venv/bin/python -m benchmarks.ring_throughput {command}")
    print(
        f"Medians of {args.repeat} runs; paced calls spaced by pattern {args.pattern!r}, from "
        f"{args.sources} source(s); ratios against bcc-callback in the same group.\n"
    )
    columns = [
        "ring",
        "record",
        "offered",
        "consumer",
        "offered/s",
        "received/s",
        "drop %",
        "user drop %",
        "CPU %",
        "CPU µs / record",
        "wake-ups/s",
        "CPU µs / wake-up",
        "received vs BCC",
        "CPU vs BCC",
        "latency p50 / p99 (µs)",
        "balanced",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    keys = (
        "offered_per_s",
        "received_per_s",
        "drop_pct",
        "user_drop_pct",
        "cpu_pct",
        "cpu_us_per_record",
        "wakeups_per_s",
        "cpu_us_per_wakeup",
        "latency_p50_us",
        "latency_p99_us",
    )
    groups = sorted({(r["ring_kib"], r["record_bytes"], r["rate"]) for r in rows})
    for ring_kib, record_bytes, rate in groups:
        group = [
            r
            for r in rows
            if (r["ring_kib"], r["record_bytes"], r["rate"]) == (ring_kib, record_bytes, rate)
        ]
        bcc = [r for r in group if r["consumer"] == "bcc-callback"]
        base_received = statistics.median(r["received_per_s"] for r in bcc) if bcc else None
        base_cpu = statistics.median(r["cpu_pct"] for r in bcc) if bcc else None
        for label in dict.fromkeys(_label(r) for r in group):
            runs = [r for r in group if _label(r) == label]
            med = {key: statistics.median(r.get(key, 0) for r in runs) for key in keys}
            cells = [
                f"{ring_kib} KiB",
                f"{record_bytes} B",
                "unpaced" if rate == 0 else f"{rate / 1e6:g} M/s",
                label,
                f"{med['offered_per_s'] / 1e6:.2f} M",
                f"{med['received_per_s'] / 1e6:.3f} M",
                f"{med['drop_pct']:.2f}",
                f"{med['user_drop_pct']:.2f}",
                f"{med['cpu_pct']:.0f}",
                f"{med['cpu_us_per_record']:.2f}",
                "-" if runs[0]["consumer"] in BCC_CONSUMERS else f"{med['wakeups_per_s']:.0f}",
                f"{med['cpu_us_per_wakeup']:.1f}" if med["cpu_us_per_wakeup"] else "-",
                f"{med['received_per_s'] / base_received:.1f}x" if base_received else "-",
                f"{med['cpu_pct'] / base_cpu:.2f}x" if base_cpu else "-",
                f"{med['latency_p50_us']:.0f} / {med['latency_p99_us']:.0f}",
                f"{sum(r['balanced'] for r in runs)}/{len(runs)}",
            ]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
