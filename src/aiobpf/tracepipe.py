"""The tracefs trace pipe as an async source of parsed lines (the seed's hello world channel).

``bpf_trace_printk`` writes to one pipe shared by every tracer on the machine, and reading the
pipe *consumes* lines: two readers split the lines between them, and a line carries nothing that
says which BPF program printed it. Filter by what you know (the function, a message prefix, a
pid), or use a ring buffer log channel (:func:`aiobpf.hello_world`) for lines that are yours
alone.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import deque
from collections.abc import Callable

import anyio
import anyio.lowlevel
import attrs

from ._reader_gate import ReaderGate
from ._resource import AsyncResource
from ._tracefs import ensure_tracefs

__all__ = ["TraceLine", "TracePipe", "parse_trace_line", "trace_pipe"]

# "  bash-1234    [001] d..31  1234.567890: bpf_trace_printk: Hello World!"
# (with the record-tgid option a "(  1234)" column follows the pid)
_LINE = re.compile(
    r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>\S{4,6})\s+)?(?P<timestamp>\d+\.\d+):\s+(?P<function>[^:]+):\s?(?P<message>.*)$"
)


@attrs.frozen
class TraceLine:
    """One line of the trace pipe. ``timestamp`` is the trace clock, in seconds."""

    task: str
    pid: int
    cpu: int
    flags: str
    timestamp: float
    function: str
    message: str


def parse_trace_line(line: str) -> TraceLine | None:
    """Parses a trace pipe line; None for a line not in the trace format (comments, lost-event
    notices)."""
    match = _LINE.match(line)
    if match is None:
        return None
    return TraceLine(
        task=match["task"],
        pid=int(match["pid"]),
        cpu=int(match["cpu"]),
        flags=match["flags"] or "",
        timestamp=float(match["timestamp"]),
        function=match["function"].strip(),
        message=match["message"],
    )


class TracePipe(AsyncResource):
    """An async source of :class:`TraceLine` from ``<tracefs>/trace_pipe``.

    Waits on the pipe's fd (it is pollable); reads everything available per wake-up.
    **Cancellation**: lines read but not yet handed out stay queued for the next iteration.
    **Memory**: one read's worth of lines (64 KiB of text) at most.
    **Loss**: the kernel's trace buffer overwrites old lines when nobody reads; other readers of
    the pipe take lines too. Neither can be seen from here.
    """

    def __init__(self, *, keep: Callable[[TraceLine], bool] | None = None) -> None:
        self._path = ensure_tracefs() / "trace_pipe"
        self._keep = keep
        self._fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._partial = b""
        self._lines: deque[TraceLine] = deque()
        self._closed = False
        self._gate = ReaderGate()

    def _read_available(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for raw in complete:
            line = parse_trace_line(raw.decode(errors="replace"))
            if line is not None and (self._keep is None or self._keep(line)):
                self._lines.append(line)

    def __aiter__(self) -> TracePipe:
        return self

    async def __anext__(self) -> TraceLine:
        if self._closed:
            raise StopAsyncIteration
        if self._lines:
            await anyio.lowlevel.checkpoint()
            return self._lines.popleft()
        with self._gate.reading():
            while not self._lines:
                if not await self._gate.wait_readable(self._fd) or self._closed:
                    raise StopAsyncIteration
                self._read_available()
            return self._lines.popleft()

    async def aclose(self) -> None:
        """Closes the pipe; a task waiting on it ends its loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._gate.wake_and_wait()
        os.close(self._fd)

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        warnings.warn("trace pipe was not closed", ResourceWarning, stacklevel=2, source=self)
        self._closed = True
        os.close(self._fd)


def trace_pipe(*, keep: Callable[[TraceLine], bool] | None = None) -> TracePipe:
    """The trace pipe; ``keep`` selects lines (for example ``lambda l: l.pid == child.pid``).

    Raises :class:`aiobpf.TracefsError` when tracefs cannot be found or mounted, and
    :class:`PermissionError` without the right to read it.
    """
    return TracePipe(keep=keep)
