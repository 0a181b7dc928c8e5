"""Operators: small verbs that turn one async iterable of events into another.

Each works on any async iterable (aiobpf sources or a test's own data) and closes the stream it
consumes when it stops, so the kernel objects behind a source are released.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Container
from typing import Any, Protocol, TypeVar

__all__ = ["filter", "filter_comm", "filter_pid", "filter_uid"]

T = TypeVar("T")


class _HasIds(Protocol):
    @property
    def pid(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def comm(self) -> str: ...


E = TypeVar("E", bound=_HasIds)


async def _aclose(stream: AsyncIterable[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def filter(predicate: Callable[[T], bool], stream: AsyncIterable[T]) -> AsyncIterator[T]:
    """Items of ``stream`` for which ``predicate`` is true."""
    try:
        async for item in stream:
            if predicate(item):
                yield item
    finally:
        await _aclose(stream)


def _as_set(values: int | str | Container[Any]) -> Container[Any]:
    return {values} if isinstance(values, int | str) else values


def filter_uid(uids: int | Container[int], stream: AsyncIterable[E]) -> AsyncIterator[E]:
    """Events of the given user id(s)."""
    wanted = _as_set(uids)
    return filter(lambda event: event.uid in wanted, stream)


def filter_pid(pids: int | Container[int], stream: AsyncIterable[E]) -> AsyncIterator[E]:
    """Events of the given process id(s)."""
    wanted = _as_set(pids)
    return filter(lambda event: event.pid in wanted, stream)


def filter_comm(comms: str | Container[str], stream: AsyncIterable[E]) -> AsyncIterator[E]:
    """Events whose process name (``comm``) is one of ``comms``."""
    wanted = _as_set(comms)
    return filter(lambda event: event.comm in wanted, stream)
