"""The ``aiobpf`` command: its parser, made of each tool's, and how it runs a tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .._defaults import BACKENDS
from ..errors import AiobpfError
from . import (
    _biolatency,
    _build,
    _doctor,
    _execsnoop,
    _exitsnoop,
    _hello,
    _opensnoop,
    _run,
    _runqlat,
    _serve,
    _syscalls,
    _tcpconnect,
    _top_uids,
)
from ._running import Tool, run_until_stopped

__all__ = ["main", "main_exit"]


class _Version(argparse.Action):
    """``--version``, with the version read from the package's metadata only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from .. import _version

        print(f"aiobpf {_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiobpf", description="Kernel events through eBPF, from async Python."
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print aiobpf's version and exit"
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="uvloop",
        help="event loop (default: uvloop, asyncio on uvloop's loop)",
    )
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    every = (_execsnoop, _exitsnoop, _opensnoop, _tcpconnect, _runqlat, _biolatency, _run, _hello,
             _syscalls, _serve, _top_uids, _build, _doctor)  # fmt: skip
    for tool in every:
        tool.add_parser(tools)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if check := getattr(args, "check", None):
        check(args, parser)
    tool: Tool = args.run
    try:
        if prepare := getattr(args, "prepare", None):
            prepare(args)
        backend, options = BACKENDS[args.backend]
        status = anyio.run(
            run_until_stopped, tool, args, sys.stdout, backend=backend, backend_options=options
        )
    except KeyboardInterrupt:
        return 0  # Ctrl-C before the tool could catch it: every source was closed on the way out
    except AiobpfError as exc:
        print(f"aiobpf {args.tool}: {exc}", file=sys.stderr)
        return int(getattr(args, "failure_status", 1))
    return status


def main_exit() -> None:
    """Entry point of the installed ``aiobpf`` script."""
    sys.exit(main())
