"""Closing a source: how long it takes, and how long the event loop stalls meanwhile.

Closing detaches the program, and each tracepoint's detach waits out an RCU grace period in the
kernel (tens of milliseconds on a VM). This opens each source aiobpf ships, lets it run, then
closes it while a second task ticks every millisecond: the close's wall time, and the longest
gap between two ticks (a stall of the whole loop: every other task of the service waits that
long). Each trial runs in a fresh process; medians of ``--repeat`` trials, in turns,
each turn in its own shuffled order.

    sudo .venv/bin/python -m benchmarks.close_stall [--repeat 5] [--previous OTHER_CHECKOUT/src]

``--previous`` adds another checkout's aiobpf in the same turns: before and after, side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio

from ._common import LOOPS, ROOT, in_shuffled_order, machine, run_on, run_trial

TICK = 0.001
#: The sources aiobpf ships (the functions' names), with the tracepoints each attaches to.
SOURCES: dict[str, str] = {
    "execve_events": "sys_enter/exit of execve and execveat, sched_process_exec",
    "execve_counts": "sys_enter_execve and sys_enter_execveat",
    "hello_world": "sys_enter_execve",
    "syscall_events": "raw sys_enter",
}


def _source(name: str) -> Any:
    import aiobpf

    return getattr(aiobpf, name)()  # each of SOURCES is the function that makes it


async def _close(name: str) -> dict[str, float]:
    source = _source(name)
    await source.__aenter__()
    gaps: list[float] = []
    closing = True

    async def tick() -> None:
        last = time.monotonic()
        while closing:
            await anyio.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        await anyio.sleep(10 * TICK)  # the ticker is running
        gaps.clear()
        start = time.monotonic()
        await source.__aexit__(None, None, None)
        took = time.monotonic() - start
        closing = False
    return {"close_ms": took * 1e3, "stall_ms": max(gaps, default=took) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loops", default="asyncio,trio", help=f"of {','.join(LOOPS)}")
    parser.add_argument("--previous", help="another checkout's src: its close, in the same turns")
    parser.add_argument("--trial", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        spec = json.loads(args.trial)
        print(json.dumps(run_on(spec["loop"], _close, spec["source"])))
        return
    checkouts = {"this": str(ROOT / "src")}
    if args.previous:
        checkouts["previous"] = args.previous
    loops = args.loops.split(",")
    trials = [(source, loop, which) for source in SOURCES for loop in loops for which in checkouts]
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = {trial: [] for trial in trials}
    for turn in range(args.repeat):
        for source, loop, which in in_shuffled_order(trials, turn):
            spec = {"source": source, "loop": loop}
            rows[source, loop, which].append(run_trial("close_stall", spec, checkouts[which]))
    print(f"Machine: {machine()}")
    previous = f" --previous {args.previous}" if args.previous else ""
    print(
        f"Command: sudo .venv/bin/python -m benchmarks.close_stall --repeat {args.repeat} "
        f"--loops {args.loops}{previous}"
    )
    print(
        f"Medians of {args.repeat} closes each, in turns (each in its own shuffled order), each "
        "in a fresh process.\n"
    )
    print("| source (tracepoints) | loop | aiobpf | close (ms) | longest loop stall (ms) |")
    print("|---|---|---|---|---|")
    for (source, loop, which), results in rows.items():
        close = statistics.median(r["close_ms"] for r in results)
        stall = statistics.median(r["stall_ms"] for r in results)
        label = "this checkout" if which == "this" else args.previous
        print(f"| {source} ({SOURCES[source]}) | {loop} | {label} | {close:.0f} | {stall:.0f} |")


if __name__ == "__main__":
    main()
