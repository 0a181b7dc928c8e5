"""One ring of a program of your own as one source: entering opens the program and the ring,
leaving closes both. What a tool built on :func:`aiobpf.load` hands its users, so that they
write ``async with aiobpf.open_events() as opens`` and never see the program."""

from __future__ import annotations

from typing import Any, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt
from anyio.abc import ObjectReceiveStream

from ..errors import NotOpenError
from ._costs import ProgramCost
from ._own import OwnProgram
from ._records import RecordType
from ._ring import Batches, RingBuffer
from ._stats import RingStats
from ._validate import MaxLatency

__all__ = ["LoadedRing"]

T = TypeVar("T")


class LoadedRing(ObjectReceiveStream[T], Generic[T]):
    """Ring ``ring`` of ``program``, its records decoded by ``record``; ``name`` is how
    messages call the source (``"open_events()"``)."""

    def __init__(
        self,
        program: OwnProgram,
        ring: str,
        *,
        record: RecordType[T],
        name: str,
        max_latency: MaxLatency = "auto",
    ) -> None:
        self.program = program
        self._ring_name = ring
        self._record = record
        self._name = name
        self._max_latency = max_latency
        self._ring: RingBuffer[T] | None = None

    async def open(self) -> RingBuffer[T]:
        """Opens the program, then the ring; idempotent. Raises what the program's open
        raises; on any error nothing stays loaded."""
        if self._ring is not None:
            return self._ring
        await self.program.open()
        try:
            ring: RingBuffer[T] = self.program.ring(
                self._ring_name, record=self._record, max_latency=self._max_latency
            )
        except BaseException:
            await self.program.aclose()
            raise
        self._ring = ring
        return ring

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def aclose(self) -> None:
        """Closes the ring (counting what it did not hand out) and the program."""
        await self.program.aclose()

    @property
    def closed(self) -> bool:
        return self.program.closed

    @property
    def ring(self) -> RingBuffer[T]:
        """The ring source; raises :class:`aiobpf.NotOpenError` before it is open."""
        if self._ring is None:
            raise NotOpenError(f"{self._name} is not open yet: use 'async with' or open()")
        return self._ring

    def program_costs(self) -> dict[str, ProgramCost]:
        """The program's costs (see :meth:`aiobpf.sources.OwnProgram.program_costs`)."""
        return self.program.program_costs()

    @property
    def stats(self) -> RingStats:
        return self.ring.stats

    @property
    def latency_bound(self) -> float | None:
        return None if self._ring is None else self._ring.latency_bound

    async def receive(self) -> T:
        ring = self._ring if self._ring is not None else await self.open()
        return await ring.receive()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self.closed:
            raise StopAsyncIteration
        ring = self._ring if self._ring is not None else await self.open()
        return await ring.__anext__()

    def batches(self) -> Batches:
        """Numpy batches of raw records, one per wake-up (see :meth:`aiobpf.RingBuffer.batches`)."""
        return Batches(self)

    async def receive_batch(self) -> npt.NDArray[np.void]:
        ring = self._ring if self._ring is not None else await self.open()
        return await ring.receive_batch()

    def drain(self) -> npt.NDArray[np.void]:
        """Every record available now, without waiting."""
        return self.ring.drain()

    def decode(self, batch: npt.NDArray[np.void]) -> Any:
        """The records of ``batch`` as the source hands them out one by one."""
        return self._record.decode(batch)
