"""``execve_events()``: every exec on the machine (execve and execveat) as a typed event."""

from __future__ import annotations

from typing import Any

from .._core.validate import MaxLatency, check_reading_mode, ring_pages
from .._kernel.objects import BpfObject
from ..sources import RingBuffer
from ..sources._program import ProgramRing
from . import _constants as C
from ._execve_event import EXECVE_EVENTS, ExecveEvent
from ._filters import KernelFilters, check_values
from ._prebuilt import counted_ring
from ._text import execve_object

__all__ = ["ExecveEvents", "execve_events"]


#: The most arguments of argv an event can keep.
MAX_ARGS = C.MAX_ARGS


def load_execve(ring_size: int) -> BpfObject:
    """The prebuilt execve object, loaded with a ring of ``ring_size`` bytes (not attached)."""
    path, max_entries = execve_object(ring_size)
    return BpfObject.load(path, max_entries=max_entries)


class ExecveEvents(ProgramRing[ExecveEvent, BpfObject]):
    """An async source of :class:`ExecveEvent`, one per ``execve`` or ``execveat`` call on the
    machine.

    Attaches to the ``syscalls`` tracepoints of both calls' entry and return when entered, or
    at the first iteration for a bare ``async for``, and detaches when closed. An exec in
    flight is kept in its task's own storage (no table anyone could fill). Cancellation, memory
    and loss behave as for :class:`aiobpf.RingBuffer`, which it wraps; :attr:`stats` counts
    what the ring (or the kernel's memory for execs in flight) could not hold.

    32-bit (ia32) processes on x86-64 are not seen: the kernel's syscall tracepoints do not
    fire for compat syscalls.
    """

    _name = "execve_events()"

    def __init__(
        self,
        *,
        ring_size: int = 1024 * 1024,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
        max_args: int = 20,
    ) -> None:
        super().__init__()
        ring_pages(ring_size)  # a power-of-two number of pages, or ValueError
        self._ring_size = ring_size
        if not isinstance(max_args, int) or not 0 <= max_args <= MAX_ARGS:
            raise ValueError(
                f"max_args must be a whole number from 0 to {MAX_ARGS}, got {max_args!r}"
            )
        self._max_args = max_args
        check_reading_mode(max_latency, busy_poll)
        self._max_latency = max_latency
        self._busy_poll = busy_poll
        self._filters: KernelFilters | None = None
        self._wanted: list[tuple[str, frozenset[Any]]] = []
        self._selected: dict[str, frozenset[Any] | None] = {}

    def _compile(self) -> BpfObject:
        return load_execve(self._ring_size)

    def _wrap(self, program: BpfObject) -> RingBuffer[ExecveEvent]:
        try:
            filters = KernelFilters(program.map_fd)
        except BaseException:
            program.close()
            raise
        self._filters = filters
        return counted_ring(
            program,
            "events",
            record=EXECVE_EVENTS,
            owned=[program.close, filters.close],
            max_latency=self._max_latency,
            busy_poll=self._busy_poll,
        )

    def _configure(self, program: BpfObject, inner: RingBuffer[ExecveEvent]) -> None:
        assert self._filters is not None
        program.update("execve_config", bytes(4), self._max_args.to_bytes(4, "little"))
        for kind, values in self._wanted:
            self._filters.restrict(kind, values)
        for kind, selection in self._selected.items():
            self._filters.select(kind, selection)

    def _live_filters(self) -> KernelFilters | None:
        if self._inner is None or self._inner.closed:
            return None
        return self._filters

    def push_down(self, kind: str, values: frozenset[Any]) -> bool:
        """Filters events by ``kind`` ("uid", "pid" or "comm") in the kernel, now or from the
        start; filters of one kind intersect. Called by the filter operators."""
        if kind not in KernelFilters.kinds:
            return False
        check_values(kind, values)  # a bad value fails here, not when the source opens
        self._wanted.append((kind, values))
        filters = self._live_filters()
        if filters is not None:
            filters.restrict(kind, values)
        return True

    def select(self, kind: str, values: frozenset[Any] | None) -> None:
        """Passes only events whose ``kind`` is in ``values`` from the kernel (None: all), within
        the pushed-down filters; replaces the last selection of ``kind``, so it can widen again.

        For a source shared by consumers that want different things: select the union of what
        they want and let each filter its own part. Raises :class:`ValueError` for an unknown
        kind, a bad value, or more values than the kernel's set holds (1,024).
        """
        if kind not in KernelFilters.kinds:
            raise ValueError(
                f"cannot select by {kind!r} in the kernel: one of {sorted(KernelFilters.kinds)}"
            )
        if values is not None:
            check_values(kind, values)
        self._selected[kind] = values
        filters = self._live_filters()
        if filters is not None:
            filters.select(kind, values)


def execve_events(
    *,
    ring_size: int = 1024 * 1024,
    max_latency: MaxLatency = "auto",
    busy_poll: float = 0.0,
    max_args: int = 20,
) -> ExecveEvents:
    """Every exec on the machine (``execve`` and ``execveat``), as :class:`ExecveEvent`.

    Use ``async with aiobpf.execve_events() as events: async for ev in events: ...`` for
    deterministic release; a bare ``async for`` also works and releases when the source is
    collected. ``ring_size`` is the ring's size in bytes (a power-of-two number of pages; an
    event takes about 2.4 KiB of it); ``max_latency`` is the latency budget (adaptive by default,
    a few milliseconds at most) and ``busy_poll`` the low-latency mode, in seconds (see
    :meth:`RingBuffer.from_bcc`); ``max_args`` how many
    arguments of argv to keep (0 to 64; like BCC's execsnoop, 20 by default).

    Raises :class:`ValueError` for a ring size that is not a power-of-two number of pages, a
    negative budget, or ``max_args`` out of range.
    """
    return ExecveEvents(
        ring_size=ring_size, max_latency=max_latency, busy_poll=busy_poll, max_args=max_args
    )
