"""How every tool runs: until SIGINT, SIGTERM or ``--duration``, then its summary; and how a
tool tells what its source lost, in band with its output."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, TextIO

import anyio
import anyio.abc
import attrs

from ..errors import AiobpfError
from ..schema import lost_record

__all__ = ["Costs", "Losses", "Stop", "Tool", "run_until_stopped"]


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


class _Costed(Protocol):
    def program_costs(self) -> dict[str, Any]: ...


@attrs.define
class Costs:
    """``--program-stats``: the kernel's run statistics on while the tool runs, and its
    programs' runs and time in the summary (``program_runs``, ``program_run_ns`` in JSON)."""

    wanted: bool
    runs: int = 0
    run_ns: int = 0

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        if not self.wanted:
            yield
            return
        from ..sources import enable_program_stats

        with enable_program_stats():
            yield

    def take(self, source: _Costed) -> None:
        """Reads what the source's programs cost so far (while it is open)."""
        if self.wanted:
            costs = source.program_costs().values()
            self.runs = sum(cost.runs for cost in costs)
            self.run_ns = sum(cost.run_time_ns for cost in costs)

    def fields(self) -> dict[str, int]:
        return {"program_runs": self.runs, "program_run_ns": self.run_ns} if self.wanted else {}

    def text(self, events: int) -> str:
        """The summary's words for it, ``events`` the source produced (seen and lost)."""
        if not self.wanted:
            return ""
        per_event = f", {self.run_ns / events:,.0f} ns per event" if events else ""
        return f"; its programs ran {self.runs:,} times, {self.run_ns / 1e6:.3f} ms{per_event}"
