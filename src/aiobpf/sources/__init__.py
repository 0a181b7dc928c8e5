"""Async sources: kernel data channels as async iterables.

A source waits on the event loop for its file descriptor (through anyio, so the same code runs on
asyncio and trio), then takes everything available in one batch. There are no threads, no sleeps
and no busy loops on the waiting path.

Every source is an anyio receive stream: ``async with`` it, iterate it (or ``await
source.receive()``), read its ``stats`` (a frozen record), and it is closed on leaving. Rings
and map pollers are reliable, ordered streams (anyio's ``ObjectReceiveStream``); perf buffers
and the trace pipe, which can reorder or lose, are unreliable ones
(``UnreliableObjectReceiveStream``).
The generic sources here work over BPF objects of your own (``load()`` and ``compile_bcc()``
for whole programs; ``LoadedRing`` and ``LoadedMap`` make one source of a program and one of
its maps, as aiobpf's own tools do; ``ProgramSource`` and ``ProgramRing`` are the lifecycle
the shipped sources share); :mod:`aiobpf.programs` has the
sources of the programs aiobpf ships; :func:`replay` plays a recording back as a source.
"""

from __future__ import annotations

from .._core.validate import AdaptiveLatency, MaxLatency
from ._batch import BatchSource
from ._bcc_program import BccProgram, compile_bcc
from ._core_program import CoreProgram, load
from ._costs import ProgramCost, enable_program_stats
from ._loaded import LoadedMap, LoadedRing, LoadedSource
from ._maps import MapPoller, MapReading, Mode
from ._own import OwnProgram
from ._pacing import AUTO_MAX_LATENCY
from ._perf import PerfBuffer
from ._program import ProgramRing, ProgramSource
from ._replay import Replay, ReplayStats, replay
from ._ring import Reader, RingBuffer
from ._stats import MapStats, RingStats, TraceStats
from ._trace_pipe import TraceLine, TracePipe, trace_pipe

__all__ = [
    "AUTO_MAX_LATENCY",
    "AdaptiveLatency",
    "BatchSource",
    "BccProgram",
    "CoreProgram",
    "LoadedMap",
    "LoadedRing",
    "LoadedSource",
    "MapPoller",
    "MapReading",
    "MapStats",
    "MaxLatency",
    "Mode",
    "OwnProgram",
    "PerfBuffer",
    "ProgramCost",
    "ProgramRing",
    "ProgramSource",
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
