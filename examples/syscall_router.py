"""Syscalls dispatched by opcode through a kernel tail-call table.

    sudo .venv/bin/python examples/syscall_router.py [--pid PID] [--duration 10]

execve, the timer syscalls and two ignored opcodes get slots in the program array (looked
up by name: numbers differ between architectures); everything else falls through and is counted.
"""

from __future__ import annotations

import argparse
import contextlib
import math

import anyio

import aiobpf

OTHER_TIMERS = ["timer_settime", "timer_gettime", "timer_getoverrun"]
IGNORED = ["access", "pipe"]  # opcodes 21 and 22 on x86-64


async def show(view: aiobpf.operators.View[aiobpf.SyscallEvent], text: str) -> None:
    async for event in view:
        print(f"{text}: {event.comm} (pid {event.pid})", flush=True)


async def main(pid: int | None, duration: float) -> None:
    tgids = [pid] if pid else []  # none: the whole machine
    async with aiobpf.SyscallDispatch(tgids=tgids, default="count") as dispatch:
        dispatch.install(["execve", "timer_create", "timer_delete", *OTHER_TIMERS], "emit")
        dispatch.install(IGNORED, "ignore")
        print("routing syscalls (Ctrl-C ends)", flush=True)
        with anyio.move_on_after(duration):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(show, dispatch.view("execve"), "Executing a program")
                tasks.start_soon(show, dispatch.view("timer_create"), "Creating a timer")
                tasks.start_soon(show, dispatch.view("timer_delete"), "Deleting the timer")
                tasks.start_soon(show, dispatch.view(*OTHER_TIMERS), "Some other timer operations")
        others = sorted(dispatch.fallthrough_counts().items(), key=lambda item: -item[1])
        stats = dispatch.stats
    for name, count in others[:10]:
        print(f"Another syscall: {name} x {count}")
    print(
        f"-- {stats.in_scope} syscalls in scope, {stats.fell_through} fell through, "
        f"{stats.ignored} ignored, {stats.events.produced} emitted, {stats.events.dropped} lost"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, help="only this process (default: the whole machine)")
    parser.add_argument("--duration", type=float, default=math.inf)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: everything detaches on the way out
        anyio.run(main, args.pid, args.duration)
