"""Operators that transform one stream item by item, and the way operators compose.

An operator is a small object that, given a stream, returns a new stream. Each can be applied
as a call (``filter_uid(1000)(events)``), with the pipe operator read left to right
(``events | filter_uid(1000) | window_count("comm", every=2)``) or with :func:`pipe`. Applying
an operator to an aiobpf kernel source first offers it the chance to do the work in the kernel
(:meth:`Operator.push_down`); what cannot be pushed down runs here with the same results.

Operators accept any async iterable, of events or of numpy batches (``ring.batches()``); on
batches they work vectorised (a filter is a mask), so a pipeline keeps the batch path's speed.
Each stream an operator returns closes the stream it consumes when closed (``aclose()`` or
``async with``); operators are classes, not async generators, so a consumer may stop at any
time without leaving a generator behind to be finalised later.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Container, Iterable
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, cast

import anyio
import numpy as np
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectReceiveStream

__all__ = [
    "Operator",
    "Pipeline",
    "Stream",
    "aclose_stream",
    "filter",
    "filter_comm",
    "filter_descendants",
    "filter_pid",
    "filter_uid",
    "map",
    "pipe",
]

T = TypeVar("T")
U = TypeVar("U")
T_co = TypeVar("T_co", covariant=True)


async def aclose_stream(stream: object) -> None:
    """Closes ``stream`` if it can be closed."""
    aclose: Callable[[], Any] | None = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


#: Items taken from a buffer between two checkpoints (see :func:`receive_fast`).
ITEMS_PER_CHECKPOINT = 256


async def receive_fast(receive: MemoryObjectReceiveStream[T], taken: int) -> T:
    """The next item of ``receive``; raises StopAsyncIteration when it ended or was closed.

    Takes what is buffered without a trip through the event loop (a checkpoint per item would
    cost more than most consumers' work), and checkpoints on every ITEMS_PER_CHECKPOINT-th
    item (``taken`` counts them) for fairness.
    """
    try:
        if taken % ITEMS_PER_CHECKPOINT:
            try:
                return receive.receive_nowait()
            except anyio.WouldBlock:
                pass
        return await receive.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError):
        raise StopAsyncIteration from None


class Pipeline(Protocol[T_co]):
    """What an operator returns: an async iterator that is also an async resource (closing it
    closes the stream it consumes), so ``async with source | operator as items`` works."""

    def __aiter__(self) -> AsyncIterator[T_co]: ...

    async def __anext__(self) -> T_co: ...

    async def receive(self) -> T_co: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


class Stream(ObjectReceiveStream[T]):
    """An async iterator over another one, closing it when closed; base of operator outputs.

    Subclasses implement ``__anext__``; ``receive()`` is the same as an anyio stream's.
    """

    def __init__(self, upstream: AsyncIterable[Any]) -> None:
        self._upstream = upstream
        self._iterator: AsyncIterator[Any] = upstream.__aiter__()

    @property
    def latency_bound(self) -> float | None:
        """The live source's promise at the head of the pipeline (see
        :attr:`aiobpf.RingBuffer.latency_bound`), asked when needed (a program source has it
        once open); None for a stream that is not a live source's."""
        bound = getattr(self._upstream, "latency_bound", None)
        return bound if isinstance(bound, int | float) else None

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        """Opens the stream it consumes, if that is a source that opens (``open()``, which
        every aiobpf source has, idempotent): ``async with source | filter | window_count(...)``
        attaches the source's program on entering, as ``async with source`` does, so that
        events between entering and the first read are not missed. Leaving closes it."""
        opener: Callable[[], Any] | None = getattr(self._upstream, "open", None)
        if opener is not None:
            opened = opener()
            if inspect.isawaitable(opened):
                await opened
        return self

    async def receive(self) -> T:
        """The next item; raises :class:`anyio.EndOfStream` once the stream ended."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    async def aclose(self) -> None:
        """Closes the consumed stream (idempotent when that stream's aclose is)."""
        await aclose_stream(self._iterator if hasattr(self._iterator, "aclose") else self._upstream)

    def __or__(self, operator: Operator[T, U]) -> Pipeline[U]:
        return operator(self)


class Operator(Generic[T, U]):
    """A stream transformation: ``operator(stream)``, ``stream | operator`` or ``pipe``."""

    def __init__(self, apply: Callable[[AsyncIterable[T]], Pipeline[U]], name: str) -> None:
        self._apply = apply
        self.name = name

    def __call__(self, stream: AsyncIterable[T]) -> Pipeline[U]:
        return self._apply(stream)

    def __ror__(self, stream: AsyncIterable[T]) -> Pipeline[U]:
        return self._apply(stream)

    def __repr__(self) -> str:
        return f"<operator {self.name}>"


def pipe(stream: AsyncIterable[Any], *operators: Operator[Any, Any]) -> AsyncIterable[Any]:
    """Applies ``operators`` to ``stream`` left to right."""
    for operator in operators:
        stream = operator(stream)
    return stream


class _Filtered(Stream[T]):
    def __init__(
        self,
        upstream: AsyncIterable[Any],
        predicate: Callable[[T], bool],
        mask: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] | None,
    ) -> None:
        super().__init__(upstream)
        self._predicate = predicate
        self._mask = mask

    async def __anext__(self) -> T:
        predicate, iterator = self._predicate, self._iterator
        while True:
            item = await iterator.__anext__()
            if isinstance(item, np.ndarray) and item.dtype.names is not None:
                if self._mask is None:
                    keep = [predicate(row) for row in item]
                    selected = item[np.array(keep, dtype=bool)]
                else:
                    selected = item[self._mask(item)]
                if len(selected):
                    return selected  # type: ignore[no-any-return]  # a batch of T
            elif predicate(item):
                return item  # type: ignore[no-any-return]


def filter(
    predicate: Callable[[T], bool],
) -> Operator[T, T]:
    """Items for which ``predicate`` is true (on batches: the rows for which it is true)."""
    return Operator(lambda stream: _Filtered(stream, predicate, None), "filter")


class _Mapped(Stream[U]):
    def __init__(self, upstream: AsyncIterable[T], function: Callable[[T], U]) -> None:
        super().__init__(upstream)
        self._function = function

    async def __anext__(self) -> U:
        return self._function(await self._iterator.__anext__())


def map(function: Callable[[T], U]) -> Operator[T, U]:
    """``function(item)`` for each item (on batches: for each batch)."""
    return Operator(lambda stream: _Mapped(stream, function), "map")


def _field_filter(kind: str, values: Any) -> Operator[Any, Any]:
    """A filter on one event field that a kernel source may apply in its program."""
    wanted = frozenset({values} if isinstance(values, int | str) else values)
    batch_values = (
        np.array(sorted(v.encode() if isinstance(v, str) else v for v in wanted))
        if wanted
        else np.array([])
    )

    def apply(stream: AsyncIterable[Any]) -> Pipeline[Any]:
        push_down: Callable[[str, frozenset[Any]], bool] | None = getattr(stream, "push_down", None)
        if push_down is not None and push_down(kind, wanted):
            # the kernel drops the others: nothing left to do here (a source that can push
            # down is an aiobpf source, itself a pipeline)
            return cast(Pipeline[Any], stream)
        return _Filtered(
            stream,
            lambda event: getattr(event, kind) in wanted,
            lambda batch: np.isin(batch[kind], batch_values),
        )

    return Operator(apply, f"filter_{kind}({sorted(wanted)!r})")


def filter_uid(uids: int | Container[int]) -> Operator[Any, Any]:
    """Events of the given user id(s). On an aiobpf kernel source, runs in the kernel."""
    return _field_filter("uid", uids)


def filter_pid(pids: int | Container[int]) -> Operator[Any, Any]:
    """Events of the given process id(s). On an aiobpf kernel source, runs in the kernel."""
    return _field_filter("pid", pids)


def filter_descendants(pids: int | Iterable[int]) -> Operator[Any, Any]:
    """Events of processes ``pids`` and of every process below them: those that exist when
    the source opens and those they fork later (a double-forked daemon, or one reparented to
    init, stays in). Runs in the kernel, which follows the forks: on
    :func:`aiobpf.process_events` and :func:`aiobpf.execve_events` (from before it opens).
    Raises :class:`ValueError` on another stream, which cannot tell a process's lineage from
    its events."""
    wanted = frozenset({pids} if isinstance(pids, int) else pids)

    def apply(stream: AsyncIterable[Any]) -> Pipeline[Any]:
        push_down: Callable[[str, frozenset[Any]], bool] | None = getattr(stream, "push_down", None)
        if push_down is not None and push_down("descendants", wanted):
            return cast(Pipeline[Any], stream)
        raise ValueError(
            f"filter_descendants needs a source that follows forks in the kernel "
            f"(aiobpf.process_events() or aiobpf.execve_events(), before it opens), not "
            f"{type(stream).__name__}"
        )

    return Operator(apply, f"filter_descendants({sorted(wanted)!r})")


def filter_comm(comms: str | Container[str]) -> Operator[Any, Any]:
    """Events whose process name is one of ``comms``. On an aiobpf kernel source, runs in the
    kernel (compared as the kernel does: the first 15 bytes)."""
    return _field_filter("comm", comms)
