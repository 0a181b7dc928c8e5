"""``aiobpf exitsnoop``: one line per process that ends, with how it ended and how long it
lived, as BCC's and libbpf-tools' exitsnoop print them, or :mod:`aiobpf.schema` exit records
with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..schema import process_record, summary_record
from . import _options as option
from ._running import Losses, Stop
from ._text import printable

if TYPE_CHECKING:
    from ..programs import ProcessExit

__all__ = ["add_parser", "ending"]

HEADER = f"{'TIME':<8} {'PCOMM':<16} {'PID':>7} {'PPID':>7} {'TID':>7} {'AGE(s)':>8}  EXIT"


def ending(event: ProcessExit) -> str:
    """How the process ended, as a person says it: ``0``, ``code 3``, ``SIGKILL``,
    ``SIGSEGV (core dumped)``."""
    if event.signal is not None:
        return event.signal + (" (core dumped)" if event.core_dumped else "")
    return "0" if event.exit_code == 0 else f"code {event.exit_code}"


def line(event: ProcessExit) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    return (
        f"{clock:<8} {printable(event.comm):<16} {event.pid:>7} {event.ppid:>7} {event.tid:>7} "
        f"{event.duration_s:>8.2f}  {ending(event)}"
    )


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs._process import ProcessExit, decode, process_events

    source = process_events(max_latency=args.max_latency, kinds=("exit",))
    if args.uid:
        source.push_down("uid", frozenset(args.uid))  # in the kernel
    losses = Losses(out, args.json)
    seen = 0
    async with source as events:
        if args.json:
            print("aiobpf exitsnoop: tracing process exits", file=sys.stderr, flush=True)
        else:
            print(HEADER, file=out, flush=True)

        def show(event: object) -> None:
            nonlocal seen
            if not isinstance(event, ProcessExit) or (args.failed and not event.failed):
                return
            seen += 1
            text = json.dumps(process_record(event)) if args.json else line(event)
            print(text, file=out)

        try:
            with stop.running():
                async for batch in events.batches():
                    for event in decode(batch):
                        show(event)
                    out.flush()
                    losses.update(events.stats.dropped)
            for event in decode(events.ring.drain()):
                show(event)
            losses.update(events.stats.dropped)
        finally:
            if args.json:
                text = json.dumps(summary_record(seen, losses.reported))
            else:
                text = f"-- {seen} exits seen, {losses.reported} events lost"
            print(text, file=out, flush=True)


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    snoop = tools.add_parser(
        "exitsnoop", help="one line per process that ends: how (code, signal, core) and its age"
    )
    snoop.add_argument(
        "--uid", type=option.uid, action="append", help="only this user (repeatable; in the kernel)"
    )
    snoop.add_argument(
        "--failed", action="store_true", help="only processes that failed (code != 0, or a signal)"
    )
    option.add_json(snoop, '"exit" records, "lost" as drops are seen, "summary" at exit')
    option.add_duration(snoop)
    option.add_max_latency(snoop)
    snoop.set_defaults(run=run)
