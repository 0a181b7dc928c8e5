"""What the histogram tools share (``runqlat``, ``biolatency``): a histogram per ``--interval``
(or one at the end, since the start), drawn as BCC draws it or as :mod:`aiobpf.schema`
histogram records with ``--json``, and a summary with what the kernel could not time."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from ..schema import histogram_record, summary_record
from . import _options as option
from ._running import Costs, Stop

if TYPE_CHECKING:
    from ..operators import Histogram
    from ..sources import LoadedMap

__all__ = ["add_histogram_options", "reading_of", "show_histograms"]


def _show(histogram: Histogram, unit: str, args: argparse.Namespace, out: TextIO) -> None:
    if args.json:
        print(json.dumps(histogram_record(histogram, unit)), file=out, flush=True)
        return
    clock = time.strftime("%H:%M:%S", time.localtime(histogram.time or time.time()))
    print(f"\n{clock}", file=out)
    print(histogram.render(unit) or f"     (no {unit} counted)", file=out, flush=True)


async def show_histograms(
    source: LoadedMap[Histogram],
    unit: str,
    what: str,
    args: argparse.Namespace,
    out: TextIO,
    stop: Stop,
) -> None:
    """Runs a histogram tool over ``source`` until stopped, then its summary (``what`` names
    the things counted: "waits")."""
    costs = Costs(args.program_stats)
    intervals = 0
    total = 0
    with costs.measuring():
        async with source as histograms:
            print(f"aiobpf {args.tool}: tracing (Ctrl-C ends)", file=_status(args, out), flush=True)
            try:
                with stop.running():
                    if args.interval is None:
                        await anyio.sleep_forever()  # one histogram at the end
                    async for histogram in histograms:
                        _show(histogram, unit, args, out)
                        intervals += 1
                        total += histogram.total
                        if args.count is not None and intervals >= args.count:
                            break
                if args.interval is None:
                    final = histograms.read()  # a snapshot: everything since the start
                    _show(final, unit, args, out)
                    total = final.total
            finally:
                costs.take(histograms)
                dropped = histograms.stats.dropped or 0
                if args.json:
                    text = json.dumps(summary_record(total, dropped, **costs.fields()))
                else:
                    text = f"-- {total} {what} counted, {dropped} not timed{costs.text(total)}"
                print(text, file=out, flush=True)


def _status(args: argparse.Namespace, out: TextIO) -> TextIO:
    import sys

    return sys.stderr if args.json else out


def add_histogram_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=option.positive,
        help="a histogram every so many seconds (default: one at the end, since the start)",
    )
    parser.add_argument(
        "--count", type=option.count, help="stop after this many intervals (with --interval)"
    )
    option.add_json(parser, '"histogram" records, and a "summary" at exit')
    option.add_duration(parser)
    option.add_program_stats(parser)


def reading_of(args: argparse.Namespace) -> dict[str, Any]:
    """How the source reads its map: each interval's counts, or (no ``--interval``) a
    snapshot at the end, since the start."""
    if args.interval is None:
        return {"interval": 3600.0, "mode": "snapshot"}
    return {"interval": args.interval, "mode": "delta"}
