"""One source over a program of your own, as one source: entering opens the program and the
source over its map, leaving closes both. What a tool built on :func:`aiobpf.load` hands its
users, so that they write ``async with aiobpf.open_events() as opens`` and never see the
program."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt
from anyio.abc import ObjectReceiveStream

from .._core.records import RecordType
from .._core.validate import MaxLatency
from ..errors import NotOpenError
from ._batch import Batches
from ._costs import ProgramCost
from ._maps import MapPoller
from ._own import OwnProgram
from ._ring import RingBuffer
from ._stats import MapStats, RingStats

__all__ = ["LoadedMap", "LoadedRing", "LoadedSource"]

T = TypeVar("T")
Inner = TypeVar("Inner", bound=RingBuffer[Any] | MapPoller[Any, Any])


def _same(item: Any) -> Any:
    return item


class LoadedSource(ObjectReceiveStream[T], Generic[T, Inner]):
    """``make(program)`` over ``program``, its items passed through ``convert``; ``name`` is
    how messages call the source (``"open_events()"``)."""

    def __init__(
        self,
        program: OwnProgram,
        make: Callable[[OwnProgram], Inner],
        *,
        name: str,
        convert: Callable[[Any], T] | None = None,
    ) -> None:
        self.program = program
        self._make = make
        self._name = name
        self._convert: Callable[[Any], T] = convert if convert is not None else _same
        self._inner: Inner | None = None

    async def open(self) -> Inner:
        """Opens the program, then the source over it; idempotent. Raises what the program's
        open raises; on any error nothing stays loaded."""
        if self._inner is not None:
            return self._inner
        await self.program.open()
        try:
            inner = self._make(self.program)
        except BaseException:
            await self.program.aclose()
            raise
        self._inner = inner
        return inner

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def aclose(self) -> None:
        """Closes the source (counting what it did not hand out) and the program."""
        await self.program.aclose()

    @property
    def closed(self) -> bool:
        return self.program.closed

    @property
    def inner(self) -> Inner:
        """The source over the program's map; :class:`aiobpf.NotOpenError` before it opens."""
        if self._inner is None:
            raise NotOpenError(f"{self._name} is not open yet: use 'async with' or open()")
        return self._inner

    def program_costs(self) -> dict[str, ProgramCost]:
        """The program's costs (see :meth:`aiobpf.sources.OwnProgram.program_costs`)."""
        return self.program.program_costs()

    async def receive(self) -> T:
        inner = self._inner if self._inner is not None else await self.open()
        return self._convert(await inner.receive())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self.closed:
            raise StopAsyncIteration
        inner = self._inner if self._inner is not None else await self.open()
        return self._convert(await inner.__anext__())


class LoadedRing(LoadedSource[T, RingBuffer[Any]]):
    """Ring ``ring`` of ``program``, its records decoded by ``record``."""

    def __init__(
        self,
        program: OwnProgram,
        ring: str,
        *,
        record: RecordType[T],
        name: str,
        max_latency: MaxLatency = "auto",
    ) -> None:
        def make(program: OwnProgram) -> RingBuffer[Any]:
            return program.ring(ring, record=record, max_latency=max_latency)

        super().__init__(program, make, name=name)
        self._record = record

    @property
    def ring(self) -> RingBuffer[T]:
        """The ring source; raises :class:`aiobpf.NotOpenError` before it is open."""
        ring: RingBuffer[T] = self.inner
        return ring

    @property
    def stats(self) -> RingStats:
        return self.inner.stats

    @property
    def latency_bound(self) -> float | None:
        return None if self._inner is None else self._inner.latency_bound

    def batches(self) -> Batches:
        """Numpy batches of raw records, one per wake-up (see :meth:`aiobpf.RingBuffer.batches`)."""
        return Batches(self)

    async def receive_batch(self) -> npt.NDArray[np.void]:
        ring = self._inner if self._inner is not None else await self.open()
        return await ring.receive_batch()

    def drain(self) -> npt.NDArray[np.void]:
        """Every record available now, without waiting."""
        return self.inner.drain()

    def decode(self, batch: npt.NDArray[np.void]) -> Any:
        """The records of ``batch`` as the source hands them out one by one."""
        return self._record.decode(batch)


class LoadedMap(LoadedSource[T, MapPoller[Any, Any]]):
    """A poller of map ``map_name`` of ``program`` (see :meth:`aiobpf.sources.OwnProgram.map`),
    each reading passed through ``convert``."""

    def __init__(
        self,
        program: OwnProgram,
        map_name: str,
        *,
        name: str,
        convert: Callable[[Any], T] | None = None,
        **options: Any,
    ) -> None:
        def make(program: OwnProgram) -> MapPoller[Any, Any]:
            return program.map(map_name, **options)

        super().__init__(program, make, name=name, convert=convert)

    @property
    def poller(self) -> MapPoller[Any, Any]:
        return self.inner

    def read(self) -> T:
        """A reading now, converted (see :meth:`aiobpf.MapPoller.read`)."""
        return self._convert(self.inner.read())

    @property
    def stats(self) -> MapStats:
        return self.inner.stats
