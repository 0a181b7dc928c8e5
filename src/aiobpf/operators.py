"""Operators: small verbs that turn one async iterable of events into another.

Each works on any async iterable (aiobpf sources or a test's own data). Operators are classes,
not async generators: an async generator left unexhausted is finalised "later, somewhere else"
(and trio warns about it), while these can be dropped at any time and close the stream they
consume through :meth:`aclose` or ``async with``, so the kernel objects behind a source are
released deterministically.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Container
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Filter", "filter", "filter_comm", "filter_pid", "filter_uid"]

T = TypeVar("T")


class _HasIds(Protocol):
    @property
    def pid(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def comm(self) -> str: ...


E = TypeVar("E", bound=_HasIds)


class Filter(Generic[T]):
    """The items of ``stream`` for which ``predicate`` is true; closing it closes ``stream``."""

    def __init__(self, predicate: Callable[[T], bool], stream: AsyncIterable[T]) -> None:
        self._predicate = predicate
        self._stream = stream
        self._iterator: AsyncIterator[T] = stream.__aiter__()

    def __aiter__(self) -> Filter[T]:
        return self

    async def __anext__(self) -> T:
        predicate, iterator = self._predicate, self._iterator
        while True:
            item = await iterator.__anext__()
            if predicate(item):
                return item

    async def aclose(self) -> None:
        """Closes the consumed stream (when it can be closed). Idempotent if the stream's is."""
        for stream in (self._iterator, self._stream):
            aclose: Callable[[], Any] | None = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
                return

    async def __aenter__(self) -> Filter[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def filter(predicate: Callable[[T], bool], stream: AsyncIterable[T]) -> Filter[T]:
    """Items of ``stream`` for which ``predicate`` is true."""
    return Filter(predicate, stream)


def _as_container(values: Any) -> Container[Any]:
    return {values} if isinstance(values, int | str) else values


def filter_uid(uids: int | Container[int], stream: AsyncIterable[E]) -> Filter[E]:
    """Events of the given user id(s)."""
    wanted = _as_container(uids)
    return Filter(lambda event: event.uid in wanted, stream)


def filter_pid(pids: int | Container[int], stream: AsyncIterable[E]) -> Filter[E]:
    """Events of the given process id(s)."""
    wanted = _as_container(pids)
    return Filter(lambda event: event.pid in wanted, stream)


def filter_comm(comms: str | Container[str], stream: AsyncIterable[E]) -> Filter[E]:
    """Events whose process name (``comm``) is one of ``comms``."""
    wanted = _as_container(comms)
    return Filter(lambda event: event.comm in wanted, stream)
