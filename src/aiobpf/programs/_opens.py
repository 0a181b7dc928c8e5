"""``open_events()``: every open, openat and openat2 (programs/opens.bpf.c) as typed events,
built on :func:`aiobpf.load` as a program of your own would be: its filters are the object's
parameters, set before the load and so in the kernel at no cost when unused."""

from __future__ import annotations

import errno
import mmap
from typing import Literal

import attrs
import numpy as np
import numpy.typing as npt

from .._core.clock import wall_time
from .._core.records import RecordType
from .._core.text import c_string
from .._core.validate import MaxLatency, check_reading_mode, ring_pages
from ..sources import LoadedRing, load
from . import _constants as C
from ._filters import id_params
from ._text import prebuilt_path

__all__ = ["OPEN_RECORD", "OpenEvent", "open_events"]

PATH_SIZE = 256

#: Layout of ``struct open_event`` in ``programs/opens.bpf.c`` (C alignment).
OPEN_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("flags", "<u8"),
        ("mode", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("uid", "<u4"),
        ("result", "<i4"),
        ("dirfd", "<i4"),
        ("syscall", "u1"),
        ("unused", "u1", (3,)),
        ("comm", f"S{C.COMM_SIZE}"),
        ("path", f"S{PATH_SIZE}"),
    ],
    align=True,
)

Syscall = Literal["open", "openat", "openat2"]
_SYSCALLS: tuple[Syscall, ...] = ("open", "openat", "openat2")


@attrs.frozen
class OpenEvent:
    """One open: ``path`` as the caller gave it (relative to ``dirfd`` for openat and openat2,
    up to 255 bytes), ``flags`` and ``mode`` (``os.O_*``), ``result`` (the new fd, or a
    negative errno), by ``pid``/``tid``/``uid``/``comm``."""

    time: float
    timestamp_ns: int
    pid: int
    tid: int
    uid: int
    comm: str
    syscall: Syscall
    dirfd: int
    path: str
    flags: int
    mode: int
    result: int

    @property
    def failed(self) -> bool:
        return self.result < 0

    @property
    def fd(self) -> int | None:
        return None if self.result < 0 else self.result

    @property
    def error(self) -> str | None:
        """The errno's name (``"ENOENT"``) of a failed open, else None."""
        return None if self.result >= 0 else errno.errorcode.get(-self.result, str(-self.result))


def decode(batch: npt.NDArray[np.void]) -> list[OpenEvent]:
    """The events of a batch of :data:`OPEN_RECORD` records."""
    return [
        OpenEvent(
            time=wall_time(row[0]),
            timestamp_ns=row[0],
            flags=row[1],
            mode=row[2],
            pid=row[3],
            tid=row[4],
            uid=row[5],
            result=row[6],
            dirfd=row[7],
            syscall=_SYSCALLS[row[8]] if row[8] < len(_SYSCALLS) else "openat",
            comm=c_string(row[10]),
            path=c_string(row[11]),
        )
        for row in batch.tolist()
    ]


OPEN_EVENTS: RecordType[OpenEvent] = RecordType(dtype=OPEN_RECORD, decode=decode)


def open_events(
    *,
    uid: int | None = None,
    pid: int | None = None,
    failed: bool = False,
    max_latency: MaxLatency = "auto",
    ring_size: int = 1 << 20,
) -> LoadedRing[OpenEvent]:
    """Every open on the machine from now on (``open``, ``openat``, ``openat2``), as
    :class:`OpenEvent`; ``uid``, ``pid`` (a process id) and ``failed`` (failed opens only)
    filter in the kernel. ``ring_size`` in bytes (a power of two pages). Opened with
    ``async with``; ``stats`` as for every ring (``received + dropped == produced``).

    ``open`` exists on x86-64 only; elsewhere its programs are left out."""
    check_reading_mode(max_latency, 0.0)
    params = {"failed_only": int(failed), **id_params(uid=uid, pid=pid)}
    program = load(
        prebuilt_path("opens"),
        params=params,
        max_entries={"events": ring_pages(ring_size) * mmap.PAGESIZE},
        optional=("on_open_enter", "on_open_exit"),
    )
    return LoadedRing(
        program, "events", record=OPEN_EVENTS, name="open_events()", max_latency=max_latency
    )
