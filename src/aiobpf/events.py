"""Typed events built from ring records.

Events are frozen attrs classes: cheap enough at execve rates, and safe to keep and share. Hot
per-record paths (millions a second) use the numpy records themselves instead.
"""

from __future__ import annotations

import attrs
import numpy as np

__all__ = ["EXECVE_RECORD", "ExecveEvent"]

#: Layout of ``struct execve_event`` in ``bpf/execve.bpf.c`` (C alignment: 320 bytes).
EXECVE_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("ppid", "<u4"),
        ("uid", "<u4"),
        ("gid", "<u4"),
        ("retval", "<i4"),
        ("comm", "S16"),
        ("message", "S12"),
        ("filename", "S256"),
    ],
    align=True,
)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@attrs.frozen
class ExecveEvent:
    """One ``execve`` call, reported when it returns.

    ``comm`` is the process name after the call (the new program's, for a successful exec);
    ``retval`` is 0 or the negative errno of a failed exec; ``timestamp_ns`` is CLOCK_MONOTONIC
    at the return (``time.monotonic_ns()`` scale).
    """

    pid: int
    tid: int
    ppid: int
    uid: int
    gid: int
    comm: str
    filename: str
    retval: int
    timestamp_ns: int
    message: str

    @classmethod
    def from_record(cls, record: np.void) -> ExecveEvent:
        return cls(
            pid=int(record["pid"]),
            tid=int(record["tid"]),
            ppid=int(record["ppid"]),
            uid=int(record["uid"]),
            gid=int(record["gid"]),
            comm=_text(record["comm"]),
            filename=_text(record["filename"]),
            retval=int(record["retval"]),
            timestamp_ns=int(record["timestamp_ns"]),
            message=_text(record["message"]),
        )
