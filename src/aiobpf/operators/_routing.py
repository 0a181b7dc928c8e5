"""Routing: one stream split into views by key, user space's version of a tail-call table."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Hashable
from typing import Any, Generic, Literal, Self, TypeVar, cast

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
import numpy as np
from anyio import AsyncContextManagerMixin

from ._core import ITEMS_PER_CHECKPOINT, aclose_stream, receive_fast

__all__ = ["Lost", "Policy", "Router", "View", "ViewStats", "route"]

T = TypeVar("T")


Policy = Literal["block", "drop_newest", "drop_oldest"]
_POLICIES = ("block", "drop_newest", "drop_oldest")


@attrs.frozen
class Lost:
    """In-band notice (``lost="inband"``): the view dropped ``count`` items since the last one.

    It is delivered before the next item that finds room in the view's buffer.
    """

    count: int


@attrs.frozen
class ViewStats:
    """What one view was given: ``delivered`` into its buffer, ``dropped`` by its policy."""

    delivered: int
    dropped: int


class View(Generic[T]):
    """One output of a :class:`Router`: the items whose key it was made for, in order.

    An async iterable that ends when the router stops. Its buffer holds ``buffer_size`` items;
    what happens when it is full is the router's policy. An item received is never lost to the
    consumer's cancellation (anyio memory object streams guarantee it).
    """

    def __init__(
        self, keys: frozenset[Hashable] | None, buffer_size: int, *, inband: bool = False
    ) -> None:
        self.keys = keys
        self._inband = inband
        self._unreported = 0
        self._send, self._receive = anyio.create_memory_object_stream[T](buffer_size)
        self._oldest = self._receive.clone()  # drop_oldest takes from here
        self.delivered = 0
        self.dropped = 0
        self._handed = 0  # items the consumer asked for
        self._handed_when_full = -1  # _handed when the view last filled and gave a turn
        self._closed = False

    @property
    def stats(self) -> ViewStats:
        return ViewStats(delivered=self.delivered, dropped=self.dropped)

    def __aiter__(self) -> View[T]:
        return self

    async def __anext__(self) -> T:
        self._handed += 1
        return await receive_fast(self._receive, self._handed)

    async def _deliver(self, item: T, policy: Policy) -> None:
        if self._closed:  # its consumer left: nobody waits for these, whatever the policy
            self.dropped += 1
            return
        if policy == "block":
            try:
                self._send.send_nowait(item)  # the common case: room in the buffer
            except anyio.WouldBlock:
                try:
                    await self._send.send(item)
                except anyio.BrokenResourceError:  # closed while the router waited on it
                    self.dropped += 1
                    return
        else:
            if self._unreported:
                try:
                    self._send.send_nowait(cast(T, Lost(self._unreported)))
                    self._unreported = 0
                except anyio.WouldBlock:
                    pass  # still full: report with a later item
            try:
                self._send.send_nowait(item)
            except anyio.WouldBlock:
                if not await self._room_after_a_turn(item):
                    self.dropped += 1
                    if self._closed:  # closed during the turn
                        return
                    self._unreported += self._inband
                    if policy == "drop_newest":
                        return
                    with contextlib.suppress(anyio.WouldBlock):  # a consumer may have taken one
                        self._oldest.receive_nowait()
                    self._send.send_nowait(item)
        self.delivered += 1

    async def _room_after_a_turn(self, item: T) -> bool:
        """A full view's consumer gets one turn before an item is dropped: whether ``item`` then
        found room.

        The router delivers many items between two yields, so a burst can fill a view whose
        consumer keeps up easily. It drops only when a consumer that had a turn since the view
        last filled did not make room; a consumer that took nothing since (stuck, or slower than
        the stream) gets no more turns, so the router never waits on it.
        """
        if self._handed == self._handed_when_full:
            return False
        self._handed_when_full = self._handed
        for _ in range(2):  # trio runs the tasks of a batch in random order: the consumer's
            await anyio.lowlevel.checkpoint()  # turn has come by the router's second one
            try:
                self._send.send_nowait(item)
            except anyio.WouldBlock:
                continue
            except anyio.BrokenResourceError:  # the consumer closed the view meanwhile
                return False
            return True
        return False

    def _finish(self) -> None:
        """No more items: the consumer drains what is buffered, then its loop ends."""
        self._send.close()
        self._oldest.close()

    def _close(self) -> None:
        self._finish()
        self._receive.close()

    async def aclose(self) -> None:
        """Stops receiving: the router drops this view's items from then on (counted in
        ``dropped``), whatever its policy, so a view nobody reads never holds up the others."""
        self._closed = True
        self._receive.close()
        self._oldest.close()  # with every receiver closed, a send waiting on it gives up
        await anyio.lowlevel.checkpoint()


class Router(AsyncContextManagerMixin, Generic[T]):
    """Splits one stream into views by key: user space's version of a tail-call table.

    ``router.view(59)`` gets the items whose ``key(item)`` is 59; ``router.view(222, 226)`` both;
    ``router.default()`` every item no view claims. An item with no view and no default is
    dropped and counted in :attr:`unrouted`, like a tail call into an empty slot.

    Use as an async context manager: it runs one task that reads ``stream`` and fills the views,
    and on exit stops it, ends every view and closes ``stream``. **Backpressure**: ``"block"``
    (default) waits for a full view, which stops reading the stream (a kernel ring then fills and
    its program counts the drops); ``"drop_newest"`` / ``"drop_oldest"`` keep reading and count
    the items a full view lost in that view's :attr:`View.stats`, and with ``lost="inband"``
    also tell its consumer with a :class:`Lost` item. A full view's consumer gets a turn before
    anything is dropped, so a burst larger than the buffer costs nothing to a consumer that
    keeps up; one that took nothing since its last turn loses items without holding the others.
    ``key`` may name a field: numpy batches are then split by that column into one sub-batch per
    view.
    """

    def __init__(
        self,
        stream: AsyncIterable[T],
        key: str | Callable[[T], Hashable],
        *,
        buffer_size: int = 1024,
        policy: Policy = "block",
        lost: Literal["count", "inband"] = "count",
    ) -> None:
        if lost not in ("count", "inband"):
            raise ValueError(f"lost must be 'count' or 'inband', got {lost!r}")
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size!r}")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {', '.join(_POLICIES)}, got {policy!r}")
        self._stream = stream
        self._field = key if isinstance(key, str) else None
        self._key: Callable[[T], Hashable] = (
            (lambda item: getattr(item, key)) if isinstance(key, str) else key
        )
        self._inband = lost == "inband"
        self._buffer_size = buffer_size
        self._policy: Policy = policy
        self._routes: dict[Hashable, View[T]] = {}
        self._default: View[T] | None = None
        self._views: list[View[T]] = []
        self.unrouted = 0

    def view(self, *keys: Hashable) -> View[T]:
        """A view of the items with one of ``keys``; raises ValueError for a key already routed."""
        if not keys:
            raise ValueError("view() needs at least one key; use default() for the rest")
        taken = [key for key in keys if key in self._routes]
        if taken:
            raise ValueError(f"keys {taken!r} already have a view")
        view: View[T] = View(frozenset(keys), self._buffer_size, inband=self._inband)
        self._routes.update(dict.fromkeys(keys, view))
        self._views.append(view)
        return view

    def default(self) -> View[T]:
        """The view of every item no other view claims (one per router)."""
        if self._default is None:
            self._default = View(None, self._buffer_size, inband=self._inband)
            self._views.append(self._default)
        return self._default

    async def _pump(self) -> None:
        routes, key, policy = self._routes, self._key, self._policy
        try:
            delivered = 0
            async for item in self._stream:
                delivered += 1
                if delivered % ITEMS_PER_CHECKPOINT == 0:
                    await anyio.lowlevel.checkpoint()  # deliveries rarely wait: let others run
                if self._field is not None and isinstance(item, np.ndarray):
                    parts = self._split(item)  # a batch: one sub-batch per key, vectorised
                else:
                    parts = [(routes.get(key(item), self._default), item)]
                for view, part in parts:
                    if view is None:
                        self.unrouted += len(part) if isinstance(part, np.ndarray) else 1
                        continue
                    try:
                        await view._deliver(part, policy)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        view.dropped += 1  # its consumer closed it
            for view in self._views:  # the stream ended: report the last losses, if any
                if view._unreported:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await view._send.send(cast(T, Lost(view._unreported)))
                    view._unreported = 0
        finally:
            for view in self._views:
                view._finish()

    def _split(self, batch: np.ndarray[Any, Any]) -> list[tuple[View[T] | None, Any]]:
        """Rows of a batch grouped by view (rows with no view go to the default or are None)."""
        assert self._field is not None
        column = batch[self._field]
        parts: dict[int, tuple[View[T] | None, list[np.ndarray[Any, Any]]]] = {}
        for value in np.unique(column).tolist():
            target = self._routes.get(value, self._default)
            parts.setdefault(id(target), (target, []))[1].append(column == value)
        return [
            (target, batch[np.logical_or.reduce(masks)] if len(masks) > 1 else batch[masks[0]])
            for target, masks in parts.values()
        ]

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        """Routes in a task of its own while entered; leaving stops it, ends every view and
        closes the stream it consumes."""
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._pump)
                try:
                    yield self
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            for view in self._views:
                view._close()
            with anyio.CancelScope(shield=True):
                await aclose_stream(self._stream)


def route(
    stream: AsyncIterable[T],
    key: str | Callable[[T], Hashable],
    *,
    buffer_size: int = 1024,
    policy: Policy = "block",
    lost: Literal["count", "inband"] = "count",
) -> Router[T]:
    """A :class:`Router` of ``stream`` by ``key`` (a function, or a field name: then numpy
    batches are split by that column, vectorised); use it with ``async with``."""
    return Router(stream, key, buffer_size=buffer_size, policy=policy, lost=lost)
