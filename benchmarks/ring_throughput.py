"""Ring buffer throughput: aiobpf's RingBuffer against BCC's idiomatic callback, side by side.

A load generator pinned to one core calls getppid() N times (unpaced, or paced at a rate); a BPF
program filtered to its pid submits one 32-byte record per call into a 256 KiB ring and counts
what it produced and what it dropped. Each consumer runs in its own process, pinned to the other
core, and reports received/s, drop % and its CPU use. Every configuration runs --repeat times,
interleaved, and the summary gives medians and ratios against BCC measured in the same run.

    sudo .venv/bin/python -m benchmarks.ring_throughput [--calls 2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import _loadgen

#: consumer -> (event loops, latency budget in seconds)
CONSUMERS: dict[str, tuple[list[str], float]] = {
    "bcc-callback": (["-"], 0.0),
    "aiobpf-batches": (["asyncio", "trio"], 0.0),
    "aiobpf-records": (["asyncio", "trio"], 0.0),
    "aiobpf-batches+1ms": (["asyncio", "trio"], 0.001),
    "aiobpf-records+1ms": (["asyncio", "trio"], 0.001),
}
RING_SIZE = 256 * 1024
LATENCY_EVERY = 64  # one latency sample (kernel timestamp to delivery) per this many records


def _latency(samples: list[int]) -> dict[str, float]:
    """p50/p99/max of end-to-end latency samples (ns), in microseconds."""
    if not samples:
        return {}
    import numpy as np

    p50, p99 = np.percentile(np.array(samples, dtype=np.float64), [50, 99]).tolist()
    return {
        "latency_p50_us": p50 / 1e3,
        "latency_p99_us": p99 / 1e3,
        "latency_max_us": max(samples) / 1e3,
    }


CONSUMER_CPU, GENERATOR_CPU = 0, 1
ROOT = Path(__file__).resolve().parent.parent


# -- one trial, in its own process ---------------------------------------------------------------


def _trial(consumer: str, backend: str, calls: int, rate: float) -> dict[str, Any]:
    os.sched_setaffinity(0, {CONSUMER_CPU})
    generator = _loadgen.start(_loadgen.build(), calls, rate, GENERATOR_CPU)
    try:
        if consumer == "bcc-callback":
            return _bcc_trial(generator)
        import anyio

        batches = consumer.startswith("aiobpf-batches")
        budget = CONSUMERS[consumer][1]
        return anyio.run(_aiobpf_trial, generator, batches, budget, backend=backend)
    finally:
        generator.kill()
        generator.wait()


def _go(generator: subprocess.Popen[bytes]) -> tuple[float, float]:
    """Starts the generator; returns the wall and CPU clocks at that moment."""
    assert generator.stdin is not None
    start = time.monotonic(), time.process_time()
    generator.stdin.write(b"g")
    generator.stdin.close()
    return start


def _finish(
    generator: subprocess.Popen[bytes], start: tuple[float, float], counts: dict[str, int]
) -> dict[str, Any]:
    wall = time.monotonic() - start[0]
    cpu = time.process_time() - start[1]
    assert generator.stdout is not None
    offered_calls, offered_seconds = generator.stdout.read().split()
    produced, dropped, received = counts["produced"], counts["dropped"], counts["received"]
    return {
        **counts,
        "balanced": produced == received + dropped,
        "offered_per_s": int(offered_calls) / float(offered_seconds),
        "received_per_s": received / wall,
        "drop_pct": 100.0 * dropped / produced if produced else 0.0,
        "cpu_pct": 100.0 * cpu / wall,
        "wakeups_per_s": counts.get("wakeups", 0) / wall,
        "wall_s": wall,
    }


def _bcc_trial(generator: subprocess.Popen[bytes]) -> dict[str, Any]:
    """BCC's idiomatic consumer: open_ring_buffer with a callback decoding through table.event()."""
    from bcc import BPF

    from aiobpf.testing import getppid_program

    text, flags = getppid_program(generator.pid, ring_size=RING_SIZE)
    bpf = BPF(text=text.encode(), cflags=flags)
    events, counts = bpf["events"], bpf["events_counts"]
    received = 0

    latencies: list[int] = []

    def callback(ctx: Any, data: Any, size: int) -> None:
        nonlocal received
        event = events.event(data)
        _ = event.seq
        received += 1
        if received % LATENCY_EVERY == 0:
            latencies.append(time.monotonic_ns() - event.timestamp_ns)

    events.open_ring_buffer(callback)
    start = _go(generator)
    while generator.poll() is None:
        bpf.ring_buffer_poll(100)
    bpf.ring_buffer_consume()
    produced, dropped = (int(counts.sum(ctypes.c_int(slot)).value) for slot in (0, 1))
    result = _finish(
        generator, start, {"produced": produced, "dropped": dropped, "received": received}
    )
    result.update(_latency(latencies))
    bpf.cleanup()
    return result


async def _aiobpf_trial(
    generator: subprocess.Popen[bytes], batches: bool, budget: float
) -> dict[str, Any]:
    import anyio
    import anyio.to_thread

    from aiobpf.testing import getppid_ring

    received = 0
    latencies: list[int] = []
    async with await getppid_ring(generator.pid, ring_size=RING_SIZE, max_latency=budget) as ring:
        done = False

        def balanced() -> bool:
            stats = ring.stats
            return stats.produced == stats.received + (stats.dropped or 0)

        async def wait_generator(scope: anyio.CancelScope) -> None:
            nonlocal done
            # Another process's exit has no fd to wait on here; a worker thread waits for it.
            await anyio.to_thread.run_sync(generator.wait, abandon_on_cancel=True)
            done = True
            if balanced():
                scope.cancel()

        start = _go(generator)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_generator, tasks.cancel_scope)
            if batches:
                async for batch in ring.batches():
                    now = time.monotonic_ns()
                    received += len(batch)
                    latencies.extend((now - batch["timestamp_ns"][::LATENCY_EVERY]).tolist())
                    if done and balanced():
                        break
            else:
                async for record in ring:
                    _ = record.seq
                    received += 1
                    if received % LATENCY_EVERY == 0:
                        latencies.append(time.monotonic_ns() - record.timestamp_ns)
                    if done and ring.stats.pending == 0 and balanced():
                        break
            tasks.cancel_scope.cancel()
        stats = ring.stats
        assert stats.received == received
        counts = {
            "produced": stats.produced or 0,
            "dropped": stats.dropped or 0,
            "received": received,
            "wakeups": stats.wakeups,
            "batches": stats.batches,
        }
        return {**_finish(generator, start, counts), **_latency(latencies)}


# -- the sweep -----------------------------------------------------------------------------------


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    model = models[0] if models else platform.machine()
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _run_trial(consumer: str, backend: str, calls: int, rate: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.ring_throughput", "--trial"]
    done = subprocess.run(
        [*command, consumer, backend, str(calls), str(rate)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000_000, help="getppid calls per trial")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--rates", default="0,1000000,100000", help="offered rates, calls/s (0 = unpaced)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "ring_throughput.ndjson"
    )
    parser.add_argument("--trial", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        consumer, backend, calls, rate = args.trial
        print(json.dumps(_trial(consumer, backend, int(calls), float(rate))))
        return

    rates = [float(r) for r in args.rates.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with args.out.open("w") as out:
        for repetition in range(args.repeat):
            for rate in rates:
                for consumer, (backends, _) in CONSUMERS.items():
                    for backend in backends:
                        row = {
                            "consumer": consumer,
                            "backend": backend,
                            "rate": rate,
                            "repetition": repetition,
                            **_run_trial(consumer, backend, args.calls, rate),
                        }
                        rows.append(row)
                        out.write(json.dumps(row) + "\n")
                        print(
                            f"  {consumer:18} {backend:8} rate={rate:>9.0f} "
                            f"received/s={row['received_per_s']:>10.0f} "
                            f"drop={row['drop_pct']:5.1f}% cpu={row['cpu_pct']:5.1f}% "
                            f"balanced={row['balanced']}",
                            file=sys.stderr,
                        )
    _summary(rows, args)


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"Machine: {_machine()}")
    print(
        f"Command: sudo .venv/bin/python -m benchmarks.ring_throughput --calls {args.calls} "
        f"--repeat {args.repeat} --rates {args.rates}"
    )
    print(f"Ring {RING_SIZE // 1024} KiB, 32-byte records; medians of {args.repeat} runs.\n")
    columns = [
        "offered",
        "consumer",
        "loop",
        "offered/s",
        "received/s",
        "drop %",
        "consumer CPU %",
        "wake-ups/s",
        "received/s vs BCC",
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
        "cpu_pct",
        "wakeups_per_s",
        "latency_p50_us",
        "latency_p99_us",
    )
    for rate in sorted({row["rate"] for row in rows}):
        group = [row for row in rows if row["rate"] == rate]
        bcc = [r for r in group if r["consumer"] == "bcc-callback"]
        base_received = statistics.median(r["received_per_s"] for r in bcc)
        base_cpu = statistics.median(r["cpu_pct"] for r in bcc)
        for consumer, (backends, _) in CONSUMERS.items():
            for backend in backends:
                runs = [r for r in group if r["consumer"] == consumer and r["backend"] == backend]
                med = {key: statistics.median(r.get(key, 0) for r in runs) for key in keys}
                cells = [
                    "unpaced" if rate == 0 else f"{rate / 1e6:g} M/s",
                    consumer,
                    backend,
                    f"{med['offered_per_s'] / 1e6:.2f} M",
                    f"{med['received_per_s'] / 1e6:.3f} M",
                    f"{med['drop_pct']:.2f}",
                    f"{med['cpu_pct']:.0f}",
                    "-" if consumer == "bcc-callback" else f"{med['wakeups_per_s']:.0f}",
                    f"{med['received_per_s'] / base_received:.1f}x",
                    f"{med['cpu_pct'] / base_cpu:.2f}x",
                    f"{med['latency_p50_us']:.0f} / {med['latency_p99_us']:.0f}",
                    f"{sum(r['balanced'] for r in runs)}/{len(runs)}",
                ]
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
