"""Lifecycle of the sources that own their BPF programs: open -> receive -> close, many times.

Each cycle compiles, loads and attaches a program (clang takes most of a cycle's time), receives
one real event, and closes. Every --every cycles, and at the end, the process's open fds and the
BPF objects behind them (programs, maps, links, perf events, from /proc/self/fd link targets)
and the kernel's own listing of programs and maps are compared with the baseline taken before
the first cycle. Raw tracepoint programs are freed by the kernel a moment after they are
detached (an RCU grace period), so the kernel listing is read once it has settled.

    sudo .venv/bin/python -m benchmarks.lifecycle [--cycles 1000] [--kinds ...] [--backend trio]

The kernel's listing is the whole machine's; programs and maps other live processes hold open
are left out of it, so other BPF users do not disturb the count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import aiobpf
from aiobpf.testing import held_bpf_objects, loaded_bpf_ids
from benchmarks._common import LOOPS, ROOT, machine, run_on

UID = 61071


def snapshot() -> dict[str, Any]:
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "objects": held_bpf_objects(),
        "programs": loaded_bpf_ids("prog", held_elsewhere=False),
        "maps": loaded_bpf_ids("map", held_elsewhere=False),
    }


async def settled(baseline: dict[str, Any]) -> dict[str, Any]:
    """A snapshot once the kernel has freed what was detached (or after five seconds)."""
    with anyio.move_on_after(5.0):
        while True:
            now = snapshot()
            if now["programs"] <= baseline["programs"] and now["maps"] <= baseline["maps"]:
                return now
            await anyio.sleep(0.05)  # the kernel frees detached raw tracepoints on its own time
    return snapshot()


# -- one cycle of each kind: open, receive one real event, close ---------------------------------


async def execve_events_cycle(program: Path) -> None:
    async with aiobpf.execve_events() as events:
        await anyio.run_process([str(program)])
        async for event in events:
            if event.filename == str(program):
                return


async def hello_world_cycle(program: Path) -> None:
    async with aiobpf.hello_world() as logs:
        process = await anyio.open_process([str(program)])
        await process.wait()
        async for record in logs:
            if record.pid == process.pid:
                return


async def execve_counts_cycle(program: Path) -> None:
    async with aiobpf.execve_counts(interval=0.05, uids=[UID]) as counts:
        await anyio.run_process(["setpriv", f"--reuid={UID}", "--clear-groups", str(program)])
        async for reading in counts:
            if reading.values.get(UID) == 1:
                return


async def syscall_events_cycle(program: Path) -> None:
    async with aiobpf.syscall_events(syscalls=["getppid"], tgids=[os.getpid()]) as events:
        os.getppid()
        await events.__anext__()


async def dispatch_cycle(program: Path) -> None:
    async with aiobpf.SyscallDispatch(tgids=[os.getpid()]) as dispatch:
        dispatch.install("getppid", "count")
        os.getppid()
        assert dispatch.counts().get("getppid") == 1


async def window_counts_cycle(program: Path) -> None:
    async with aiobpf.execve_window_counts("comm", every=0.05) as windows:
        await anyio.run_process([str(program)])
        async for window in windows:
            if window.counts.get(program.name[:15]):
                return


KINDS: dict[str, Callable[[Path], Awaitable[None]]] = {
    "execve_events": execve_events_cycle,
    "hello_world": hello_world_cycle,
    "execve_counts": execve_counts_cycle,
    "syscall_events": syscall_events_cycle,
    "SyscallDispatch": dispatch_cycle,
    "execve_window_counts": window_counts_cycle,
}


async def run(kind: str, cycles: int, every: int, program: Path) -> list[dict[str, Any]]:
    cycle = KINDS[kind]
    baseline = snapshot()
    rows = []
    started = time.monotonic()
    for number in range(1, cycles + 1):
        with anyio.fail_after(30):
            await cycle(program)
        if number % every == 0 or number == cycles:
            now = await settled(baseline)
            rows.append(
                {
                    "kind": kind,
                    "cycles": number,
                    "seconds": round(time.monotonic() - started, 1),
                    "fds": now["fds"] - baseline["fds"],
                    "objects": {
                        k: now["objects"].get(k, 0) - baseline["objects"].get(k, 0)
                        for k in set(now["objects"]) | set(baseline["objects"])
                    },
                    "programs_left": len(now["programs"] - baseline["programs"]),
                    "maps_left": len(now["maps"] - baseline["maps"]),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="compare with the baseline every")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--backend", choices=LOOPS, default="asyncio")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "out" / "lifecycle.ndjson"
    )
    args = parser.parse_args()
    program = Path("/tmp/aiobpf-lifecycle-me")
    program.write_bytes(Path("/bin/true").read_bytes())
    program.chmod(0o755)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with args.out.open("a") as out:
        for kind in args.kinds.split(","):
            for row in run_on(args.backend, run, kind, args.cycles, args.every, program):
                row["backend"] = args.backend
                rows.append(row)
                out.write(json.dumps(row) + "\n")
                out.flush()
    print(f"Machine: {machine()}")
    print(f"Command: sudo .venv/bin/python -m benchmarks.lifecycle {' '.join(sys.argv[1:])}\n")
    print("| source | loop | cycles | seconds | fds | BPF objects held | programs, maps left |")
    print("|---|---|---|---|---|---|---|")
    clean = True
    for row in rows:
        if row["cycles"] != args.cycles:
            continue
        held = ", ".join(f"{k} {v:+d}" for k, v in sorted(row["objects"].items()) if v) or "0"
        left = f"{row['programs_left']}, {row['maps_left']}"
        print(
            f"| {row['kind']} | {row['backend']} | {row['cycles']} | {row['seconds']} "
            f"| {row['fds']:+d} | {held} | {left} |"
        )
        clean = clean and row["fds"] == 0 and held == "0" and left == "0, 0"
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
