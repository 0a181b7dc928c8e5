"""What a wake-up costs: the event loop's own floor, beside aiobpf's read woken the same way.

A source with a latency budget sleeps out the budget and then reads the ring: one wake-up of
the event loop per read. This times, in one run and on both loops, the CPU per turn of a bare
loop that does nothing but that sleep (``asyncio.sleep``, ``trio.sleep``), and the CPU per read
of a ring source at default settings (``max_latency="auto"``: a 4 ms budget) while a generator
pinned to the other core calls getppid() at an evenly spaced 1,000 a second, and BCC's ring
buffer callback on the same load. The difference between the first two is what aiobpf adds to a
wake-up: reading positions, copying the records, pacing, handing out.

    sudo .venv/bin/python -m benchmarks.loop_floor [--repeat 5] [--seconds 4]
        [--previous OTHER_CHECKOUT/src]

``--previous`` adds the read of another checkout's aiobpf, in the same turns: a change to the
read path, before and after, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import sniffio

from . import _loadgen
from ._common import (
    CONSUMER_CPU,
    GENERATOR_CPU,
    LOOPS,
    ROOT,
    in_shuffled_order,
    machine,
    run_on,
    run_trial,
)

RATE = 1000
BUDGET = 0.004  # aiobpf.sources.AUTO_MAX_LATENCY
TRIALS = [(loop, what) for loop in LOOPS for what in ("bare", "ring")]
LABELS = {
    "bare": "a bare loop sleeping 4 ms, nothing else",
    "ring": "aiobpf's batches, default budget (4 ms)",
    "bcc": "BCC's ring buffer callback (a wake-up per record)",
}


async def _bare(seconds: float) -> dict[str, float]:
    turns = int(seconds / BUDGET)
    start = time.process_time()
    for _ in range(turns):
        await _loop_sleep(BUDGET)
    return {"cpu_us": (time.process_time() - start) / turns * 1e6, "turns": turns}


async def _loop_sleep(seconds: float) -> None:
    """The loop's own sleep, as a bare program would call it (not anyio's wrapper)."""
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


async def _ring(seconds: float) -> dict[str, float]:
    from aiobpf.testing import getppid_ring

    calls = int(seconds * RATE)
    generator = _loadgen.start(_loadgen.build(), calls, RATE, GENERATOR_CPU, "even")
    try:
        async with getppid_ring(generator.pid, ring_size=256 * 1024) as ring:
            received = 0
            assert generator.stdin is not None
            start = time.process_time()
            generator.stdin.write(b"g")
            generator.stdin.close()
            async for batch in ring.batches():
                received += len(batch)
                if received >= calls:
                    break
            cpu = time.process_time() - start
            reads = ring.stats.batches
        return {"cpu_us": cpu / reads * 1e6, "turns": reads, "per_record_us": cpu / calls * 1e6}
    finally:
        generator.kill()
        generator.wait()


def _bcc(seconds: float) -> dict[str, float]:
    """BCC's ring buffer callback on the same load: a C poll loop calling Python per record."""
    from bcc import BPF

    from aiobpf.testing import getppid_program

    calls = int(seconds * RATE)
    generator = _loadgen.start(_loadgen.build(), calls, RATE, GENERATOR_CPU, "even")
    try:
        text, flags = getppid_program(generator.pid, ring_size=256 * 1024)
        bpf = BPF(text=text.encode(), cflags=flags)
        events = bpf["events"]
        received = 0

        def callback(_: Any, data: Any, size: int) -> None:
            nonlocal received
            _ = events.event(data).seq
            received += 1

        events.open_ring_buffer(callback)
        assert generator.stdin is not None
        start = time.process_time()
        generator.stdin.write(b"g")
        generator.stdin.close()
        while received < calls and generator.poll() is None:
            bpf.ring_buffer_poll(100)
        bpf.ring_buffer_consume()  # what came before the generator ended
        cpu = time.process_time() - start
        if received < calls:
            raise RuntimeError(f"BCC's callback received {received} of {calls} records")
        bpf.cleanup()
        return {"cpu_us": cpu / calls * 1e6, "per_record_us": cpu / calls * 1e6}
    finally:
        generator.kill()
        generator.wait()


def _trial(spec: dict[str, Any]) -> dict[str, float]:
    os.sched_setaffinity(0, {CONSUMER_CPU})  # as every benchmark's consumer; the generator: 1
    if spec["what"] == "bcc":
        return _bcc(spec["seconds"])
    what = _bare if spec["what"] == "bare" else _ring
    result: dict[str, float] = run_on(spec["loop"], what, spec["seconds"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--previous", help="another checkout's src: its read, in the same turns")
    parser.add_argument("--trial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        import json

        print(json.dumps(_trial(json.loads(args.trial))))
        return
    trials = [*TRIALS, ("-", "bcc")]
    if args.previous:
        trials += [(loop, "previous") for loop in LOOPS]
    rows: dict[tuple[str, str], list[dict[str, float]]] = {trial: [] for trial in trials}
    for turn in range(args.repeat):
        for loop, what in in_shuffled_order(trials, turn):
            spec = {"what": "ring" if what == "previous" else what, "loop": loop}
            spec["seconds"] = args.seconds
            # both checkouts' aiobpf from PYTHONPATH, so that they import the same way
            src = args.previous if what == "previous" else str(ROOT / "src")
            rows[loop, what].append(run_trial("loop_floor", spec, src))
    print(f"Machine: {machine()}")
    previous = f" --previous {args.previous}" if args.previous else ""
    print(
        f"Command: sudo .venv/bin/python -m benchmarks.loop_floor --repeat {args.repeat} "
        f"--seconds {args.seconds:g}{previous}"
    )
    print(
        f"Medians of {args.repeat} trials each, in turns (each in its own shuffled order), each "
        "in a fresh process.\n"
    )
    print("| loop | what | CPU µs per wake-up | CPU µs per record | per record vs BCC |")
    print("|---|---|---|---|---|")
    bcc = statistics.median(r["per_record_us"] for r in rows["-", "bcc"])
    for (loop, what), results in rows.items():
        wake = statistics.median(r["cpu_us"] for r in results)
        if what == "bare":
            print(f"| {loop} | {LABELS[what]} | {wake:.1f} | - | - |")
        elif what in ("ring", "previous"):
            label = LABELS["ring"] + (f", of {args.previous}" if what == "previous" else "")
            record = statistics.median(r["per_record_us"] for r in results)
            print(f"| {loop} | {label} | {wake:.1f} | {record:.1f} | {record / bcc:.2f}x |")
        else:
            print(f"| {loop} | {LABELS[what]} | - | {bcc:.1f} | 1.00x |")


if __name__ == "__main__":
    main()
