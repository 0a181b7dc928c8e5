"""``execve_events()``: every exec on the machine (execve and execveat) as a typed event."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Self

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np
import numpy.typing as npt

from ._bcc import Program
from ._btf import member_offset
from ._filters import CAPACITY, KernelFilters
from ._programs import include_flags, program_text
from ._resource import AsyncResource
from ._validate import check_reading_mode, ring_pages
from .events import EXECVE_EVENTS, ExecveEvent
from .sources import RingBuffer
from .stats import RingStats

__all__ = ["ExecveEvents", "execve_events"]


#: The most arguments of argv an event can keep (the program's loop is bounded by it).
MAX_ARGS = 64


def _compile_execve(pages: int, max_args: int) -> Program:
    flags = [
        *include_flags(),
        f"-DAIOBPF_RING_PAGES={pages}",
        f"-DAIOBPF_MAX_ARGS={max_args}",
        f"-DAIOBPF_TASK_REAL_PARENT={member_offset('task_struct', 'real_parent')}",
        f"-DAIOBPF_TASK_TGID={member_offset('task_struct', 'tgid')}",
    ]
    return Program.compile(program_text("execve"), cflags=flags, attach=False)


class ExecveEvents(AsyncResource):
    """An async source of :class:`ExecveEvent`, one per ``execve`` or ``execveat`` call on the
    machine.

    Attaches to the ``syscalls`` tracepoints of both calls' entry and return (and to
    ``sched:sched_process_exec``, to follow a thread that execs under a new id) when entered, or
    at the first iteration for a bare ``async for``, and detaches when closed. Cancellation,
    memory and loss behave as for :class:`aiobpf.RingBuffer`, which it wraps; :attr:`stats`
    counts what the ring (or the program's table of execs in flight) could not hold.

    32-bit (ia32) processes on x86-64 are not seen: the kernel's syscall tracepoints do not
    fire for compat syscalls.
    """

    def __init__(
        self,
        *,
        ring_size: int = 1024 * 1024,
        max_latency: float = 0.0,
        busy_poll: float = 0.0,
        max_args: int = 20,
    ) -> None:
        self._pages = ring_pages(ring_size)
        if not isinstance(max_args, int) or not 0 <= max_args <= MAX_ARGS:
            raise ValueError(
                f"max_args must be a whole number from 0 to {MAX_ARGS}, got {max_args!r}"
            )
        self._max_args = max_args
        check_reading_mode(max_latency, busy_poll)
        self._max_latency = max_latency
        self._busy_poll = busy_poll
        self._ring: RingBuffer[ExecveEvent] | None = None
        self._filters: KernelFilters | None = None
        self._wanted: list[tuple[str, frozenset[Any]]] = []
        self._selected: dict[str, frozenset[Any] | None] = {}
        self._opening = False
        self._closed = False

    async def open(self) -> RingBuffer[ExecveEvent]:
        """Compiles and attaches the program (clang runs in a worker thread); idempotent.

        Raises what :meth:`aiobpf.Program.compile` raises (:class:`aiobpf.PrivilegeError`,
        :class:`aiobpf.BccMissingError`, :class:`aiobpf.KernelHeadersError`, ...), and
        :class:`anyio.ClosedResourceError` once closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if self._ring is not None:
            return self._ring
        if self._opening:
            raise anyio.BusyResourceError("opening")
        self._opening = True
        try:
            program = await anyio.to_thread.run_sync(
                functools.partial(_compile_execve, self._pages, self._max_args)
            )
            try:
                filters = KernelFilters(program)
            except BaseException:
                program.close()
                raise
            ring = RingBuffer.from_bcc(
                program.bpf,
                "events",
                record=EXECVE_EVENTS,
                max_latency=self._max_latency,
                busy_poll=self._busy_poll,
                owned=[program.close, filters.close],
            )
            self._ring, self._filters = ring, filters
            try:
                for kind, values in self._wanted:
                    filters.restrict(kind, values)
                for kind, selection in self._selected.items():
                    filters.select(kind, selection)
                # attached once the filters hold: no exec they exclude can reach the ring
                await anyio.to_thread.run_sync(program.attach_tracepoints)
                await anyio.lowlevel.checkpoint_if_cancelled()
                if self._closed:  # closed by another task while compiling
                    raise anyio.ClosedResourceError
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await ring.aclose()
                raise
            return ring
        finally:
            self._opening = False

    def push_down(self, kind: str, values: frozenset[Any]) -> bool:
        """Filters events by ``kind`` ("uid", "pid" or "comm") in the kernel, now or from the
        start; filters of one kind intersect. Called by the filter operators."""
        if kind not in KernelFilters.kinds:
            return False
        self._wanted.append((kind, values))
        if self._filters is not None and self._ring is not None and not self._ring.closed:
            self._filters.restrict(kind, values)
        return True

    def select(self, kind: str, values: frozenset[Any] | None) -> None:
        """Passes only events whose ``kind`` is in ``values`` from the kernel (None: all), within
        the pushed-down filters; replaces the last selection of ``kind``, so it can widen again.

        For a source shared by consumers that want different things: select the union of what
        they want and let each filter its own part. Raises :class:`ValueError` for an unknown
        kind or more than :data:`aiobpf._filters.CAPACITY` values.
        """
        if kind not in KernelFilters.kinds:
            raise ValueError(
                f"cannot select by {kind!r} in the kernel: one of {sorted(KernelFilters.kinds)}"
            )
        if values is not None and len(values) > CAPACITY:
            raise ValueError(f"a kernel {kind} selection holds at most {CAPACITY} values")
        self._selected[kind] = values
        if self._filters is not None and self._ring is not None and not self._ring.closed:
            self._filters.select(kind, values)

    def __or__(self, operator: Callable[[ExecveEvents], Any]) -> Any:
        """``events | operator``: filters that can run in the kernel return this source."""
        return operator(self)

    @property
    def ring(self) -> RingBuffer[ExecveEvent]:
        """The underlying ring source; raises :class:`RuntimeError` before :meth:`open`."""
        if self._ring is None:
            raise RuntimeError("execve_events() is not open yet: use 'async with' or open()")
        return self._ring

    @property
    def stats(self) -> RingStats:
        return self.ring.stats

    def __aiter__(self) -> ExecveEvents:
        return self

    async def __anext__(self) -> ExecveEvent:
        if self._closed:
            raise StopAsyncIteration
        ring = self._ring if self._ring is not None else await self.open()
        return await ring.__anext__()

    async def receive(self) -> ExecveEvent:
        """The next event (opening the source if needed); raises as RingBuffer.receive()."""
        return await (await self.open()).receive()

    def batches(self) -> _Batches:
        """Numpy batches of raw ``EXECVE_RECORD`` records, for high rates (see RingBuffer)."""
        return _Batches(self)

    async def aclose(self) -> None:
        """Detaches the program and releases the ring. Idempotent."""
        self._closed = True
        if self._ring is not None:
            await self._ring.aclose()

    async def __aenter__(self) -> Self:
        await self.open()  # entering attaches; leaving (AsyncResource) closes
        return self


class _Batches:
    """Batches of an :class:`ExecveEvents` source, opening it on first use."""

    def __init__(self, source: ExecveEvents) -> None:
        self._source = source

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> npt.NDArray[np.void]:
        ring = await self._source.open()
        try:
            return await ring.receive_batch()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


def execve_events(
    *,
    ring_size: int = 1024 * 1024,
    max_latency: float = 0.0,
    busy_poll: float = 0.0,
    max_args: int = 20,
) -> ExecveEvents:
    """Every exec on the machine (``execve`` and ``execveat``), as :class:`ExecveEvent`.

    Use ``async with aiobpf.execve_events() as events: async for ev in events: ...`` for
    deterministic release; a bare ``async for`` also works and releases when the source is
    collected. ``ring_size`` is the ring's size in bytes (a power-of-two number of pages; an
    event takes about 2.4 KiB of it); ``max_latency`` is the latency budget and ``busy_poll``
    the low-latency mode, in seconds (see :meth:`RingBuffer.from_bcc`); ``max_args`` how many
    arguments of argv to keep (0 to 64; like BCC's execsnoop, 20 by default).

    Raises :class:`ValueError` for a ring size that is not a power-of-two number of pages, a
    negative budget, or ``max_args`` out of range.
    """
    return ExecveEvents(
        ring_size=ring_size, max_latency=max_latency, busy_poll=busy_poll, max_args=max_args
    )
