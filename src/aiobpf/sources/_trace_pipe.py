"""The tracefs trace pipe as an async source of parsed lines (bpf_trace_printk's channel).

``bpf_trace_printk`` writes to one pipe shared by every tracer on the machine, and reading the
pipe *consumes* lines: two readers split the lines between them, and a line carries nothing that
says which BPF program printed it. Filter by what you know (the function, a message prefix, a
pid), or use a ring buffer log channel (:func:`aiobpf.hello_world`) for lines that are yours
alone.
"""

from __future__ import annotations

import os
import re
import secrets
from collections import deque
from collections.abc import Callable
from typing import Self

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import UnreliableObjectReceiveStream

from .._kernel.tracefs import ensure_tracefs
from .._resource import warn_unclosed
from ._gate import ReaderGate
from ._stats import TraceStats

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


class TracePipe(UnreliableObjectReceiveStream[TraceLine]):
    """An async source of :class:`TraceLine` from ``<tracefs>/trace_pipe``: an anyio
    ``UnreliableObjectReceiveStream``, since lines can be lost (below) unseen.

    Creating it touches nothing; entering it (``async with``), or the first ``receive()`` of a
    bare ``async for``, opens the pipe. It waits on the pipe's fd (it is pollable) and reads
    everything available per wake-up.
    **Cancellation**: lines read but not yet handed out stay queued for the next iteration.
    **Memory**: one read's worth of lines (64 KiB of text) at most.
    **Loss**: the kernel's trace buffer overwrites old lines when nobody reads; other readers of
    the pipe take lines too. Neither can be seen from here.
    """

    def __init__(
        self, *, keep: Callable[[TraceLine], bool] | None = None, fresh: bool = False
    ) -> None:
        self._keep = keep
        self._fresh = fresh
        self._marker: str | None = None  # with fresh: lines up to this one are history
        self._fd: int | None = None
        self._partial = b""
        self._lines: deque[TraceLine] = deque()
        self._received = 0
        self._skipped = 0
        self._stale = 0
        self._closed = False
        self._gate = ReaderGate()

    def open(self) -> None:
        """Opens the pipe (idempotent). Raises :class:`aiobpf.TracefsError` when tracefs cannot
        be found or mounted, :class:`PermissionError` without the right to read it, and
        :class:`anyio.ClosedResourceError` once closed."""
        if self._closed:
            raise anyio.ClosedResourceError("the trace pipe source is closed")
        if self._fd is None:
            root = ensure_tracefs()
            self._fd = os.open(root / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            if self._fresh:
                # the trace buffer keeps what nobody read: a marker written now, in the same
                # buffer and order, says where this reader's lines begin
                self._marker = f"aiobpf trace pipe opened {secrets.token_hex(8)}"
                with open(root / "trace_marker", "w") as marker:
                    marker.write(self._marker)

    async def __aenter__(self) -> Self:
        self.open()
        return self

    def _read_available(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        for raw in complete:
            line = parse_trace_line(raw.decode(errors="replace"))
            if line is None:
                continue
            if self._marker is not None:  # history, up to and including the marker
                if line.message.strip() == self._marker:
                    self._marker = None
                self._stale += 1
                continue
            if self._keep is None or self._keep(line):
                self._lines.append(line)
            else:
                self._skipped += 1

    async def receive(self) -> TraceLine:
        """The next line. Raises :class:`anyio.EndOfStream` when the source was closed while
        waiting, :class:`anyio.ClosedResourceError` when it was closed before, and
        :class:`anyio.BusyResourceError` when another task is waiting on it."""
        self.open()
        if self._lines:
            await anyio.lowlevel.checkpoint()
        else:
            with self._gate.reading():
                while not self._lines:
                    fd = self._fd
                    if fd is None or not await self._gate.wait_readable(fd) or self._closed:
                        raise anyio.EndOfStream
                    self._read_available(fd)
        self._received += 1
        return self._lines.popleft()

    async def __anext__(self) -> TraceLine:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> TraceStats:
        return TraceStats(received=self._received, skipped=self._skipped, stale=self._stale)

    async def aclose(self) -> None:
        """Closes the pipe; a task waiting on it ends its loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._gate.wake_and_wait()
        self._release()

    def _release(self) -> None:
        self._closed = True
        self._gate.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is None:
            return
        warn_unclosed(self, "trace pipe")
        self._release()


def trace_pipe(
    *, keep: Callable[[TraceLine], bool] | None = None, fresh: bool = False
) -> TracePipe:
    """The trace pipe, opened by ``async with``; ``keep`` selects lines (for example
    ``lambda l: l.pid == child.pid``). The kernel's trace buffer keeps lines nobody read yet,
    from before: ``fresh=True`` skips them (a marker written at the open says where they end;
    ``stats.stale`` counts them). Opening raises as :meth:`TracePipe.open`."""
    return TracePipe(keep=keep, fresh=fresh)
