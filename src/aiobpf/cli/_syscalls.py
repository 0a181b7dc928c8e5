"""``aiobpf syscalls``: the top syscalls per interval, counted in the kernel by the syscall
dispatcher's fall-through counts."""

from __future__ import annotations

import argparse
import json
import time
from typing import TextIO

import anyio

from . import _options as option
from ._running import Stop
from ._text import CLEAR

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import SyscallDispatch

    in_place = out.isatty() and not args.json
    async with SyscallDispatch(tgids=args.pid or (), default="count") as dispatch:
        previous: dict[str, int] = {}
        try:
            with stop.running():
                deadline = anyio.current_time()
                while True:
                    deadline += args.interval
                    await anyio.sleep_until(deadline)
                    totals = dispatch.fallthrough_counts()
                    window = {name: n - previous.get(name, 0) for name, n in totals.items()}
                    window = {name: n for name, n in window.items() if n}
                    previous = totals
                    if args.json:
                        largest = sorted(window.items(), key=lambda item: (-item[1], item[0]))
                        counts = dict(largest[: args.top])  # --top applies to JSON too
                        line = {"type": "counts", "time": time.time(), "counts": counts}
                        print(json.dumps(line), file=out, flush=True)
                        continue
                    rows = sorted(window.items(), key=lambda item: (-item[1], item[0]))
                    lines = [
                        f"{time.strftime('%H:%M:%S')}  syscalls in the last {args.interval:g} s",
                        "",
                    ]
                    lines += [f"{'SYSCALL':<24} {'CALLS':>10}"]
                    lines += [f"{name:<24} {count:>10}" for name, count in rows[: args.top]]
                    text = "\n".join(lines)
                    print(
                        (CLEAR if in_place else "") + text + ("" if in_place else "\n"),
                        file=out,
                        flush=True,
                    )
        finally:
            # counted in an array per syscall: nothing can be lost, so the totals are the tally
            totals = dispatch.fallthrough_counts()
            if args.json:
                print(json.dumps({"type": "summary", "counts": totals}), file=out, flush=True)
            else:
                print(f"-- {sum(totals.values())} syscalls counted", file=out, flush=True)


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calls = tools.add_parser("syscalls", help="top syscalls per interval, counted in the kernel")
    calls.add_argument(
        "--pid", type=option.pid, action="append", help="only this process (repeatable)"
    )
    calls.add_argument(
        "--interval", type=option.positive, default=2.0, help="seconds per reading (2)"
    )
    calls.add_argument("--top", type=option.count, default=10, help="rows to show (10)")
    option.add_json(calls, '{"time": ..., "counts": {"<name>": n}} per interval')
    option.add_duration(calls)
    calls.set_defaults(run=run)
