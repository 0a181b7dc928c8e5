"""aiobpf: eBPF data channels as async iterables, for asyncio and trio (through anyio).

Every source is created by a plain call and opened with ``async with``; entering attaches,
leaving detaches::

    async with aiobpf.execve_events() as events:
        async for event in events:
            print(event.pid, event.uid, event.comm)

The namespaces: :mod:`aiobpf.sources` (generic sources over BPF objects of your own),
:mod:`aiobpf.programs` (the programs aiobpf ships, as sources), :mod:`aiobpf.operators`,
:mod:`aiobpf.errors`, :mod:`aiobpf.lowlevel` (programs, readers, record types),
:mod:`aiobpf.service` and :mod:`aiobpf.fleet` (events into a stream engine, and back).
``import aiobpf`` needs neither root nor BCC; touching the kernel without them raises a typed
error saying how to fix it.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import (
    AiobpfError,
    AsyncioOnlyError,
    AttachError,
    BccMissingError,
    BtfError,
    CgroupError,
    CompileError,
    InsecureEngineError,
    InsecureListenerError,
    KernelHeadersError,
    KprobesUnavailableError,
    LibbpfMissingError,
    ListenError,
    MapError,
    MapTypeError,
    NatsMissingError,
    NotOpenError,
    PrivilegeError,
    RecordingError,
    RecordLayoutError,
    SetupError,
    StreamEngineError,
    TracefsError,
    UnknownMapError,
    UnknownProgramError,
    UnknownSymbolError,
    UnknownSyscallError,
    UnknownTracepointError,
    UnknownTypeError,
    UnknownVariableError,
    UnsupportedMachineError,
    UnsupportedProgramError,
    VariableTypeError,
)

if TYPE_CHECKING:  # imported on first use (see _HOMES), so that ``import aiobpf`` stays cheap
    from . import fleet, lowlevel, operators, programs, sources
    from ._kernel.syscalls import syscall_name, syscall_number
    from .operators import (
        WindowCount,
        batch,
        filter_cgroup,
        filter_comm,
        filter_descendants,
        filter_pid,
        filter_uid,
        merge,
        pipe,
        route,
        top_n,
        window_count,
    )
    from .programs import (
        ConnectEvent,
        ExecveEvent,
        LogRecord,
        OpenEvent,
        ProcessExec,
        ProcessExit,
        ProcessFork,
        SyscallDispatch,
        SyscallEvent,
        block_io_latency,
        connect_events,
        execve_counts,
        execve_events,
        execve_window_counts,
        hello_world,
        open_events,
        process_events,
        run_queue_latency,
        syscall_events,
        trace_command,
    )
    from .sources import (
        AdaptiveLatency,
        BccProgram,
        CoreProgram,
        MapPoller,
        MapReading,
        MapStats,
        PerfBuffer,
        ProgramCost,
        ReplayStats,
        RingBuffer,
        RingStats,
        TraceLine,
        compile_bcc,
        enable_program_stats,
        load,
        replay,
        trace_pipe,
    )

__all__ = [
    "AdaptiveLatency",
    "AiobpfError",
    "AsyncioOnlyError",
    "AttachError",
    "BccMissingError",
    "BccProgram",
    "BtfError",
    "CgroupError",
    "CompileError",
    "ConnectEvent",
    "CoreProgram",
    "ExecveEvent",
    "InsecureEngineError",
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
    "NatsMissingError",
    "NotOpenError",
    "OpenEvent",
    "PerfBuffer",
    "PrivilegeError",
    "ProcessExec",
    "ProcessExit",
    "ProcessFork",
    "ProgramCost",
    "RecordLayoutError",
    "RecordingError",
    "ReplayStats",
    "RingBuffer",
    "RingStats",
    "SetupError",
    "StreamEngineError",
    "SyscallDispatch",
    "SyscallEvent",
    "TraceLine",
    "TracefsError",
    "UnknownMapError",
    "UnknownProgramError",
    "UnknownSymbolError",
    "UnknownSyscallError",
    "UnknownTracepointError",
    "UnknownTypeError",
    "UnknownVariableError",
    "UnsupportedMachineError",
    "UnsupportedProgramError",
    "VariableTypeError",
    "WindowCount",
    "batch",
    "block_io_latency",
    "compile_bcc",
    "connect_events",
    "enable_program_stats",
    "errors",
    "execve_counts",
    "execve_events",
    "execve_window_counts",
    "filter_cgroup",
    "filter_comm",
    "filter_descendants",
    "filter_pid",
    "filter_uid",
    "fleet",
    "hello_world",
    "load",
    "lowlevel",
    "merge",
    "open_events",
    "operators",
    "pipe",
    "process_events",
    "programs",
    "replay",
    "route",
    "run_queue_latency",
    "sources",
    "syscall_events",
    "syscall_name",
    "syscall_number",
    "top_n",
    "trace_command",
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


#: Where each public name lives. ``import aiobpf`` imports only the errors; a name is imported
#: from its home the first time it is used, so a program pays (numpy, BCC, the operators) only
#: for what it touches.
_HOMES = {
    "aiobpf._kernel.syscalls": ("syscall_name", "syscall_number"),
    "aiobpf.operators": (
        "WindowCount",
        "batch",
        "filter_cgroup",
        "filter_comm",
        "filter_descendants",
        "filter_pid",
        "filter_uid",
        "merge",
        "pipe",
        "route",
        "top_n",
        "window_count",
    ),
    "aiobpf.programs": (
        "ConnectEvent",
        "ExecveEvent",
        "LogRecord",
        "OpenEvent",
        "ProcessExec",
        "ProcessExit",
        "ProcessFork",
        "SyscallDispatch",
        "SyscallEvent",
        "block_io_latency",
        "connect_events",
        "execve_counts",
        "execve_events",
        "execve_window_counts",
        "hello_world",
        "open_events",
        "process_events",
        "run_queue_latency",
        "syscall_events",
        "trace_command",
    ),
    "aiobpf.sources": (
        "AdaptiveLatency",
        "BccProgram",
        "CoreProgram",
        "MapPoller",
        "MapReading",
        "MapStats",
        "PerfBuffer",
        "ProgramCost",
        "ReplayStats",
        "RingBuffer",
        "RingStats",
        "TraceLine",
        "compile_bcc",
        "enable_program_stats",
        "load",
        "replay",
        "trace_pipe",
    ),
}
_HOME_OF = {name: home for home, names in _HOMES.items() for name in names}


def _version() -> str:
    """The installed distribution's version (``aiobpf.__version__``), from its metadata."""
    from importlib import metadata

    try:
        return metadata.version("aiobpf")
    except metadata.PackageNotFoundError:  # imported from a source tree nobody installed
        return "0+unknown"


_SUBMODULES = frozenset({"fleet", "lowlevel", "operators", "programs", "sources"})


if TYPE_CHECKING:
    __version__: str

if not TYPE_CHECKING:  # type checkers see the imports above

    def __getattr__(name: str) -> Any:
        if name == "__version__":  # asked for rarely: importlib.metadata stays off start-up
            return _version()
        if name in _SUBMODULES:
            value = importlib.import_module(f"aiobpf.{name}")
        elif name in _HOME_OF:
            value = getattr(importlib.import_module(_HOME_OF[name]), name)
        elif name in _MOVED:
            module, instead = _MOVED[name]
            warnings.warn(
                f"aiobpf.{name} is deprecated and will be removed in 0.3: use {instead}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(module), name)
        else:
            raise AttributeError(f"module 'aiobpf' has no attribute {name!r}")
        globals()[name] = value  # the next use finds it at once
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
