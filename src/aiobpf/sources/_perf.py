"""PerfBuffer: the samples of a ``BPF_PERF_OUTPUT`` map as an async source, read from the
mapped per-CPU buffers (no BCC callback, no thread), with the same surface as RingBuffer."""

from __future__ import annotations

import ctypes
import os
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import numpy as np

from .._core.records import RecordType
from .._core.validate import MaxLatency, check_reading_mode
from .._kernel import bcc as _bcc
from .._kernel.perf_buffer import PerfBuffers, open_perf_buffers
from .._resource import release_all
from ._batch import BatchSource
from ._ring import _counter_reader, _record_of, require_tso
from ._stats import RingStats

__all__ = ["PerfBuffer"]

R = TypeVar("R")
T = TypeVar("T")


class PerfBuffer(BatchSource[R]):
    """An async source of the samples of one BPF perf buffer map (``BPF_PERF_OUTPUT``, BCC's
    ``perf_submit``), the output kernels before 5.8 have. Create it with :meth:`from_bcc`.

    An anyio ``UnreliableObjectReceiveStream``, not an ``ObjectReceiveStream``: samples of
    different CPUs come out of order, and a full CPU buffer loses them (counted), so code that
    needs a reliable, ordered stream does not take one by mistake. Ring buffers are the
    reliable kind (:class:`aiobpf.RingBuffer`).

    It reads the per-CPU buffers the kernel maps, in numpy batches, waiting on one epoll fd
    over them on the event loop: the same iteration, ``batches()``, latency budget, closing and
    cancellation contract as :class:`RingBuffer`.

    **Order**: samples come CPU by CPU within a batch; each CPU's are in the order it wrote
    them, but samples of different CPUs are not ordered with respect to each other. Give
    ``order_by`` (a timestamp field) to have each batch sorted by it.

    **Loss**: a CPU's buffer that is full loses the sample; the kernel counts it and reports
    the count with its next sample. :attr:`stats` ``lost`` is that count; ``dropped`` is the
    program's own count (``<name>_counts``, as for rings) where it keeps one, else ``lost``.
    """

    _perf: PerfBuffers
    #: a perf event's poll takes its wake-up: waits look at the buffers again after registering
    _readiness_consumed_by_poll = True

    @classmethod
    def from_bcc(
        cls,
        bpf: Any,
        name: str,
        *,
        record: np.dtype[Any] | type[ctypes.Structure] | RecordType[Any] | None = None,
        page_cnt: int = 64,
        counters: str | None = "auto",
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
        order_by: str | None = None,
        owned: Sequence[Callable[[], None]] = (),
    ) -> PerfBuffer[Any]:
        """A source over perf buffer ``name`` of a ``bcc.BPF`` object (which stays yours to
        clean up; do not also call its ``open_perf_buffer`` for this map).

        ``record``, ``counters``, ``max_latency``, ``busy_poll`` and ``owned`` are as for
        :meth:`RingBuffer.from_bcc` (left out, the record is the struct the program passes to
        ``perf_submit``). ``page_cnt`` is each CPU's buffer size in pages (a power of two).
        ``order_by`` names a field to sort each batch by (a timestamp the program writes).

        Raises what :meth:`RingBuffer.from_bcc` raises, :class:`aiobpf.MapTypeError` when the
        map is not a perf event array, :class:`ValueError` for a bad ``page_cnt`` or an unknown
        ``order_by`` field, :class:`aiobpf.PrivilegeError` without CAP_PERFMON, and
        :class:`aiobpf.UnsupportedMachineError` on CPUs other than x86-64 (the reader's
        ordering argument).
        """
        try:
            _bcc.require_map(bpf, name)
            layout = _record_of(bpf, name, record, f"perf buffer {name!r}")
            counter_reader = _counter_reader(bpf, name, counters)
            fd = _bcc.map_fd(bpf, name)
        except BaseException as exc:
            release_all(reversed(owned), after=exc)
            raise
        return cls.from_fd(
            fd,
            name=name,
            record=layout,
            page_cnt=page_cnt,
            counters=counter_reader,
            max_latency=max_latency,
            busy_poll=busy_poll,
            order_by=order_by,
            owned=owned,
        )

    @classmethod
    def from_fd(
        cls,
        fd: int,
        *,
        name: str,
        record: RecordType[T],
        page_cnt: int = 64,
        counters: Callable[[], list[int]] | None = None,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
        order_by: str | None = None,
        owned: Sequence[Callable[[], None]] = (),
    ) -> PerfBuffer[T]:
        """A source over the perf event array map ``fd`` of a program another loader loaded
        (libbpf, a map pinned in bpffs): the source owns ``fd`` and closes it. ``counters``
        reads the program's ``[produced, dropped]`` counts; the rest is as for
        :meth:`from_bcc`."""
        on_close: list[Callable[[], None]] = [*owned, lambda: os.close(fd)]
        reader: PerfBuffers | None = None
        try:
            check_reading_mode(max_latency, busy_poll)
            require_tso(f"perf buffer {name!r}")
            if order_by is not None and order_by not in (record.dtype.names or ()):
                raise ValueError(
                    f"order_by must name a field of the record {record.dtype.names}, "
                    f"got {order_by!r}"
                )
            reader, epoll, release = open_perf_buffers(
                fd, name, record.dtype, page_cnt, order_by=order_by
            )
            on_close.append(release)
            source: PerfBuffer[T] = PerfBuffer(
                name=name,
                fd=epoll.fileno(),
                record=record,
                reader=reader,
                counters=counters,
                max_latency=max_latency,
                busy_poll=busy_poll,
                on_close=on_close,
            )
            source._perf = reader
            return source
        except BaseException as exc:
            reader = None
            traceback.clear_frames(exc.__traceback__)
            release_all(reversed(on_close), after=exc)
            raise

    def _current_stats(self) -> RingStats:
        stats = super()._current_stats()
        lost = self._perf.lost
        if self._counters is None:
            return attrs.evolve(stats, dropped=lost, lost=lost)
        return attrs.evolve(stats, lost=lost)
