"""``execve_events()``: every exec on the machine (execve and execveat) as a typed event."""

from __future__ import annotations

import mmap
from collections.abc import Iterable
from typing import Any

from .._core.validate import MaxLatency, check_id, check_reading_mode, ring_pages
from .._kernel.libbpf import check, libbpf
from .._kernel.objects import BpfObject
from .._resource import release_all
from ..sources import ProgramRing, RingBuffer
from . import _constants as C
from ._execve_event import EXECVE_EVENTS, ExecveEvent
from ._filters import KernelFilters, check_values
from ._prebuilt import counted_ring
from ._process import track
from ._text import execve_object, prebuilt_path

__all__ = ["ExecveEvents", "execve_events"]


#: The most arguments of argv an event can keep.
MAX_ARGS = C.MAX_ARGS


def load_execve(ring_size: int, tracked_fd: int | None = None) -> BpfObject:
    """The prebuilt execve object, loaded with a ring of ``ring_size`` bytes (not attached);
    with ``tracked_fd``, its tracked set is that map (the process object's)."""
    path, max_entries = execve_object(ring_size)
    if tracked_fd is None:
        return BpfObject.load(path, max_entries=max_entries)

    def share_tracked(program: BpfObject) -> None:
        handle = program.map_handle("tracked")
        check(libbpf().bpf_map__reuse_fd(handle, tracked_fd), "sharing the tracked set")

    return BpfObject._load(path, max_entries, share_tracked)


def start_tracker(roots: Iterable[int]) -> BpfObject:
    """The process object, following the trees of ``roots`` in its tracked set and reporting
    nothing itself, attached: the forks and exits that keep the set what execve's
    descendants filter reads. Seeded after attaching, from /proc: a process forked meanwhile
    is in the set by its parent's fork, or found by the walk."""
    tracker = BpfObject.load(prebuilt_path("process"), max_entries={"events": mmap.PAGESIZE})
    try:
        flags = C.PROCESS_TRACK | C.PROCESS_QUIET
        tracker.update("process_config", bytes(4), flags.to_bytes(4, "little"))
        tracker.attach_tracepoints()
        track(tracker, roots)
    except BaseException:
        tracker.close()
        raise
    return tracker


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
        self._roots: set[int] = set()  # filter_descendants: the trees followed
        self._tracker: BpfObject | None = None

    def _compile(self) -> BpfObject:
        if not self._roots:
            return load_execve(self._ring_size)
        # the process object follows the trees; this one reads its set: loaded together
        tracker = start_tracker(self._roots)
        try:
            program = load_execve(self._ring_size, tracker.own_map_fd("tracked"))
        except BaseException:
            tracker.close()
            raise
        self._tracker = tracker
        return program

    def _wrap(self, program: BpfObject) -> RingBuffer[ExecveEvent]:
        owned = [program.close]
        if self._tracker is not None:
            owned.append(self._tracker.close)
        try:
            filters = KernelFilters(program.map_fd)
        except BaseException as exc:
            release_all(reversed(owned), after=exc)
            raise
        self._filters = filters
        return counted_ring(
            program,
            "events",
            record=EXECVE_EVENTS,
            owned=[*owned, filters.close],
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
        if self._roots:
            self._filters.follow_descendants()

    def detach(self) -> None:
        """Stops the programs' probes, the tree's tracker's too (see
        :meth:`aiobpf.sources.ProgramSource.detach`)."""
        super().detach()
        tracker = self._tracker
        if tracker is not None and not tracker.closed:
            tracker.detach()

    def _live_filters(self) -> KernelFilters | None:
        if self._inner is None or self._inner.closed:
            return None
        return self._filters

    def push_down(self, kind: str, values: frozenset[Any]) -> bool:
        """Filters events by ``kind`` ("uid", "pid", "comm", "cgroup") in the kernel, now or
        from the start; filters of one kind intersect. "descendants" follows the trees of the
        given pids (a tracker of forks and exits, loaded beside the program), from the start
        only. Called by the filter operators."""
        if kind == "descendants":
            roots = {check_id("pid", pid) for pid in values}
            if self._program is not None:
                if self._tracker is None:
                    return False  # the tracker is loaded with the program, not after
                track(self._tracker, roots)
            self._roots |= roots
            return True
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
