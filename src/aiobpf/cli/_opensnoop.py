"""``aiobpf opensnoop``: one line per open, openat and openat2, as libbpf-tools' opensnoop
prints them (and openat2, which it does not trace), or :mod:`aiobpf.schema` open records with
``--json``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from ..schema import open_record
from . import _options as option
from ._running import Stop
from ._snoop import snoop
from ._text import printable

if TYPE_CHECKING:
    from ..programs import OpenEvent

__all__ = ["add_parser"]

HEADER = f"{'PID':>7} {'UID':>6} {'COMM':<16} {'FD':>3} {'ERR':>3} PATH"


def line(event: OpenEvent) -> str:
    fd, err = (-1, -event.result) if event.failed else (event.result, 0)
    return (
        f"{event.pid:>7} {event.uid:>6} {printable(event.comm):<16} {fd:>3} {err:>3} "
        f"{printable(event.path)}"
    )


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import open_events

    source = open_events(
        uid=args.uid, pid=args.pid, failed=args.failed, max_latency=args.max_latency
    )
    await snoop(
        source,
        noun="opens",
        header=HEADER,
        line=line,
        record=open_record,
        args=args,
        out=out,
        stop=stop,
    )


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    snoop = tools.add_parser(
        "opensnoop", help="one line per open, openat and openat2: who, what path, what result"
    )
    snoop.add_argument("--uid", type=option.uid, help="only this user (in the kernel)")
    snoop.add_argument("--pid", type=option.pid, help="only this process (in the kernel)")
    snoop.add_argument(
        "-x", "--failed", action="store_true", help="only failed opens (in the kernel)"
    )
    option.add_json(snoop, '"open" records, "lost" as drops are seen, "summary" at exit')
    option.add_duration(snoop)
    option.add_max_latency(snoop)
    option.add_program_stats(snoop)
    snoop.set_defaults(run=run)
