"""aiobpf: eBPF data channels as async iterables, for asyncio and trio (through anyio).

Every source is created by a plain call and opened with ``async with``; entering attaches,
leaving detaches::

    async with aiobpf.execve_events() as events:
        async for event in events:
            print(event.pid, event.uid, event.comm)

The namespaces: :mod:`aiobpf.sources` (generic sources over BPF objects of your own),
:mod:`aiobpf.programs` (the programs aiobpf ships, as sources), :mod:`aiobpf.operators`,
:mod:`aiobpf.errors`, :mod:`aiobpf.lowlevel` (programs, readers, record types) and
:mod:`aiobpf.service`. ``import aiobpf`` needs neither root nor BCC; touching the kernel without
them raises a typed error saying how to fix it.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from . import errors, lowlevel, operators, programs, sources
from ._kernel.syscalls import syscall_name, syscall_number
from .errors import (
    AiobpfError,
    AttachError,
    BccMissingError,
    BtfError,
    CompileError,
    InsecureListenerError,
    KernelHeadersError,
    KprobesUnavailableError,
    LibbpfMissingError,
    ListenError,
    MapError,
    MapTypeError,
    PrivilegeError,
    RecordLayoutError,
    SetupError,
    TracefsError,
    UnknownMapError,
    UnknownSyscallError,
    UnknownTracepointError,
)
from .operators import (
    WindowCount,
    batch,
    filter_comm,
    filter_pid,
    filter_uid,
    merge,
    pipe,
    route,
    top_n,
    window_count,
)
from .programs import (
    ExecveEvent,
    LogRecord,
    SyscallDispatch,
    SyscallEvent,
    execve_counts,
    execve_events,
    execve_window_counts,
    hello_world,
    syscall_events,
)
from .sources import MapPoller, MapReading, MapStats, RingBuffer, RingStats, TraceLine, trace_pipe

__all__ = [
    "AiobpfError",
    "AttachError",
    "BccMissingError",
    "BtfError",
    "CompileError",
    "ExecveEvent",
    "InsecureListenerError",
    "KernelHeadersError",
    "KprobesUnavailableError",
    "LibbpfMissingError",
    "ListenError",
    "LogRecord",
    "MapError",
    "MapPoller",
    "MapReading",
    "MapStats",
    "MapTypeError",
    "PrivilegeError",
    "RecordLayoutError",
    "RingBuffer",
    "RingStats",
    "SetupError",
    "SyscallDispatch",
    "SyscallEvent",
    "TraceLine",
    "TracefsError",
    "UnknownMapError",
    "UnknownSyscallError",
    "UnknownTracepointError",
    "WindowCount",
    "batch",
    "errors",
    "execve_counts",
    "execve_events",
    "execve_window_counts",
    "filter_comm",
    "filter_pid",
    "filter_uid",
    "hello_world",
    "lowlevel",
    "merge",
    "operators",
    "pipe",
    "programs",
    "route",
    "sources",
    "syscall_events",
    "syscall_name",
    "syscall_number",
    "top_n",
    "trace_pipe",
    "window_count",
]

#: Names 0.1 had at the top level: where each is found now, and what to write instead. Served
#: with a DeprecationWarning until 0.3.
_MOVED = {
    "EXECVE_EVENTS": ("aiobpf.programs._execve_event", "aiobpf.lowlevel.EXECVE_RECORD"),
    "EXECVE_RECORD": ("aiobpf.lowlevel", "aiobpf.lowlevel.EXECVE_RECORD"),
    "DispatchStats": ("aiobpf.programs", "aiobpf.programs.DispatchStats"),
    "ExecveEvents": ("aiobpf.programs", "aiobpf.programs.ExecveEvents"),
    "KernelWindowCounts": ("aiobpf.programs", "aiobpf.programs.KernelWindowCounts"),
    "Program": ("aiobpf.lowlevel", "aiobpf.lowlevel.Program"),
    "Router": ("aiobpf.operators", "aiobpf.operators.Router"),
    "TracePipe": ("aiobpf.sources", "aiobpf.sources.TracePipe"),
    "View": ("aiobpf.operators", "aiobpf.operators.View"),
}


if not TYPE_CHECKING:  # type checkers see only the names above

    def __getattr__(name: str) -> Any:
        if name not in _MOVED:
            raise AttributeError(f"module 'aiobpf' has no attribute {name!r}")
        module, instead = _MOVED[name]
        warnings.warn(
            f"aiobpf.{name} is deprecated and will be removed in 0.3: use {instead}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)
