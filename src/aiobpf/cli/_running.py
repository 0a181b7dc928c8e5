"""How every tool runs: until SIGINT, SIGTERM or ``--duration``, then its summary; and how a
tool tells what its source lost, in band with its output."""

from __future__ import annotations

import argparse
import json
import math
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import anyio
import anyio.abc
import attrs

from ..errors import AiobpfError
from ..schema import lost_record

__all__ = ["Losses", "Stop", "Tool", "run_until_stopped"]


@attrs.define
class Stop:
    """When a tool's main loop ends: at SIGINT or SIGTERM (a signal task cancels the scope) or
    after ``--duration`` seconds of running. What follows the loop, the tool's summary, runs
    however it ended."""

    duration: float
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)

    def running(self) -> anyio.CancelScope:
        """The main loop's scope, its ``--duration`` counted from now (once attached)."""
        self.scope.deadline = anyio.current_time() + self.duration
        return self.scope


#: A tool: runs with its arguments, output and stop; returns its exit status (None: 0).
Tool = Callable[[argparse.Namespace, TextIO, Stop], Coroutine[Any, Any, int | None]]


async def run_until_stopped(tool: Tool, args: argparse.Namespace, out: TextIO) -> int:
    """Runs ``tool`` until it ends or a signal stops it; its exit status. An
    :class:`aiobpf.AiobpfError` comes out as itself, not inside a task group's group."""
    stop = Stop(getattr(args, "duration", math.inf))
    failure: AiobpfError | None = None
    status: int | None = None
    async with anyio.create_task_group() as tasks:

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    stop.scope.cancel()

        if not getattr(args, "own_signals", False):  # a tool that handles them itself
            await tasks.start(on_signals)
        try:
            status = await tool(args, out, stop)
        except BaseException as exc:
            failure = _only_aiobpf_error(exc)
            if failure is None:
                raise
        finally:
            tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure  # as itself, not wrapped in a task group's ExceptionGroup
    return status or 0


def _only_aiobpf_error(exc: BaseException) -> AiobpfError | None:
    """The AiobpfError that ``exc`` is, or that a task group wrapped alone (None otherwise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, AiobpfError) else None


@attrs.define
class Losses:
    """Tells what a tool's source lost as soon as its count moves, in-band with its output."""

    out: TextIO
    as_json: bool
    what: str = "lost"
    reported: int = 0

    def update(self, total: int | None) -> None:
        """Reports what was lost since the last report (``total``: the source's own count)."""
        if total is None or total <= self.reported:
            return
        count, self.reported = total - self.reported, total
        if self.as_json:
            print(json.dumps(lost_record(count)), file=self.out, flush=True)
        else:
            print(f"-- {count} {self.what}", file=self.out, flush=True)
