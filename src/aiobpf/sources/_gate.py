"""One task at a time reads a source; closing it wakes that task and waits for it to leave."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Iterator

import anyio

__all__ = ["ReaderGate"]


class ReaderGate:
    """The reader bookkeeping every fd-backed source shares.

    A source's buffers are not safe to share between two tasks reading at once, so a second
    reader gets :class:`anyio.BusyResourceError`. A close from another task must not release
    the fd (or unmap the ring) under a reader still waiting on it: :meth:`wake_and_wait` cancels
    that wait and returns once the reader has left.
    """

    def __init__(self) -> None:
        self._reading = False
        self._wait_scope: anyio.CancelScope | None = None
        self._reader_left: anyio.Event | None = None

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Held by the task reading; entering it while another task holds it is an error."""
        if self._reading:
            raise anyio.BusyResourceError("reading from")
        self._reading = True
        try:
            yield
        finally:
            self._reading = False
            if self._reader_left is not None:
                self._reader_left.set()

    async def wait_readable(self, fd: int) -> bool:
        """Waits until ``fd`` is readable: True, or False when :meth:`wake_and_wait` woke it."""
        return await self._until_woken(anyio.wait_readable(fd))

    async def sleep(self, seconds: float) -> bool:
        """Sleeps (a latency budget, say): True, or False when :meth:`wake_and_wait` cut it
        short, so that closing never waits a budget out."""
        return await self._until_woken(anyio.sleep(seconds))

    async def _until_woken(self, waiting: Awaitable[None]) -> bool:
        with anyio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                await waiting
            finally:
                self._wait_scope = None
        return not scope.cancelled_caught

    async def wake_and_wait(self) -> None:
        """Wakes the reader waiting on the fd, if any, and waits until it has left (shielded:
        the caller is releasing what the reader uses, so it must not be cancelled halfway)."""
        if not self._reading:
            return
        self._reader_left = anyio.Event()
        if self._wait_scope is not None:
            self._wait_scope.cancel()
        with anyio.CancelScope(shield=True):
            await self._reader_left.wait()
