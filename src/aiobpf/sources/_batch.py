"""The base of the sources that read BPF records in numpy batches from mapped memory (ring
buffers and perf buffers), and the iterator of their batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, Self, TypeVar

import anyio
import numpy as np
import numpy.typing as npt
from anyio.abc import UnreliableObjectReceiveStream

from .._core.records import RecordType
from .._core.validate import MaxLatency
from .._kernel.ring_protocol import RecordReader
from .._resource import release_all, warn_unclosed
from ..errors import RecordLayoutError
from ._gate import ReaderGate
from ._pacing import Pacing
from ._stats import RingStats

__all__ = ["BatchSource", "Batches"]

R = TypeVar("R")


#: Records handed out from a batch between two checkpoints. A checkpoint per record would cost
#: more than the record (a loop iteration on asyncio); one per batch would let a cancelled or
#: unfair consumer run on for a whole ring's worth of records.
_RECORDS_PER_CHECKPOINT = 256


class _Closed(Exception):
    """Raised inside a source when it was closed while a reader waited."""


class BatchSource(UnreliableObjectReceiveStream[R]):
    """What ring buffers and perf buffers share: records read in numpy batches from mapped
    memory, waiting on the event loop for an fd; iteration one record at a time or a batch per
    wake-up, a latency budget, closing and cancellation. :class:`aiobpf.RingBuffer` (reliable,
    in order: an anyio ``ObjectReceiveStream``) and :class:`aiobpf.PerfBuffer` (unreliable: it
    may reorder across CPUs) are the two kinds.

    What follows is said of a ring; a perf buffer's docstring refines it (order, loss).

    Iterate it for one record at a time (``async for record in ring``: a ``ctypes.Structure``
    per record, fields by name), or iterate :meth:`batches` for a numpy structured array per
    wake-up, the fast path for high rates. Create it with :meth:`from_bcc` for a
    ``bcc.BPF`` object of your own; aiobpf's event sources (:func:`aiobpf.execve_events`) build one
    for their own programs.

    **Cancellation**: records are taken from the ring only after the last cancellable wait, so a
    cancelled ``__anext__`` loses nothing; records of a batch not yet handed out stay in the source
    for the next iteration. Per-record iteration checkpoints once per batch and every 256 records,
    so cancellation is seen within 256 records.

    **Memory**: the ring itself bounds what the kernel can have queued; the source holds at most
    one batch (what the ring held at one wake-up).

    **Loss**: the source never drops. When the consumer is slower than the producer the ring fills
    and the BPF program's reserve fails; aiobpf's programs count those failures, and :attr:`stats`
    reports them as ``dropped``.

    **Closing**: :meth:`aclose` (or leaving ``async with``) unmaps the ring and closes its fd, and
    releases the BPF program when the source owns it. A task blocked waiting for records is woken
    and its ``async for`` ends normally (``receive()`` raises :class:`anyio.EndOfStream`).
    Afterwards iteration ends at once (so a pipeline stage that loops again stops cleanly),
    and ``receive()`` raises :class:`anyio.ClosedResourceError`. A second task iterating the
    source at the same time gets :class:`anyio.BusyResourceError`.
    """

    #: a ring's fd is readable while it holds records (``ringbuf_map_poll``): level-triggered
    _readiness_consumed_by_poll = False

    def __init__(
        self,
        *,
        name: str,
        fd: int,
        record: RecordType[R],
        reader: RecordReader,
        counters: Callable[[], list[int]] | None = None,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
        on_close: Sequence[Callable[[], None]] = (),
    ) -> None:
        """Low level: a source reading with ``reader`` and waiting on ``fd``; prefer from_bcc.


        ``on_close`` callbacks run in reverse order when the source is released, after the reader
        is dropped; they release what the source owns (mapping, fd, program).
        """
        self._pacing = Pacing(max_latency, busy_poll)
        if busy_poll and reader.data_size is None:
            raise ValueError("busy_poll needs the mmap reader (reader='mmap'), which sees the ring")
        self.name = name
        self._fd = fd
        self._record = record
        self._reader: RecordReader | None = reader
        self._counters = counters
        self._on_close = list(on_close)
        self._pending: Sequence[R] = ()
        self._pending_batch: npt.NDArray[np.void] | None = None
        self._pending_index = 0
        self._taken = 0
        self._wakeups = 0
        self._batches = 0
        self._checkpoint_due = False
        self._waited_last = False
        self._checkpointed = False
        self._final_stats: RingStats | None = None
        self._layout_error: RecordLayoutError | None = None
        self._unread = 0
        # the mmap reader sees the ring's positions: a stale readiness of the fd costs nothing
        self._gate = ReaderGate(
            self._ring_has_bytes if reader.data_size is not None else None,
            consumed_by_poll=self._readiness_consumed_by_poll,
        )
        self._closed = False

    # -- reading --------------------------------------------------------------------------------

    def _take(self) -> npt.NDArray[np.void]:
        """Takes every committed record from the ring, without waiting."""
        reader = self._reader
        assert reader is not None, "read after release"
        batch = reader.read()
        error = reader.take_error()
        del reader  # an error raised later must not keep the reader (and the mapping) in a frame
        if error is not None:
            self._layout_error = RecordLayoutError(f"ring {self.name!r}: {error}")
        if len(batch):
            self._taken += len(batch)
            self._batches += 1
        return batch

    def _raise_layout_error(self) -> None:
        """Raises what the last read found wrong, once: records read before it are handed out
        first, and the source reads on after it (the bad records are counted as malformed)."""
        error, self._layout_error = self._layout_error, None
        if error is not None:
            raise error

    async def _busy_polled(self) -> bool:
        """Looks at the ring for up to busy_poll seconds, yielding between looks: whether
        anything came (or the source was closed)."""
        deadline = time.monotonic() + self._pacing.busy_poll
        while True:
            await self._gate.checkpoint()
            if self._closed or self._ring_has_bytes():
                return True
            if time.monotonic() >= deadline:
                return False

    def _ring_has_bytes(self) -> bool:
        return self._reader is not None and (self._reader.pending_bytes() or 0) > 0

    def _ring_is_empty(self) -> bool:
        """Whether the ring holds nothing, committed or not; False for a reader that does not
        see the ring (BCC's). A read of an empty ring costs a wake-up an allocation and calls."""
        reader = self._reader
        return reader is not None and reader.data_size is not None and reader.pending_bytes() == 0

    async def _next_batch(self) -> npt.NDArray[np.void]:
        """Waits until records are available and takes them all. Raises _Closed if closed."""
        if self._closed:
            raise anyio.ClosedResourceError(f"ring {self.name!r} is closed")
        self._raise_layout_error()
        with self._gate.reading():
            if self._checkpoint_due:  # the last call returned without awaiting
                # Records keep coming, so the fd may never be seen idle: without a pause here, a
                # consumer faster than the producer would take a handful of records per loop
                # iteration and never use its latency budget. The pause ends one budget after
                # the last read, so time spent handling that batch counts towards it.
                delay = self._pacing.pause_before_reading(time.monotonic())
                if delay > 0:
                    await self._gate.sleep(delay)  # cut short by closing: the loop ends
                elif not self._waited_last or self._ring_has_bytes():
                    await self._gate.checkpoint()  # let other tasks run
                # else: the last call waited on the fd and the ring is empty: the wait below
                # lets the others run (a loop iteration less per record when they come apart)
            waited = False
            while True:
                if self._closed:
                    raise _Closed
                if not self._ring_is_empty():  # an empty ring: nothing to read, wait at once
                    batch = self._take()
                    if len(batch):
                        self._checkpoint_due = True
                        self._waited_last = waited
                        assert self._reader is not None
                        self._pacing.read(
                            len(batch) * self._reader.stride,
                            self._reader.data_size,
                            time.monotonic(),
                            records=len(batch),
                        )
                        return batch
                    self._raise_layout_error()  # what the read found wrong, if anything
                    if self._ring_has_bytes():
                        # A reserved record not yet committed heads the ring; poll() would
                        # report the fd readable at once, so yield to the loop and look again.
                        # BPF programs run without sleeping: the commit is microseconds away.
                        await self._gate.checkpoint()
                        continue
                if self._pacing.busy_poll and await self._busy_polled():
                    continue
                if not await self._gate.wait_readable(self._fd) or self._closed:
                    raise _Closed
                waited = True
                self._wakeups += 1
                self._checkpoint_due = False
                wait = self._pacing.woken(time.monotonic())
                if wait:
                    await self._gate.sleep(wait)

    def _hand_out(self, batch: npt.NDArray[np.void]) -> None:
        self._pending_batch = batch  # keeps the memory ctypes records share alive
        self._pending = self._record.decode(batch)
        self._pending_index = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> R:
        # The hot path of per-record iteration: a method, not an async generator, so that a
        # consumer may stop iterating at any time without leaving a generator to finalise.
        index = self._pending_index
        if index >= len(self._pending):
            if self._closed:  # closed (maybe by another task): the iteration is over
                raise StopAsyncIteration
            try:
                self._hand_out(await self._next_batch())
            except _Closed:
                raise StopAsyncIteration from None
            index = 0
        elif index % _RECORDS_PER_CHECKPOINT == 0 and not self._checkpointed:
            self._checkpointed = True
            await self._gate.checkpoint()  # before taking the record: none is lost
            return await self.__anext__()  # another task may have taken records meanwhile
        self._checkpointed = False
        self._pending_index = index + 1
        return self._pending[index]

    async def receive(self) -> R:
        """The next record. Raises :class:`anyio.EndOfStream` when the source was closed while
        waiting, :class:`anyio.ClosedResourceError` when it was closed before, and
        :class:`anyio.BusyResourceError` when another task is waiting on it."""
        if self._pending_index < len(self._pending):
            await self._gate.checkpoint()
        while self._pending_index >= len(self._pending):
            try:
                self._hand_out(await self._next_batch())
            except _Closed:
                raise anyio.EndOfStream from None
        index = self._pending_index
        self._pending_index = index + 1
        return self._pending[index]

    def batches(self) -> Batches:
        """An async iterator of numpy structured arrays, one per wake-up.

        Each array is a copy, owned by the caller and valid for as long as it is kept: the ring
        space was already given back to the kernel. Records taken but not handed out by per-record
        iteration come first.
        """
        return Batches(self)

    async def receive_batch(self) -> npt.NDArray[np.void]:
        """Every available record as one array, waiting for at least one; raises as receive()."""
        if self._pending_batch is not None and self._pending_index < len(self._pending):
            rest = self._pending_batch[self._pending_index :]
            self._pending, self._pending_batch, self._pending_index = (), None, 0
            await self._gate.checkpoint()
            return rest
        self._pending, self._pending_batch, self._pending_index = (), None, 0
        try:
            return await self._next_batch()
        except _Closed:
            raise anyio.EndOfStream from None

    def drain(self) -> npt.NDArray[np.void]:
        """Every record available now, without waiting (possibly none): records taken but not
        handed out first, then what the ring holds. For a consumer that stops, so that what
        the kernel delivered before the stop is not left behind unread.

        Raises :class:`anyio.ClosedResourceError` once closed and
        :class:`anyio.BusyResourceError` while another task is waiting on the source.
        """
        if self._closed:
            raise anyio.ClosedResourceError(f"ring {self.name!r} is closed")
        with self._gate.reading():
            rest = (
                self._pending_batch[self._pending_index :]
                if self._pending_batch is not None
                else np.empty(0, dtype=self._record.dtype)
            )
            self._pending, self._pending_batch, self._pending_index = (), None, 0
            taken = self._take()
        return np.concatenate([rest, taken]) if len(rest) else taken

    # -- state ----------------------------------------------------------------------------------

    @property
    def latency_bound(self) -> float:
        """Seconds after its program submits a record within which a consumer that keeps up
        has it: a live source's promise, which operators that close windows on time use."""
        return self._pacing.latency_bound

    @property
    def stats(self) -> RingStats:
        """Counters of this source; ``produced``/``dropped`` come from the BPF program.

        After closing, the counts are those at the moment of closing.
        """
        return self._final_stats if self._final_stats is not None else self._current_stats()

    def _current_stats(self) -> RingStats:
        produced = dropped = None
        if self._counters is not None:
            produced, dropped = self._counters()[:2]
        pending = len(self._pending) - self._pending_index
        return RingStats(
            received=self._taken - pending,
            pending=pending,
            dropped=dropped,
            produced=produced,
            wakeups=self._wakeups,
            batches=self._batches,
            malformed=self._reader.malformed if self._reader is not None else 0,
            unread=self._unread,
        )

    @property
    def occupancy(self) -> float | None:
        """The share of the ring holding records not yet read (0 to 1); None for BCC's reader."""
        reader = self._reader
        if reader is None or reader.data_size is None:
            return None
        return (reader.pending_bytes() or 0) / reader.data_size

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Closes the source; idempotent. Wakes a task blocked reading it, then releases."""
        if self._closed:
            return
        self._closed = True
        await self._gate.wake_and_wait()
        self._release()

    def _count_unread(self) -> None:
        """Takes the committed records nobody read out of the ring, counting them: the balance
        holds after closing too (a record still being written at this instant is missed)."""
        if self._reader is None:
            return
        try:
            while len(batch := self._reader.read()):
                self._unread += len(batch)
        except Exception:  # a ring that cannot be read further: what is left is not counted
            pass

    def _release(self) -> None:
        self._count_unread()
        try:
            self._final_stats = self._current_stats()  # while the program's counters can be read
        except Exception:  # a failing counter read must not stop the release
            self._counters = None
            self._final_stats = self._current_stats()
        self._closed = True
        self._pending, self._pending_batch, self._pending_index = (), None, 0
        self._gate.close()  # the event loop lets go of the fd before it is closed
        self._reader = None  # drop its arrays over the mapping before unmapping
        callbacks, self._on_close = self._on_close, []
        release_all(reversed(callbacks))

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        warn_unclosed(self, f"ring buffer source {self.name!r}")
        self._release()


class BatchReceiving(Protocol):
    """What :class:`Batches` iterates: a ring source, or a program source that opens one."""

    @property
    def closed(self) -> bool: ...

    async def receive_batch(self) -> npt.NDArray[np.void]: ...


class Batches:
    """The async iterator of numpy batches :meth:`RingBuffer.batches` returns (and a program
    source's ``batches()``): it ends when the source is closed."""

    def __init__(self, source: BatchReceiving) -> None:
        self._source = source

    def __aiter__(self) -> Batches:
        return self

    async def __anext__(self) -> npt.NDArray[np.void]:
        if self._source.closed:
            raise StopAsyncIteration
        try:
            return await self._source.receive_batch()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
