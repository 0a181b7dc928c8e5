"""A recording played back as a source: the JSON lines ``aiobpf execsnoop --json`` writes
(:mod:`aiobpf.schema`) come back as the same typed events, through the same operators, with no
privileges and no kernel, so that pipelines are tested in CI and notebooks and incidents are
replayed.

The file is read in chunks in a worker thread (a line at a time through a thread would cost a
thread hop per event) and split into lines on the loop. ``lost`` records come back as the
source's ``dropped``, so ``received + dropped`` is what the recorded source saw and lost.
"""

from __future__ import annotations

import collections
import json
import math
import os
from typing import TYPE_CHECKING, Any, BinaryIO, Self

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs
from anyio.abc import ObjectReceiveStream

from ..errors import RecordingError
from ..schema import event_from_record

if TYPE_CHECKING:
    from ..programs import ExecveEvent

__all__ = ["Replay", "ReplayStats", "replay"]

#: Bytes read from the file at a time.
CHUNK = 1 << 20

#: The longest line a recording may have (an exec event is at most about 20 KiB of JSON).
MAX_LINE = 1 << 20


@attrs.frozen
class ReplayStats:
    """``received``: events handed out; ``dropped``: what the recording says its source lost
    (its ``lost`` records), up to where the replay has read; ``recorded_seen`` and
    ``recorded_lost``: its ``summary``, once read (None before, or for a recording cut
    short); ``skipped``: records of other types (counts of other tools)."""

    received: int
    dropped: int
    skipped: int
    recorded_seen: int | None
    recorded_lost: int | None


class Replay(ObjectReceiveStream["ExecveEvent"]):
    """An async source of the :class:`aiobpf.ExecveEvent`\\ s of a recording (see
    :func:`replay`).

    Cancellation: a receive cancelled while it reads or waits loses nothing (the events stay
    queued). Memory: one chunk of the file and the events of one chunk. Loss: none of its own;
    the recording's losses are reported in :attr:`stats`.
    """

    def __init__(self, path: str | os.PathLike[str], *, speed: float | None) -> None:
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be None or a finite number > 0, got {speed!r}")
        self.path = os.fspath(path)
        self._speed = speed
        self._file: BinaryIO | None = None
        self._ended = self._closed = False
        self._partial = b""
        self._line = 0
        self._ready: collections.deque[ExecveEvent] = collections.deque()
        self._received = self._dropped = self._skipped = 0
        self._seen: int | None = None
        self._lost: int | None = None
        self._start: tuple[float, float] | None = None  # (first event's time, loop time then)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def open(self) -> None:
        """Opens the file; idempotent. Raises :class:`OSError` when it cannot be read."""
        if self._closed:
            raise anyio.ClosedResourceError(f"the replay of {self.path} is closed")
        if self._file is None:
            self._file = await anyio.to_thread.run_sync(open, self.path, "rb")

    @property
    def stats(self) -> ReplayStats:
        return ReplayStats(self._received, self._dropped, self._skipped, self._seen, self._lost)

    async def receive(self) -> ExecveEvent:
        """The next event, at its recorded pace when a ``speed`` was given. Raises
        :class:`anyio.EndOfStream` at the end of the recording, :class:`aiobpf.RecordingError`
        for a line that is not of the schema (naming the line)."""
        if self._closed:
            raise anyio.ClosedResourceError(f"the replay of {self.path} is closed")
        await self.open()
        while not self._ready:
            if self._ended:
                raise anyio.EndOfStream
            await self._read_chunk()
        event = self._ready[0]
        await self._pace(event.time)
        self._ready.popleft()
        self._received += 1
        return event

    async def _pace(self, at: float) -> None:
        if self._speed is None:
            await anyio.lowlevel.checkpoint()
            return
        now = anyio.current_time()
        if self._start is None:
            self._start = (at, now)
        first, started = self._start
        await anyio.sleep_until(started + (at - first) / self._speed)

    async def _read_chunk(self) -> None:
        assert self._file is not None
        chunk = await anyio.to_thread.run_sync(self._file.read, CHUNK)
        if not chunk:
            self._ended = True
            chunk = b"\n" if self._partial else b""
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            raise RecordingError(
                f"{self.path}, line {self._line + len(lines) + 1}: longer than {MAX_LINE} bytes"
            )
        for line in lines:
            self._line += 1
            if line.strip():
                self._take(line)

    def _take(self, line: bytes) -> None:
        where = f"{self.path}, line {self._line}"
        try:
            record: Any = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise RecordingError(f"{where}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise RecordingError(f"{where}: not a JSON object")
        kind = record.get("type")
        try:
            if kind == "exec":
                self._ready.append(event_from_record(record))
            elif kind == "lost":
                self._dropped += _count(record, "count")
            elif kind == "summary":
                self._seen, self._lost = _count(record, "seen"), _count(record, "lost")
            else:
                self._skipped += 1
        except RecordingError as exc:
            raise RecordingError(f"{where}: {exc}") from None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ExecveEvent:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Closes the file; idempotent."""
        self._closed = True
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _count(record: dict[str, Any], name: str) -> int:
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordingError(f"a {record.get('type')} record whose {name!r} is not a count")
    return value


def replay(path: str | os.PathLike[str], *, speed: float | None = None) -> Replay:
    """The exec events of a recording (``aiobpf execsnoop --json > FILE``) as a source, like
    :func:`aiobpf.execve_events`: ``async with aiobpf.replay("run.jsonl") as events: async for
    event in events``. ``speed``: None plays it as fast as it can be read; 1.0 at the pace it
    was recorded (2.0 twice as fast). Needs no privileges. Raises :class:`ValueError` for a bad
    ``speed``; opening, :class:`OSError` for a file that cannot be read; reading,
    :class:`aiobpf.RecordingError` for a line that is not of :mod:`aiobpf.schema`."""
    return Replay(path, speed=speed)
