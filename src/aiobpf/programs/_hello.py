"""``hello_world()``: the hello world program, as typed log records from its own ring."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from .._core.records import RecordType
from .._core.validate import MaxLatency, check_reading_mode
from .._kernel.objects import BpfObject
from ..sources import ProgramRing, RingBuffer
from . import _constants as C
from ._prebuilt import counted_ring
from ._text import prebuilt_path

__all__ = ["LOG_RECORD", "HelloWorld", "LogRecord", "hello_world"]

_LEVELS = {0: "error", 1: "warning", 2: "info", 3: "debug"}

#: Layout of ``struct log_record`` in ``programs/hello.bpf.c`` (104 bytes with C alignment).
LOG_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("pid", "<u4"),
        ("uid", "<u4"),
        ("level", "<u4"),
        ("comm", f"S{C.COMM_SIZE}"),
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


class HelloWorld(ProgramRing[LogRecord, BpfObject]):
    """An async source of :class:`LogRecord`: the hello world program's structured log lines,
    one per exec, from its own ring. Attaches when entered, detaches when closed."""

    _name = "hello_world()"

    def __init__(self, *, max_latency: MaxLatency = "auto") -> None:
        super().__init__()
        check_reading_mode(max_latency, 0.0)
        self._max_latency = max_latency

    def _compile(self) -> BpfObject:
        return BpfObject.load(prebuilt_path("hello"))

    def _wrap(self, program: BpfObject) -> RingBuffer[LogRecord]:
        return counted_ring(
            program,
            "logs",
            record=RecordType(dtype=LOG_RECORD, decode=LogRecord.decode),
            owned=[program.close],
            max_latency=self._max_latency,
        )


def hello_world(*, max_latency: MaxLatency = "auto") -> HelloWorld:
    """The hello world program, as a source of its structured log records:
    ``async with aiobpf.hello_world() as logs: async for record in logs: ...``.

    The program also prints "Hello World!" to the trace pipe on each exec, as ``bpf_trace_printk``
    examples do (see :func:`aiobpf.trace_pipe`). Entering raises
    :class:`aiobpf.PrivilegeError`, :class:`aiobpf.SetupError` (the prebuilt program is
    missing: run scripts/setup.sh) or :class:`aiobpf.AttachError`.
    """
    return HelloWorld(max_latency=max_latency)
