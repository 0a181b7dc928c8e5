"""Async sources: kernel data channels as async iterables.

A source waits on the event loop for its file descriptor (through anyio, so the same code runs on
asyncio and trio), then takes everything available in one batch. There are no threads, no sleeps
and no busy loops on the waiting path.
"""

from __future__ import annotations

import ctypes
import os
import platform
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, overload

import numpy as np
from anyio.abc import ObjectReceiveStream

from .._core.records import RecordType, record_type, structure_for, structures, with_text
from .._core.validate import MaxLatency, check_reading_mode
from .._kernel import bcc as _bcc
from .._kernel.ring_memory import RingMemory
from .._kernel.ring_protocol import RecordReader, RingReader
from .._resource import release_all
from ..errors import RecordLayoutError, UnsupportedMachineError
from ._batch import BatchSource
from ._c_layout import check_layout, dtype_from_fields, text_fields

__all__ = ["Reader", "RingBuffer"]

R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S", bound=ctypes.Structure)
Reader = Literal["auto", "mmap", "bcc"]

#: The mmap reader's ordering argument (see :mod:`aiobpf._kernel.ring_protocol`) holds on TSO
#: CPUs only.
_TSO_MACHINES = frozenset({"x86_64", "amd64", "i686", "i386"})


def require_tso(what: str) -> None:
    """:class:`aiobpf.UnsupportedMachineError` unless this CPU orders memory as x86-64 does
    (TSO), which reading the mapped ring or perf buffer relies on: elsewhere plain loads and
    stores are not acquire and release, and records could be read before they are written."""
    machine = platform.machine()
    if machine.lower() not in _TSO_MACHINES:
        raise UnsupportedMachineError(
            f"{what} reads mapped kernel memory with x86-64's memory ordering; this machine is "
            f"{machine}, where that would read wrong records: use a BCC program's ring with "
            "reader='bcc'"
        )


class RingBuffer(BatchSource[R], ObjectReceiveStream[R]):
    """An async source of the records of one BPF ring buffer map (``BPF_RINGBUF_OUTPUT``).

    Iterate it for one record at a time (``async for record in ring``: a ``ctypes.Structure``
    per record, fields by name), or iterate :meth:`batches` for a numpy structured array per
    wake-up, the fast path for high rates. Create it with :meth:`from_bcc` for a
    ``bcc.BPF`` object of your own; aiobpf's event sources (:func:`aiobpf.execve_events`) build one
    for their own programs.

    A reliable, ordered stream (an anyio ``ObjectReceiveStream``): the kernel keeps the
    records in the order they were committed, and nothing is lost that is not counted
    (``dropped``, when the ring was full). Cancellation, memory, loss and closing are as
    :class:`aiobpf.sources.BatchSource` says.
    """

    # -- construction ---------------------------------------------------------------------------

    @overload
    @classmethod
    def from_bcc(
        cls,
        bpf: Any,
        name: str,
        *,
        record: type[S],
        counters: str | None = ...,
        max_latency: MaxLatency = ...,
        busy_poll: float = ...,
        reader: Reader = ...,
        owned: Sequence[Callable[[], None]] = ...,
    ) -> RingBuffer[S]: ...

    @overload
    @classmethod
    def from_bcc(
        cls,
        bpf: Any,
        name: str,
        *,
        record: RecordType[T],
        counters: str | None = ...,
        max_latency: MaxLatency = ...,
        busy_poll: float = ...,
        reader: Reader = ...,
        owned: Sequence[Callable[[], None]] = ...,
    ) -> RingBuffer[T]: ...

    @overload
    @classmethod
    def from_bcc(
        cls,
        bpf: Any,
        name: str,
        *,
        record: np.dtype[Any] | None = ...,
        counters: str | None = ...,
        max_latency: MaxLatency = ...,
        busy_poll: float = ...,
        reader: Reader = ...,
        owned: Sequence[Callable[[], None]] = ...,
    ) -> RingBuffer[Any]: ...

    @classmethod
    def from_bcc(
        cls,
        bpf: Any,
        name: str,
        *,
        record: np.dtype[Any] | type[ctypes.Structure] | RecordType[Any] | None = None,
        counters: str | None = "auto",
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
        reader: Reader = "auto",
        owned: Sequence[Callable[[], None]] = (),
    ) -> RingBuffer[Any]:
        """A source over ring ``name`` of a ``bcc.BPF`` object (which stays yours to clean up).

        ``record`` describes one payload: a numpy structured dtype or a ``ctypes.Structure``
        subclass (records come as Structures with the dtype's field names, sharing the batch
        memory), or a :class:`aiobpf.lowlevel.RecordType` with a decoder of your own. Left out,
        it is the C struct the program writes into the ring (its ``ringbuf_output`` or
        ``ringbuf_reserve`` calls, as BCC parsed them): fields by name, arrays of any
        dimension, char arrays as text (bytes in batches). A declared record is checked
        against that struct when BCC saw one.

        ``counters`` names a per-CPU array of two u64 slots, ``[produced, dropped]``, that the
        program updates around ``ringbuf_reserve`` (see ``aiobpf/programs/aiobpf.h``);
        ``"auto"`` uses ``<name>_counts`` when the program has it, ``None`` reports no
        kernel-side counts.

        ``max_latency`` (seconds) is a latency budget: after a wake-up the source waits that long
        before reading, and while records keep coming it reads at most once per budget, so that
        one read takes many records (far fewer wake-ups and loop iterations per record). It is a
        most, not a least: the source does not wait when the last batch filled a quarter of the
        ring, or when, at the rate the ring fills (averaged over about 10 ms), waiting would fill
        half of it (event loops wait in whole milliseconds, so a wait counts as one at least).
        ``"auto"`` (default) adapts: while records come at 750 a second or more (three per
        4 ms, averaged over about 50 ms) the budget is 4 ms
        (:data:`aiobpf.sources.AUTO_MAX_LATENCY`), otherwise the source reads at once; so a
        record waits at most about 5 ms (the bound and the event loop's millisecond), and only
        while waiting saves CPU. 0 reads at once.

        ``busy_poll`` (seconds) is the low-latency mode: when the ring runs empty, the source
        keeps looking at it, yielding to the event loop between looks, for up to that long
        before it sleeps on the fd. A record that comes meanwhile is read within a loop
        iteration instead of after a wake-up (tens of microseconds on a VM), at the price of a
        busy core while records keep coming. It needs the mmap reader and no latency budget.

        ``reader``: ``"mmap"`` reads the mapped ring in numpy batches (the fast path, x86-64);
        ``"bcc"`` uses BCC's per-record callback consumer; ``"auto"`` picks mmap where its memory
        ordering argument holds (x86-64) and BCC elsewhere.

        ``owned``: release callbacks for what the source takes ownership of (for example
        ``program.close`` of an :class:`aiobpf.lowlevel.Program`); they run when the source is
        released, and at once if building the source fails.

        Raises :class:`LookupError` for an unknown map, :class:`aiobpf.RecordLayoutError` when
        the declared record is not the program's struct, or when there is no record to derive
        (no typed struct written, or one with a nested struct), :class:`aiobpf.MapTypeError`
        when it is not
        a ring buffer or the counters map is not a per-CPU array, :class:`TypeError` for a bad
        ``record``, :class:`ValueError` for a negative ``max_latency`` or ``busy_poll``, for a
        numeric budget with ``busy_poll`` (with it, "auto" means none), or for ``busy_poll``
        with BCC's reader.
        """
        try:
            check_reading_mode(max_latency, busy_poll)  # before the ring is mapped
            _bcc.require_map(bpf, name)
            layout = _record_of(bpf, name, record, f"ring {name!r}")
            counter_reader = _counter_reader(bpf, name, counters)
            if reader == "auto":
                reader = "mmap" if platform.machine().lower() in _TSO_MACHINES else "bcc"
            elif reader not in ("mmap", "bcc"):
                raise ValueError(f"reader must be 'auto', 'mmap' or 'bcc', got {reader!r}")
            fd = _bcc.map_fd(bpf, name)
        except BaseException as exc:
            release_all(reversed(owned), after=exc)
            raise
        if reader == "mmap":
            return cls.from_fd(
                fd,
                name=name,
                record=layout,
                counters=counter_reader,
                max_latency=max_latency,
                busy_poll=busy_poll,
                owned=owned,
            )
        on_close: list[Callable[[], None]] = [*owned, lambda: os.close(fd)]
        try:
            consumer = _bcc.BccRingConsumer.acquire(bpf, name, layout.dtype)
            on_close.append(consumer.release)
            return cls(
                name=name,
                fd=fd,
                record=layout,
                reader=consumer,
                counters=counter_reader,
                max_latency=max_latency,
                busy_poll=busy_poll,
                on_close=on_close,
            )
        except BaseException as exc:
            release_all(reversed(on_close), after=exc)
            raise

    @classmethod
    def from_fd(
        cls,
        fd: int,
        *,
        name: str,
        record: RecordType[T],
        counters: Callable[[], list[int]] | None = None,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
        owned: Sequence[Callable[[], None]] = (),
    ) -> RingBuffer[T]:
        """A source over the ring buffer map ``fd`` of a program another loader loaded (libbpf,
        a map pinned in bpffs): the source owns ``fd`` and closes it. ``counters`` reads the
        program's ``[produced, dropped]`` counts; the other arguments are as for
        :meth:`from_bcc`. Reads the mapped ring (x86-64). Raises :class:`aiobpf.MapTypeError`
        when ``fd`` is not a ring buffer."""
        on_close: list[Callable[[], None]] = [*owned, lambda: os.close(fd)]
        ring_reader: RecordReader | None = None
        try:
            check_reading_mode(max_latency, busy_poll)
            require_tso(f"ring {name!r}")
            ring_reader = _mapped_reader(fd, name, record.dtype, on_close)
            source: RingBuffer[T] = RingBuffer(
                name=name,
                fd=fd,
                record=record,
                reader=ring_reader,
                counters=counters,
                max_latency=max_latency,
                busy_poll=busy_poll,
                on_close=on_close,
            )
            return source
        except BaseException as exc:
            # The ring cannot be unmapped under arrays over it: drop the reader's, and those
            # the error's frames hold (their locals; the traceback itself stays).
            ring_reader = None
            traceback.clear_frames(exc.__traceback__)
            release_all(reversed(on_close), after=exc)
            raise


def _mapped_reader(
    fd: int, name: str, record: np.dtype[np.void], on_close: list[Callable[[], None]]
) -> RingReader:
    """The mmap reader of ring ``fd``; the unmapping goes on ``on_close``."""
    memory = RingMemory.open(fd, name)
    on_close.append(memory.close)
    return RingReader(
        consumer_pos=memory.consumer_pos,
        producer_pos=memory.producer_pos,
        data=memory.data,
        data_size=memory.data_size,
        record=record,
    )


def _counter_reader(bpf: Any, name: str, counters: str | None) -> Callable[[], list[int]] | None:
    """The reader of the program's ``[produced, dropped]`` counts for map ``name``: the named
    per-CPU array, ``<name>_counts`` for "auto" when the program has one, or none."""
    if counters == "auto":
        counters = f"{name}_counts" if _bcc.has_map(bpf, f"{name}_counts") else None
    return None if counters is None else _bcc.percpu_sums(bpf, counters)


def _record_of(
    bpf: Any,
    name: str,
    record: np.dtype[Any] | type[ctypes.Structure] | RecordType[Any] | None,
    what: str,
) -> RecordType[Any]:
    """The declared record, checked against the struct the program writes into map ``name``;
    or, when none is declared, that struct's (``what`` names the map in errors)."""
    fields = _bcc.event_fields(bpf, name) if _bcc.has_map(bpf, name) else []
    if record is not None:
        layout = record_type(record)
        try:
            program = dtype_from_fields(fields, what)
        except RecordLayoutError:  # BCC saw no struct, or one it does not describe: unchecked
            return layout
        check_layout(layout.dtype, program, what)
        return layout
    dtype = dtype_from_fields(fields, what)
    structure = with_text(structure_for(dtype, name), text_fields(fields))
    return RecordType(dtype=dtype, decode=structures(structure))
