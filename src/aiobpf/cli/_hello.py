"""``aiobpf hello``: "Hello World!" from a BPF program on every execve, from the program's own
log ring or the shared trace pipe (chapter 2 of *Learning eBPF*)."""

from __future__ import annotations

import argparse
import contextlib
from typing import TextIO

from . import _options as option
from ._running import Stop
from ._text import printable

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import hello_world
    from ..sources import trace_pipe

    keep = lambda line: line.message == "Hello World!"  # noqa: E731
    # with --trace-pipe the pipe opens first: from then on every line of the program is shown,
    # and what the trace buffer held from before is not (fresh)
    pipe = trace_pipe(keep=keep, fresh=True) if args.trace_pipe else None
    async with contextlib.AsyncExitStack() as held:
        if pipe is not None:
            await held.enter_async_context(pipe)
        logs = await held.enter_async_context(hello_world())
        seen = 0
        try:
            with stop.running():
                if pipe is not None:
                    async for line in pipe:
                        seen += 1
                        print(
                            f"{printable(line.task)}-{line.pid} [{line.cpu}] "
                            f"{line.timestamp:.6f}: {printable(line.message)}",
                            file=out,
                            flush=True,
                        )
                else:
                    async for record in logs:
                        seen += 1
                        print(
                            f"{record.level} {printable(record.comm)}-{record.pid} "
                            f"uid={record.uid}: {printable(record.text)}",
                            file=out,
                            flush=True,
                        )
        finally:
            # the trace pipe keeps no count of what it lost; the program's ring does
            lost = "" if pipe is not None else f", {logs.stats.dropped or 0} lost"
            print(f"-- {seen} hello lines seen{lost}", file=out, flush=True)


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hello = tools.add_parser("hello", help='"Hello World!" from a BPF program on every execve')
    hello.add_argument(
        "--trace-pipe",
        action="store_true",
        help="read the shared trace pipe instead of the program's own log ring",
    )
    option.add_duration(hello)
    hello.set_defaults(run=run)
