"""``hello_world()``: the seed's hello world, as typed log records from the program's own ring."""

from __future__ import annotations

import functools

import attrs
import numpy as np
import numpy.typing as npt

from ._bcc import Program
from ._programs import include_flags, program_text
from .records import RecordType
from .sources import RingBuffer, open_program_ring

__all__ = ["LOG_RECORD", "LogRecord", "hello_world"]

_LEVELS = {0: "error", 1: "warning", 2: "info", 3: "debug"}

#: Layout of ``struct log_record`` in ``bpf/hello.bpf.c`` (104 bytes with C alignment).
LOG_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("pid", "<u4"),
        ("uid", "<u4"),
        ("level", "<u4"),
        ("comm", "S16"),
        ("text", "S64"),
    ],
    align=True,
)


@attrs.frozen
class LogRecord:
    """A log line a BPF program wrote into its ring, with the process it ran for."""

    timestamp_ns: int
    pid: int
    uid: int
    level: str
    comm: str
    text: str

    @classmethod
    def decode(cls, batch: npt.NDArray[np.void]) -> list[LogRecord]:
        """The records of a batch of :data:`LOG_RECORD`."""
        return [
            cls(
                timestamp_ns=timestamp,
                pid=pid,
                uid=uid,
                level=_LEVELS.get(level, str(level)),
                comm=comm.decode(errors="replace"),
                text=text.decode(errors="replace"),
            )
            for timestamp, pid, uid, level, comm, text in batch.tolist()
        ]


def _compile() -> Program:
    return Program.compile(program_text("hello"), cflags=include_flags())


async def hello_world(*, max_latency: float = 0.0) -> RingBuffer[LogRecord]:
    """Attaches the hello world program; returns the source of its structured log records.

    The program also prints "Hello World!" to the trace pipe on each execve, as the seed does
    (see :func:`aiobpf.trace_pipe`). Raises what :meth:`aiobpf.Program.compile` raises.
    """
    record = RecordType(dtype=LOG_RECORD, decode=LogRecord.decode)
    return await open_program_ring(
        functools.partial(_compile), "logs", record=record, max_latency=max_latency
    )
