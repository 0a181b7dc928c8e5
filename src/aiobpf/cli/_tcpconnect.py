"""``aiobpf tcpconnect``: one line per TCP connect attempt, as BCC's tcpconnect prints them,
from the ``sock:inet_sock_set_state`` tracepoint (no kprobes), or :mod:`aiobpf.schema` connect
records with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TextIO

from ..schema import connect_record, summary_record
from . import _options as option
from ._running import Costs, Losses, Stop
from ._text import printable

if TYPE_CHECKING:
    from ..programs._connects import ConnectEvent

__all__ = ["add_parser"]

HEADER = f"{'PID':>7} {'UID':>6} {'COMM':<16} {'IP':>2} {'SADDR':<26} {'DADDR':<26} DPORT"


def line(event: ConnectEvent) -> str:
    return (
        f"{event.pid:>7} {event.uid:>6} {printable(event.comm):<16} {event.ip:>2} "
        f"{event.saddr:<26} {event.daddr:<26} {event.dport}"
    )


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs._connects import connect_events

    source = connect_events(
        uid=args.uid, pid=args.pid, port=args.port, max_latency=args.max_latency
    )
    losses = Losses(out, args.json)
    costs = Costs(args.program_stats)
    seen = 0
    with costs.measuring():
        async with source as connects:
            if args.json:
                print("aiobpf tcpconnect: tracing connects", file=sys.stderr, flush=True)
            else:
                print(HEADER, file=out, flush=True)

            def show(events: list[ConnectEvent]) -> None:
                nonlocal seen
                seen += len(events)
                for event in events:
                    text = json.dumps(connect_record(event)) if args.json else line(event)
                    print(text, file=out)

            try:
                with stop.running():
                    async for batch in connects.batches():
                        show(connects.decode(batch))
                        out.flush()
                        losses.update(connects.stats.dropped)
                show(connects.decode(connects.drain()))
                losses.update(connects.stats.dropped)
            finally:
                costs.take(connects)
                lost = losses.reported
                if args.json:
                    text = json.dumps(summary_record(seen, lost, **costs.fields()))
                else:
                    text = f"-- {seen} connects seen, {lost} events lost{costs.text(seen + lost)}"
                print(text, file=out, flush=True)


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port (1 to 65535), got {text!r}")
    return value


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    snoop = tools.add_parser(
        "tcpconnect", help="one line per TCP connect attempt: who, from where, to where"
    )
    snoop.add_argument("--uid", type=option.uid, help="only this user (in the kernel)")
    snoop.add_argument("--pid", type=option.pid, help="only this process (in the kernel)")
    snoop.add_argument(
        "--port", type=_port, help="only connects to this destination port (in the kernel)"
    )
    option.add_json(snoop, '"connect" records, "lost" as drops are seen, "summary" at exit')
    option.add_duration(snoop)
    option.add_max_latency(snoop)
    option.add_program_stats(snoop)
    snoop.set_defaults(run=run)
