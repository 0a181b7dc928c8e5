"""Async sources: kernel data channels as async iterables.

A source waits on the event loop for its file descriptor (through anyio, so the same code runs on
asyncio and trio), then takes everything available in one batch. There are no threads, no sleeps
and no busy loops on the waiting path.

Every source is an :class:`anyio.abc.ObjectReceiveStream`: ``async with`` it, iterate it (or
``await source.receive()``), read its ``stats`` (a frozen record), and it is closed on leaving.
The generic sources here work over BPF objects of your own; :mod:`aiobpf.programs` has the
sources of the programs aiobpf ships; :func:`replay` plays a recording back as a source.
"""

from __future__ import annotations

from .._core.validate import MaxLatency
from ._batch import BatchSource
from ._bcc_program import BccProgram, compile_bcc
from ._core_program import CoreProgram, load
from ._costs import ProgramCost, enable_program_stats
from ._maps import MapPoller, MapReading, Mode
from ._own import OwnProgram
from ._pacing import AUTO_MAX_LATENCY
from ._perf import PerfBuffer
from ._replay import Replay, ReplayStats, replay
from ._ring import Reader, RingBuffer
from ._stats import MapStats, RingStats, TraceStats
from ._trace_pipe import TraceLine, TracePipe, trace_pipe

__all__ = [
    "AUTO_MAX_LATENCY",
    "BatchSource",
    "BccProgram",
    "CoreProgram",
    "MapPoller",
    "MapReading",
    "MapStats",
    "MaxLatency",
    "Mode",
    "OwnProgram",
    "PerfBuffer",
    "ProgramCost",
    "Reader",
    "Replay",
    "ReplayStats",
    "RingBuffer",
    "RingStats",
    "TraceLine",
    "TracePipe",
    "TraceStats",
    "compile_bcc",
    "enable_program_stats",
    "load",
    "replay",
    "trace_pipe",
]
