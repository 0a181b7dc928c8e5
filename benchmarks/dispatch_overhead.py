"""Cost per syscall of the sys_enter dispatcher, measured on a getppid() loop.

`sys_enter` runs for every syscall of the machine, so what the dispatcher adds to each one
matters. A generator pinned to CPU 1 calls getppid() N times as fast as it can and reports its
own time; this runs it with no program attached, then with the dispatcher attached and the
generator out of scope, in scope with an empty slot (default: count), and with getppid's slot
holding the ignore, count and emit handlers (emit with a consumer draining the ring). Each
configuration runs --repeat times, interleaved; the table gives medians and the cost added to a
syscall against the no-program baseline of the same run.

    sudo .venv/bin/python -m benchmarks.dispatch_overhead [--calls 2000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import anyio

import aiobpf
from benchmarks import _loadgen
from benchmarks._common import CONSUMER_CPU, GENERATOR_CPU, ROOT, machine

CONFIGS = ["no program", "empty program", "out of scope", "empty slot", "ignore", "count", "emit"]

#: The floor: a raw tracepoint program that returns at once. Attaching anything to sys_enter
#: sends every syscall through the kernel's traced entry path, which costs by itself.
EMPTY_PROGRAM = "int empty(struct bpf_raw_tracepoint_args *ctx) { return 0; }"


async def _drain(events: aiobpf.operators.View[aiobpf.SyscallEvent], into: list[int]) -> None:
    async for _ in events:
        into[0] += 1


async def _trial(config: str, command: list[str], calls: int) -> dict[str, Any]:
    generator = _loadgen.start(command, calls, 0, GENERATOR_CPU)
    try:
        if config == "no program":
            return _finish(generator, calls)
        if config == "empty program":
            program = aiobpf.lowlevel.Program.compile(EMPTY_PROGRAM)
            try:
                program.attach_raw_tracepoint("sys_enter", "empty")
                return _finish(generator, calls)
            finally:
                program.close()
        scope = [1] if config == "out of scope" else [generator.pid]  # pid 1: someone else
        async with aiobpf.SyscallDispatch(tgids=scope, max_latency=0.001) as dispatch:
            if config in ("ignore", "count", "emit"):
                dispatch.install("getppid", config)
            received = [0]
            async with anyio.create_task_group() as tasks:
                if config == "emit":  # the others route nothing to a view
                    tasks.start_soon(_drain, dispatch.view("getppid"), received)
                await anyio.to_thread.run_sync(lambda: _start(generator))
                result = _finish(generator, calls)
                stats = dispatch.stats
                tasks.cancel_scope.cancel()
            result["in_scope"] = stats.in_scope
            result["events"] = stats.events.produced
            result["dropped"] = stats.events.dropped
            return result
    finally:
        generator.kill()
        generator.wait()


def _start(generator: subprocess.Popen[bytes]) -> None:
    assert generator.stdin is not None
    generator.stdin.write(b"g")
    generator.stdin.close()
    generator.wait()


def _finish(generator: subprocess.Popen[bytes], calls: int) -> dict[str, Any]:
    if generator.stdin is not None and not generator.stdin.closed:
        _start(generator)
    assert generator.stdout is not None
    offered, seconds = generator.stdout.read().split()
    assert int(offered) == calls
    return {"ns_per_call": float(seconds) * 1e9 / calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "dispatch_overhead.ndjson"
    )
    args = parser.parse_args()
    os.sched_setaffinity(0, {CONSUMER_CPU})
    command = _loadgen.build()
    rows: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as out:
        for repetition in range(args.repeat):
            for config in CONFIGS:
                row = {"config": config, "repetition": repetition}
                row.update(anyio.run(_trial, config, command, args.calls))
                rows.append(row)
                out.write(json.dumps(row) + "\n")
    print(f"Machine: {machine()}")
    print(
        "Command: sudo .venv/bin/python -m benchmarks.dispatch_overhead "
        f"--calls {args.calls} --repeat {args.repeat}"
    )
    print(f"getppid() loop, {args.calls} calls per run; medians of {args.repeat} runs.\n")
    columns = ["configuration", "ns per getppid", "added to a syscall (ns)"]
    columns.append("added beyond an empty program (ns)")
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|")
    medians = {
        config: statistics.median(r["ns_per_call"] for r in rows if r["config"] == config)
        for config in CONFIGS
    }
    base, floor = medians["no program"], medians["empty program"]
    for config, median in medians.items():
        added = "-" if config == "no program" else f"{median - base:.0f}"
        beyond = "-" if config in ("no program", "empty program") else f"{median - floor:.0f}"
        print(f"| {config} | {median:.0f} | {added} | {beyond} |")


if __name__ == "__main__":
    main()
