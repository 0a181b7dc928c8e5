"""``aiobpf tcpconnect``: one line per TCP connect attempt, as BCC's tcpconnect prints them,
from the ``sock:inet_sock_set_state`` tracepoint (no kprobes), or :mod:`aiobpf.schema` connect
records with ``--json``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from ..schema import connect_record
from . import _options as option
from ._running import Stop
from ._snoop import snoop
from ._text import printable

if TYPE_CHECKING:
    from ..programs import ConnectEvent

__all__ = ["add_parser"]

HEADER = f"{'PID':>7} {'UID':>6} {'COMM':<16} {'IP':>2} {'SADDR':<26} {'DADDR':<26} DPORT"


def line(event: ConnectEvent) -> str:
    return (
        f"{event.pid:>7} {event.uid:>6} {printable(event.comm):<16} {event.ip:>2} "
        f"{event.saddr:<26} {event.daddr:<26} {event.dport}"
    )


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import connect_events

    source = connect_events(
        uid=args.uid, pid=args.pid, port=args.port, max_latency=args.max_latency
    )
    await snoop(
        source,
        noun="connects",
        header=HEADER,
        line=line,
        record=connect_record,
        args=args,
        out=out,
        stop=stop,
    )


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
