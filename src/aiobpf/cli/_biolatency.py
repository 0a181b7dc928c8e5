"""``aiobpf biolatency``: block I/O latency on the device as a log2 histogram of
microseconds, as BCC's and libbpf-tools' biolatency draw it (:func:`aiobpf.block_io_latency`)."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..errors import AiobpfError
from ._histograms import add_histogram_options, reading_of, show_histograms
from ._running import Stop

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import block_io_latency

    try:
        source = block_io_latency(disk=args.disk, **reading_of(args))
    except ValueError as exc:  # an unknown disk: said as the tools' other errors are
        raise AiobpfError(str(exc)) from None
    await show_histograms(source, "usecs", "I/Os", args, out, stop)


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tool = tools.add_parser(
        "biolatency", help="block I/O latency on the device: a histogram (microseconds)"
    )
    tool.add_argument("-d", "--disk", help="only this disk (sda, nvme0n1, loop0; in the kernel)")
    add_histogram_options(tool)
    tool.set_defaults(run=run)
