"""``aiobpf top-uids``: execve calls per user, counted in a kernel map and read every
interval (the seed's examples/top_uids.py as a tool)."""

from __future__ import annotations

import argparse
import json
import time
from typing import TextIO

from . import _options as option
from ._running import Losses, Stop
from ._text import CLEAR, user_name

__all__ = ["add_parser"]


def _largest(counts: dict[int, int], top: int) -> list[tuple[int, int]]:
    """The ``top`` largest counts, largest first (ties by uid): the table's rows, and --json's
    counts (--top applies to both)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]


def _top_table(counts: dict[int, int], top: int) -> str:
    rows = _largest(counts, top)
    lines = [time.strftime("%H:%M:%S") + "  execve calls per user since start", ""]
    lines.append(f"{'UID':>10}  {'USER':<16} {'EXECVE':>10}")
    lines += [f"{uid:>10}  {user_name(uid):<16} {count:>10}" for uid, count in rows]
    return "\n".join(lines)


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import execve_counts

    in_place = out.isatty() and not args.json
    losses = Losses(out, args.json, "exec calls not counted (map full)")
    async with execve_counts(interval=args.interval, uids=args.uid) as counts:
        try:
            with stop.running():
                async for reading in counts:
                    if args.json:
                        line = {
                            "type": "counts",
                            "time": reading.time,
                            "counts": {str(u): c for u, c in _largest(reading.values, args.top)},
                        }
                        print(json.dumps(line), file=out, flush=True)
                    else:
                        table = _top_table(reading.values, args.top)
                        print(
                            (CLEAR if in_place else "") + table + ("" if in_place else "\n"),
                            file=out,
                            flush=True,
                        )
                    losses.update(reading.dropped)
        finally:
            final = counts.read()
            losses.update(final.dropped)
            if args.json:
                totals = {str(uid): count for uid, count in final.values.items()}
                summary = {"type": "summary", "counts": totals, "lost": losses.reported}
                print(json.dumps(summary), file=out, flush=True)
            else:
                print(
                    f"-- {sum(final.values.values())} exec calls counted for "
                    f"{len(final.values)} users, {losses.reported} not counted",
                    file=out,
                    flush=True,
                )


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = tools.add_parser("top-uids", help="execve calls per user, counted in the kernel")
    top.add_argument(
        "--interval", type=option.positive, default=2.0, help="seconds between readings (2)"
    )
    top.add_argument("--top", type=option.count, default=10, help="rows to show (10)")
    top.add_argument(
        "--uid",
        type=option.uid,
        action="append",
        help="count only this user (repeatable; filtered in the kernel)",
    )
    option.add_json(top, '{"time": ..., "counts": {"<uid>": n}} per interval')
    option.add_duration(top)
    top.set_defaults(run=run)
