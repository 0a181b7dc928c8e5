"""What the event tools built on one ring share (``opensnoop``, ``tcpconnect``): a header, a
line (or an :mod:`aiobpf.schema` record) per event, losses told in band, and a summary with
what was seen, lost and, with ``--program-stats``, what the programs cost."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ..schema import summary_record
from ._running import Costs, Losses, Stop

if TYPE_CHECKING:  # the command imports no source (numpy) before a tool runs
    from ..sources import LoadedRing

__all__ = ["snoop"]

E = TypeVar("E")


async def snoop(
    source: LoadedRing[E],
    *,
    noun: str,
    header: str,
    line: Callable[[E], str],
    record: Callable[[E], dict[str, Any]],
    args: argparse.Namespace,
    out: TextIO,
    stop: Stop,
) -> None:
    """Runs a tool over ``source`` until stopped; ``noun`` names its events ("opens")."""
    losses = Losses(out, args.json)
    costs = Costs(args.program_stats)
    seen = 0

    def show(events: list[E]) -> None:
        nonlocal seen
        seen += len(events)
        for event in events:
            print(json.dumps(record(event)) if args.json else line(event), file=out)

    with costs.measuring():
        async with source as ring:
            # said once attached: from here on, every event is seen
            if args.json:
                print(f"aiobpf {args.tool}: tracing {noun}", file=sys.stderr, flush=True)
            else:
                print(header, file=out, flush=True)
            try:
                with stop.running():
                    async for batch in ring.batches():
                        show(ring.decode(batch))
                        out.flush()
                        losses.update(ring.stats.dropped)
                show(ring.decode(ring.drain()))  # what the kernel delivered before the stop
                losses.update(ring.stats.dropped)
            finally:
                costs.take(ring)
                lost = losses.reported
                if args.json:
                    text = json.dumps(summary_record(seen, lost, **costs.fields()))
                else:
                    text = f"-- {seen} {noun} seen, {lost} events lost{costs.text(seen + lost)}"
                print(text, file=out, flush=True)
