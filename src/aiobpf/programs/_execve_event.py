"""Typed events built from ring records.

Events are frozen attrs classes: cheap enough at execve rates, and safe to keep and share. Hot
per-record paths (millions a second) use the numpy records themselves instead.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from .._core.builders import positional_builder
from .._core.clock import MONOTONIC_TO_WALL_NS
from .._core.records import RecordType
from .._core.text import c_string, c_strings
from . import _constants as C

__all__ = ["EXECVE_EVENTS", "EXECVE_RECORD", "MONOTONIC_TO_WALL_NS", "ExecveEvent"]


#: Layout of ``struct execve_event`` in ``programs/execve.bpf.c`` (C alignment).
EXECVE_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("cgroup_id", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("ppid", "<u4"),
        ("uid", "<u4"),
        ("gid", "<u4"),
        ("retval", "<i4"),
        ("dirfd", "<i4"),
        ("flags", "<u4"),
        ("syscall", "u1"),
        ("truncated", "u1"),
        ("argc", "<u2"),
        ("args_size", "<u4"),
        ("comm", f"S{C.COMM_SIZE}"),
        ("message", "S12"),
        ("filename", f"S{C.FILENAME_SIZE}"),
        ("args", f"S{C.ARGS_SIZE}"),
    ],
    align=True,
)

#: Where a record's argv starts.
_ARGS_OFFSET = int(EXECVE_RECORD.fields["args"][1] if EXECVE_RECORD.fields else 0)

#: ``syscall`` values of a record.
SYSCALLS = {C.SYSCALL_EXECVE: "execve", C.SYSCALL_EXECVEAT: "execveat"}


def _argv(raw: bytes, argc: int) -> tuple[str, ...]:
    """The ``argc`` NUL-terminated arguments at the start of ``raw``: decoded at once, then
    split (a NUL is never part of a UTF-8 sequence, so this is each argument decoded alone).
    Arguments the record has no bytes for come back empty, so trailing NULs missing from
    ``raw`` change nothing."""
    parts = raw.decode("utf-8", errors="replace").split("\0", argc)[:argc]
    if len(parts) < argc:
        parts += [""] * (argc - len(parts))
    return tuple(parts)


@attrs.frozen
class ExecveEvent:
    """One ``execve`` or ``execveat`` call, reported when it returns.

    ``syscall`` says which (``"execve"`` or ``"execveat"``; glibc's ``fexecve`` is an
    ``execveat`` with ``AT_EMPTY_PATH`` and an empty ``filename``); ``dirfd`` and ``flags`` are
    execveat's (``AT_FDCWD``, -100, and 0 for execve). ``filename`` is the path as the caller
    gave it; ``argv`` the arguments, up to the source's ``max_args`` and 2 KiB in all (256
    bytes each); ``filename_truncated`` and ``argv_truncated`` say when something did not fit.
    ``cgroup_id`` is the caller's cgroup v2 id (:func:`aiobpf.lowlevel.cgroup_path` gives its
    path). ``comm`` is the process name after the call (the new program's, for a successful exec);
    ``retval`` is 0 or the negative errno of a failed exec; ``timestamp_ns`` is CLOCK_MONOTONIC
    at the return (``time.monotonic_ns()`` scale) and ``time`` the same instant as wall-clock
    seconds (see :data:`MONOTONIC_TO_WALL_NS`).
    """

    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    filename: str
    argv: tuple[str, ...]
    retval: int
    timestamp_ns: int
    time: float
    syscall: str
    dirfd: int
    flags: int
    filename_truncated: bool
    argv_truncated: bool
    message: str
    cgroup_id: int

    @classmethod
    def decode(cls, batch: npt.NDArray[np.void]) -> list[ExecveEvent]:
        """The events of a batch of :data:`EXECVE_RECORD` records: record by record for a few
        (one numpy call for the batch), column by column for more (a numpy call per field, then
        plain lists). Execs mostly come a few per read, where the columns' numpy calls would
        cost more than the records (:data:`_FEW`)."""
        if len(batch) <= _FEW:
            return [_event(*row) for row in batch.tolist()]
        columns = {name: batch[name].tolist() for name in _COPIED}
        for name in _TEXT_FIELDS:
            columns[name] = c_strings(columns[name])
        truncated = batch["truncated"].tolist()
        # argv from the bytes each record used (args_size), not the whole field: one copy of
        # the batch, then a slice per record
        raw, stride = batch.tobytes(), batch.dtype.itemsize
        argv_at = [index * stride + _ARGS_OFFSET for index in range(len(batch))]
        sizes = [min(size, C.ARGS_SIZE) for size in batch["args_size"].tolist()]
        columns["argv"] = [
            _argv(raw[at : at + size], argc)
            for at, size, argc in zip(argv_at, sizes, batch["argc"].tolist(), strict=True)
        ]
        columns["time"] = [(ns + MONOTONIC_TO_WALL_NS) / 1e9 for ns in columns["timestamp_ns"]]
        columns["syscall"] = [SYSCALLS[value] for value in batch["syscall"].tolist()]
        columns["filename_truncated"] = [bool(t & C.TRUNCATED_FILENAME) for t in truncated]
        columns["argv_truncated"] = [bool(t & C.TRUNCATED_ARGS) for t in truncated]
        return [_build(*row) for row in zip(*(columns[name] for name in _FIELDS), strict=True)]


#: Up to this many records, a batch is decoded record by record: measured on one core, a
#: batch of 4 costs 4.0 µs an event so against 4.8 by columns (12 against 19 with the CPU's
#: caches cold, as after a sleep; a batch of one, 5.2 against 11 and 32 against 64), and columns
#: win from about 16.
_FEW = 8


def _event(
    timestamp_ns: int,
    cgroup_id: int,
    pid: int,
    tid: int,
    ppid: int,
    uid: int,
    gid: int,
    retval: int,
    dirfd: int,
    flags: int,
    syscall: int,
    truncated: int,
    argc: int,
    args_size: int,
    comm: bytes,
    message: bytes,
    filename: bytes,
    args: bytes,
) -> ExecveEvent:
    """The event of one record, given as its fields in :data:`EXECVE_RECORD`'s order (numpy
    drops the trailing NULs of a bytes field, which changes none of the texts: see _argv)."""
    return _build(  # ExecveEvent's fields, in order
        pid,
        tid,
        ppid,
        uid,
        gid,
        c_string(comm),
        c_string(filename),
        _argv(args[:args_size], argc),  # a slice past the field ends with it
        retval,
        timestamp_ns,
        (timestamp_ns + MONOTONIC_TO_WALL_NS) / 1e9,
        SYSCALLS[syscall],
        dirfd,
        flags,
        bool(truncated & C.TRUNCATED_FILENAME),
        bool(truncated & C.TRUNCATED_ARGS),
        c_string(message),
        cgroup_id,
    )


_FIELDS = [field.name for field in attrs.fields(ExecveEvent)]
_build = positional_builder(ExecveEvent)
_TEXT_FIELDS = ("comm", "filename", "message")
_COPIED = (
    "pid",
    "tid",
    "ppid",
    "uid",
    "gid",
    "retval",
    "timestamp_ns",
    "dirfd",
    "flags",
    "cgroup_id",
    *_TEXT_FIELDS,
)

#: Execve records decoded to :class:`ExecveEvent` per record, or kept as numpy in batches.
EXECVE_EVENTS: RecordType[ExecveEvent] = RecordType(dtype=EXECVE_RECORD, decode=ExecveEvent.decode)
