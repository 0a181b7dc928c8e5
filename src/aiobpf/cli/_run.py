"""``aiobpf run [--json] [-o FILE] -- CMD ARGS...``: runs a command, as strace does, and tells
what it and every process below it did: each exec and each exit, as an indented tree (or
:mod:`aiobpf.schema` records with ``--json``), then a summary; never into the command's own
output (stderr, or ``-o FILE``). Exits with the command's status (128 + the signal's number
when a signal ended it, as a shell does); aiobpf's own failures before the command runs exit
125, as ``timeout`` and ``env`` do; a command not found is 127, not executable 126."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING, TextIO

import anyio

from ..errors import AiobpfError
from ..schema import process_record, summary_record
from ._exitsnoop import ending
from ._running import Losses, Stop
from ._text import printable

if TYPE_CHECKING:
    from ..programs import TracedCommand
    from ..programs._process import ProcessEvent

__all__ = ["add_parser"]

#: What aiobpf run exits with when it fails before the command runs.
OWN_FAILURE = 125


class _Tree:
    """The tree's output: each event at its depth below the command, and the tallies."""

    def __init__(self, out: TextIO, as_json: bool, root: int) -> None:
        self.out, self.as_json = out, as_json
        self.depth = {root: 0}
        self.processes = {root}
        self.failures = 0

    def show(self, event: ProcessEvent) -> None:
        depth = self.depth.setdefault(event.pid, self.depth.get(event.ppid, -1) + 1)
        if event.type == "fork":
            self.processes.add(event.pid)
            return  # the tree shows execs and exits; a fork is where the indentation comes from
        if event.type == "exit" and event.failed:
            self.failures += 1
        if self.as_json:
            print(json.dumps(process_record(event)), file=self.out)
            return
        indent = "  " * max(depth, 0)
        if event.type == "exec":
            said = f"exec {printable(event.filename)}"
        else:
            said = f"exit {ending(event)} after {event.duration_s:.3f} s"
        print(f"{indent}{event.pid} {printable(event.comm)}: {said}", file=self.out)


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> int:
    from ..programs import trace_command
    from ..programs._process import decode

    command: list[str] = args.command
    trace: TextIO = args.trace
    with trace if trace is not sys.stderr else contextlib.nullcontext(trace):
        # the command's own input and output are the terminal's (or the caller's)
        async with trace_command(command, stdin=None, stdout=None, stderr=None) as traced:
            tree = _Tree(trace, args.json, traced.pid)
            losses = Losses(trace, args.json)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_pass_signals_on, traced)
                async for batch in traced.events.batches():
                    events = decode(batch)
                    for event in events:
                        tree.show(event)
                    trace.flush()
                    losses.update(traced.events.stats.dropped)
                    if any(traced.is_end(event) for event in events):
                        break
                tasks.cancel_scope.cancel()
            for event in decode(traced.events.drain()):  # what the tree did meanwhile
                tree.show(event)
            losses.update(traced.events.stats.dropped)
            status = await traced.process.wait()
        counts = {"processes": len(tree.processes), "failures": tree.failures}
        if args.json:
            seen = len(tree.processes)
            text = json.dumps(summary_record(seen, losses.reported, **counts))
        else:
            text = (
                f"-- {counts['processes']} processes, {counts['failures']} failed, "
                f"{losses.reported} events lost"
            )
        print(text, file=trace, flush=True)
    return status if status >= 0 else 128 - status


def _open_trace(args: argparse.Namespace) -> None:
    """Where the trace goes, opened before anything runs: a file that cannot be written is
    aiobpf run's own failure."""
    if not args.output:
        args.trace = sys.stderr
        return
    try:
        args.trace = open(args.output, "w")  # noqa: SIM115 -- closed by run()
    except OSError as exc:
        raise AiobpfError(f"cannot write the trace to {args.output}: {exc.strerror}") from exc


async def _pass_signals_on(traced: TracedCommand) -> None:
    """SIGINT and SIGTERM go to the command, which decides how to end: aiobpf run ends with
    it."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for number in signals:
            with contextlib.suppress(ProcessLookupError):
                traced.process.send_signal(number)


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runner = tools.add_parser(
        "run",
        help="run a command and trace what it and every process below it exec and how each ends",
        usage="aiobpf run [--json] [-o FILE] -- CMD [ARGS...]",
    )
    runner.add_argument("--json", action="store_true", help='NDJSON "exec"/"exit" records')
    runner.add_argument(
        "-o", "--output", metavar="FILE", help="write the trace to FILE (default: stderr)"
    )
    runner.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    runner.set_defaults(
        run=run, own_signals=True, failure_status=OWN_FAILURE, check=_check, prepare=_open_trace
    )


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The command after ``--``; none is aiobpf run's own failure (125)."""
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.exit(OWN_FAILURE, "aiobpf run: no command to run: aiobpf run -- CMD [ARGS...]\n")
