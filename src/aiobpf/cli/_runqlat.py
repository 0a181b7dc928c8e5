"""``aiobpf runqlat``: run queue latency as a log2 histogram of microseconds, as BCC's and
libbpf-tools' runqlat draw it (:func:`aiobpf.run_queue_latency`)."""

from __future__ import annotations

import argparse
from typing import TextIO

from . import _options as option
from ._histograms import add_histogram_options, reading_of, show_histograms
from ._running import Stop

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import run_queue_latency

    source = run_queue_latency(pid=args.pid, **reading_of(args))
    await show_histograms(source, "usecs", "waits", args, out, stop)


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tool = tools.add_parser(
        "runqlat", help="how long tasks wait to run once runnable: a histogram (microseconds)"
    )
    tool.add_argument("--pid", type=option.pid, help="only this process (in the kernel)")
    add_histogram_options(tool)
    tool.set_defaults(run=run)
