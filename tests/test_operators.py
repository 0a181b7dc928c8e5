"""Operators on synthetic event streams (no root needed), on asyncio and trio."""

from __future__ import annotations

import attrs
import pytest

from aiobpf import filter_comm, filter_pid, filter_uid, operators

pytestmark = pytest.mark.anyio


@attrs.frozen
class Event:
    pid: int
    uid: int
    comm: str


EVENTS = [Event(1, 0, "init"), Event(2, 1000, "bash"), Event(3, 1000, "ls"), Event(4, 0, "ls")]


class Stream:
    """An async iterable that records whether it was closed."""

    def __init__(self, items: list[Event]) -> None:
        self._items = iter(items)
        self.closed = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Event:
        try:
            return next(self._items)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.closed = True


async def test_filters_keep_exactly_the_matching_events() -> None:
    """filter_uid/pid/comm keep the matching events, in order, with one value or several."""
    assert [e.pid async for e in filter_uid(1000, Stream(EVENTS))] == [2, 3]
    assert [e.pid async for e in filter_pid({1, 4}, Stream(EVENTS))] == [1, 4]
    assert [e.pid async for e in filter_comm("ls", Stream(EVENTS))] == [3, 4]
    assert [e.pid async for e in operators.filter(lambda e: e.pid > 2, Stream(EVENTS))] == [3, 4]


async def test_closing_an_operator_closes_the_stream_it_consumes() -> None:
    """Leaving `async with` on an operator closes its source, as a source's kernel objects need."""
    stream = Stream(EVENTS)
    async with filter_uid(0, stream) as events:
        assert (await events.__anext__()).pid == 1
    assert stream.closed
