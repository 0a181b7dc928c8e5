"""Typed events built from ring records.

Events are frozen attrs classes: cheap enough at execve rates, and safe to keep and share. Hot
per-record paths (millions a second) use the numpy records themselves instead.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from .records import RecordType

__all__ = ["EXECVE_EVENTS", "EXECVE_RECORD", "ExecveEvent"]

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
    """A C string field: up to its first NUL (what follows is not part of it)."""
    return raw.partition(b"\0")[0].decode("utf-8", errors="replace")


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
    def decode(cls, batch: npt.NDArray[np.void]) -> list[ExecveEvent]:
        """The events of a batch of :data:`EXECVE_RECORD` records."""
        columns = {name: batch[name].tolist() for name in _FIELDS}
        for name in _TEXT_FIELDS:
            columns[name] = [_text(raw) for raw in columns[name]]
        return [
            cls(**dict(zip(_FIELDS, row, strict=True)))
            for row in zip(*columns.values(), strict=True)
        ]


_FIELDS = [field.name for field in attrs.fields(ExecveEvent)]
_TEXT_FIELDS = ("comm", "filename", "message")

#: Execve records decoded to :class:`ExecveEvent` per record, or kept as numpy in batches.
EXECVE_EVENTS: RecordType[ExecveEvent] = RecordType(dtype=EXECVE_RECORD, decode=ExecveEvent.decode)
