"""``process_events()``: every process from fork to exit (programs/process.bpf.c), as typed
events, and following one process's tree in the kernel.

A program of its own, apart from the execve object, so that ``execve_events()`` starts and
costs what it did: three raw tracepoints of the scheduler (fork, exec, exit) and no syscall
tracepoints.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, get_args

import attrs
import numpy as np
import numpy.typing as npt

from .._core.clock import wall_time
from .._core.records import RecordType
from .._core.text import c_string
from .._core.validate import MaxLatency, check_id, check_reading_mode, ring_pages
from .._kernel.boot import boot_id
from .._kernel.map_io import percpu_sums
from .._kernel.objects import BpfObject
from ..sources import ProgramRing, RingBuffer
from . import _constants as C
from ._prebuilt import counted_ring
from ._text import prebuilt_path

__all__ = [
    "PROCESS_RECORD",
    "ProcessEvent",
    "ProcessEvents",
    "ProcessExec",
    "ProcessExit",
    "ProcessFork",
    "ProcessKind",
    "process_events",
]

#: Layout of ``struct process_event`` in ``programs/process.bpf.c`` (C alignment).
PROCESS_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("start_ns", "<u8"),
        ("cgroup_id", "<u8"),
        ("kind", "<u4"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("ppid", "<u4"),
        ("uid", "<u4"),
        ("gid", "<u4"),
        ("exit_code", "<i4"),
        ("depth", "<u4"),
        ("ancestors", "<u4", (C.PROCESS_DEPTH,)),
        ("comm", f"S{C.COMM_SIZE}"),
        ("parent_comm", f"S{C.COMM_SIZE}"),
        ("filename", f"S{C.FILENAME_SIZE}"),
    ],
    align=True,
)

#: How many ancestors an exec event names at most (the nearest first).
ANCESTORS = C.PROCESS_DEPTH


@attrs.frozen
class ProcessFork:
    """A new process (``pid``), forked by ``ppid`` (named ``parent_comm``); ``comm`` is the
    parent's, which the child keeps until it execs. Threads are not processes: a new thread
    is not reported."""

    type: ClassVar[Literal["fork"]] = "fork"
    pid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    parent_comm: str
    time: float
    timestamp_ns: int
    start_ns: int
    cgroup_id: int


@attrs.frozen
class ProcessExec:
    """Process ``pid`` runs ``filename`` (``comm`` is the new program's name). ``ancestors``:
    the tgids of its parent, the parent's parent and so on up to init, nearest first, read
    from the kernel at the exec (at most :data:`ANCESTORS`). ``exec_id`` is unique to this
    exec across the boot (the boot's id, the pid and the exec's time); ``start_ns`` (the
    process's start, CLOCK_MONOTONIC) ties the execs of one process together. ``tid``: the
    thread that exec'd, now the process's only one."""

    type: ClassVar[Literal["exec"]] = "exec"
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    filename: str
    ancestors: tuple[int, ...]
    exec_id: str
    time: float
    timestamp_ns: int
    start_ns: int
    cgroup_id: int


@attrs.frozen
class ProcessExit:
    """Process ``pid`` ended, with its last thread (one event per process). ``exit_code`` is
    what it passed to exit (None when a signal ended it); ``signal`` the signal's name
    ("SIGKILL"; None for an exit); ``core_dumped`` whether the signal dumped core; ``status``
    the raw wait status. ``duration_s``: from the process's start to its end."""

    type: ClassVar[Literal["exit"]] = "exit"
    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    exit_code: int | None
    signal: str | None
    core_dumped: bool
    status: int
    duration_s: float
    time: float
    timestamp_ns: int
    start_ns: int
    cgroup_id: int

    @property
    def failed(self) -> bool:
        """Whether it ended with a non-zero code or by a signal."""
        return self.exit_code != 0


ProcessEvent = ProcessFork | ProcessExec | ProcessExit

ProcessKind = Literal["fork", "exec", "exit"]

#: The flag that leaves each kind of record out, in the kernel.
_SKIP = {"fork": C.PROCESS_SKIP_FORK, "exec": C.PROCESS_SKIP_EXEC, "exit": C.PROCESS_SKIP_EXIT}


def _check_kinds(kinds: Iterable[ProcessKind]) -> frozenset[ProcessKind]:
    if isinstance(kinds, str):
        raise TypeError(f"kinds is a collection of kinds, such as ({kinds!r},), not a string")
    wanted = frozenset(kinds)
    unknown = sorted(str(kind) for kind in wanted - set(get_args(ProcessKind)))
    if unknown or not wanted:
        raise ValueError(f"kinds must be some of {get_args(ProcessKind)}, got {unknown or 'none'}")
    return wanted


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _decode_one(row: tuple[Any, ...]) -> ProcessEvent:
    (timestamp_ns, start_ns, cgroup_id, kind, pid, tid, ppid, uid, gid, status, depth,
     ancestors, comm, parent_comm, filename) = row  # fmt: skip
    time = wall_time(timestamp_ns)
    if kind == C.PROCESS_FORK:
        return ProcessFork(
            pid, ppid, uid, gid, c_string(comm), c_string(parent_comm), time, timestamp_ns,
            start_ns, cgroup_id,
        )  # fmt: skip
    if kind == C.PROCESS_EXEC:
        return ProcessExec(
            pid, tid, ppid, uid, gid, c_string(comm), c_string(filename),
            tuple(ancestors[: min(depth, ANCESTORS)].tolist()), f"{boot_id()}:{pid}:{timestamp_ns}",
            time, timestamp_ns, start_ns, cgroup_id,
        )  # fmt: skip
    number = status & 0x7F
    return ProcessExit(
        pid, tid, ppid, uid, gid, c_string(comm),
        exit_code=None if number else (status >> 8) & 0xFF,
        signal=_signal_name(number) if number else None,
        core_dumped=bool(status & 0x80),
        status=status,
        duration_s=max(timestamp_ns - start_ns, 0) / 1e9,
        time=time, timestamp_ns=timestamp_ns, start_ns=start_ns, cgroup_id=cgroup_id,
    )  # fmt: skip


def decode(batch: npt.NDArray[np.void]) -> list[ProcessEvent]:
    """The events of a batch of :data:`PROCESS_RECORD` records."""
    return [_decode_one(row) for row in batch.tolist()]


PROCESS_EVENTS: RecordType[ProcessEvent] = RecordType(dtype=PROCESS_RECORD, decode=decode)


def track(program: BpfObject, roots: Iterable[int]) -> None:
    """Puts ``roots`` and the processes below them now into ``program``'s tracked set."""
    for root in roots:
        for pid in descendants_now(root):
            program.update("tracked", pid.to_bytes(4, "little"), b"\1")


def descendants_now(pid: int) -> set[int]:
    """``pid`` and the processes below it that exist now, from /proc's children lists (where
    the kernel gives them) or its parent links. Racy as anything read from /proc: processes
    forked meanwhile are caught by the kernel's tracking once it runs, those forked before it
    by this walk."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class ProcessEvents(ProgramRing[ProcessEvent, BpfObject]):
    """An async source of :class:`ProcessFork`, :class:`ProcessExec` and :class:`ProcessExit`
    events, one per process fork, exec and exit on the machine (or in the followed trees).

    Attaches to the scheduler's raw tracepoints ``sched_process_fork``, ``sched_process_exec``
    and ``sched_process_exit`` when entered, and detaches when closed. Cancellation, memory
    and loss behave as for :class:`aiobpf.RingBuffer`, which it wraps; :attr:`tracked_full`
    counts forks of followed processes the kernel's tracked set had no room for (their
    subtrees are not followed).
    """

    _name = "process_events()"

    def __init__(
        self,
        *,
        ring_size: int = 1024 * 1024,
        max_latency: MaxLatency = "auto",
        kinds: Iterable[ProcessKind] = ("fork", "exec", "exit"),
    ) -> None:
        super().__init__()
        ring_pages(ring_size)
        check_reading_mode(max_latency, 0.0)
        self.kinds = _check_kinds(kinds)
        """The kinds of event reported: the others never leave the kernel."""
        self._ring_size, self._max_latency = ring_size, max_latency
        self._uids: frozenset[int] | None = None
        self._roots: set[int] = set()
        self._tracking = False
        self._counters: Any = None

    def _compile(self) -> BpfObject:
        return BpfObject.load(prebuilt_path("process"), max_entries={"events": self._ring_size})

    def _wrap(self, program: BpfObject) -> RingBuffer[ProcessEvent]:
        try:
            fd = program.map_fd("events_counts")
        except BaseException:
            program.close()
            raise
        self._counters = percpu_sums(fd, 3)
        return counted_ring(
            program,
            "events",
            record=PROCESS_EVENTS,
            owned=[program.close, lambda: os.close(fd)],
            max_latency=self._max_latency,
        )

    def _configure(self, program: BpfObject, inner: RingBuffer[ProcessEvent]) -> None:
        for uid in self._uids or ():
            program.update("filter_uids", uid.to_bytes(4, "little"), b"\1")
        self._track(program, self._roots)
        self._write_flags(program)

    def _write_flags(self, program: BpfObject) -> None:
        flags = (C.FILTER_UID if self._uids is not None else 0) | (
            C.PROCESS_TRACK if self._tracking else 0
        )
        for kind, skip in _SKIP.items():
            if kind not in self.kinds:
                flags |= skip
        program.update("process_config", bytes(4), flags.to_bytes(4, "little"))

    def _track(self, program: BpfObject, roots: Iterable[int]) -> None:
        track(program, roots)

    @property
    def tracked_full(self) -> int:
        """Forks of followed processes that the full tracked set could not follow."""
        return 0 if self._counters is None else int(self._counters()[C.TRACKED_FULL])

    def follow(self, pids: Iterable[int]) -> None:
        """Reports only ``pids``, the processes below them now and those they fork from now
        on (the kernel follows forks, so a process that double-forks or is reparented to init
        stays followed); more calls add more trees. Before the source opens or while it runs.
        Raises :class:`ValueError` for a pid that is not one."""
        roots = {check_id("pid", pid) for pid in pids}
        self._roots |= roots
        self._tracking = True
        program = self._program
        if program is not None and not program.closed:
            self._track(program, roots)
            self._write_flags(program)

    def push_down(self, kind: str, values: frozenset[Any]) -> bool:
        """Filters by ``kind`` in the kernel: "uid" (intersecting), or "descendants" (the
        trees of the given pids, see :meth:`follow`). Called by the filter operators."""
        if kind == "descendants":
            self.follow(values)
            return True
        if kind != "uid":
            return False
        uids = frozenset(check_id("uid", uid) for uid in values)
        if self._program is not None:
            return False  # the set only narrows before opening: user space filters the rest
        self._uids = uids if self._uids is None else self._uids & uids
        return True


def process_events(
    *,
    ring_size: int = 1024 * 1024,
    max_latency: MaxLatency = "auto",
    kinds: Iterable[ProcessKind] = ("fork", "exec", "exit"),
) -> ProcessEvents:
    """Every process fork, exec and exit on the machine, as :class:`ProcessFork`,
    :class:`ProcessExec` and :class:`ProcessExit`: ``async with aiobpf.process_events() as
    events: async for event in events``, with ``event.type`` "fork", "exec" or "exit".
    ``aiobpf.filter_descendants(pid)`` and ``filter_uid`` run in the kernel, and so does
    ``kinds``: ``kinds=("exit",)`` reports exits only, and the ring (and its losses) holds
    nothing else. Other arguments as for :func:`aiobpf.execve_events`; an unknown kind is a
    :class:`ValueError`."""
    return ProcessEvents(ring_size=ring_size, max_latency=max_latency, kinds=kinds)
