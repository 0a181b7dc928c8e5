"""Operators over time and over several streams: batching and merging."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any, Generic, Self, TypeVar

import anyio
import anyio.abc
from anyio import AsyncContextManagerMixin

from ._core import ITEMS_PER_CHECKPOINT, Operator, Stream, aclose_stream, receive_fast

__all__ = ["Merge", "batch", "merge"]

T = TypeVar("T")


class _Batched(Stream[list[T]]):
    def __init__(self, upstream: AsyncIterable[T], size: int, max_delay: float | None) -> None:
        super().__init__(upstream)
        self._size = size
        self._max_delay = max_delay
        self._ended = False

    async def __anext__(self) -> list[T]:
        if self._ended:
            raise StopAsyncIteration
        items: list[T] = []
        deadline: float | None = None
        while len(items) < self._size:
            try:
                if deadline is None:
                    item = await self._iterator.__anext__()
                else:
                    with anyio.move_on_at(deadline) as scope:
                        item = await self._iterator.__anext__()
                    if scope.cancelled_caught:
                        break  # max_delay has passed since the batch's first item
            except StopAsyncIteration:
                self._ended = True
                if items:
                    return items
                raise
            items.append(item)
            if deadline is None and self._max_delay is not None:
                deadline = anyio.current_time() + self._max_delay
        return items


def batch(size: int, max_delay: float | None = None) -> Operator[Any, list[Any]]:
    """Lists of up to ``size`` items: a list is handed out when full, or ``max_delay`` seconds
    after its first item arrived, whichever comes first (the last one when the stream ends).

    Waiting for ``max_delay`` cancels the pending read of the upstream, so the upstream must lose
    nothing to cancellation (aiobpf sources and operators do not).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a whole number >= 1, got {size!r}")
    if max_delay is not None and not (max_delay > 0 and math.isfinite(max_delay)):
        raise ValueError(
            f"max_delay must be a finite number > 0 seconds or None, got {max_delay!r}"
        )
    return Operator(lambda stream: _Batched(stream, size, max_delay), f"batch({size})")


class Merge(AsyncContextManagerMixin, Generic[T]):
    """Items of several streams as they come, through one bounded buffer.

    An async context manager: it runs one task per stream (so it needs ``async with``), ends
    when every stream has ended, and on exit stops the tasks and closes every stream.
    """

    def __init__(self, streams: tuple[AsyncIterable[T], ...], buffer_size: int) -> None:
        self._streams = streams
        self._send, self._receive = anyio.create_memory_object_stream[T](buffer_size)
        self._handed = 0

    async def _pump(self, stream: AsyncIterable[T], send: Any) -> None:
        async with send:
            count = 0
            async for item in stream:
                count += 1
                try:
                    if count % ITEMS_PER_CHECKPOINT == 0:
                        raise anyio.WouldBlock  # take the awaiting path now and then
                    send.send_nowait(item)  # no trip through the event loop per item
                except anyio.WouldBlock:
                    await send.send(item)

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        """Pumps every stream in a task of its own while entered; leaving stops them and closes
        the streams."""
        try:
            async with anyio.create_task_group() as tasks:
                async with self._send:
                    for stream in self._streams:
                        tasks.start_soon(self._pump, stream, self._send.clone())
                try:
                    yield self
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            self._receive.close()
            with anyio.CancelScope(shield=True):
                for stream in self._streams:
                    await aclose_stream(stream)

    def __aiter__(self) -> Merge[T]:
        return self

    async def __anext__(self) -> T:
        self._handed += 1
        return await receive_fast(self._receive, self._handed)


def merge(*streams: AsyncIterable[T], buffer_size: int = 1024) -> Merge[T]:
    """A :class:`Merge` of ``streams``; use it with ``async with``."""
    return Merge(streams, buffer_size)
