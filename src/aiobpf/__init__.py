"""aiobpf: eBPF data channels as async iterables, for asyncio and trio (through anyio).

``import aiobpf`` needs neither root nor BCC; touching the kernel without them raises a typed
error saying how to fix it.
"""

from __future__ import annotations

from . import operators
from ._bcc import Program
from ._syscalls import syscall_name, syscall_number
from .counts import execve_counts
from .dispatch import DispatchStats, SyscallDispatch, SyscallEvent, syscall_events
from .errors import (
    AiobpfError,
    BccMissingError,
    CompileError,
    InsecureListenerError,
    KernelHeadersError,
    KprobesUnavailableError,
    ListenError,
    MapTypeError,
    PrivilegeError,
    RecordLayoutError,
    TracefsError,
    UnknownTracepointError,
)
from .events import EXECVE_EVENTS, EXECVE_RECORD, ExecveEvent
from .execve import ExecveEvents, execve_events
from .hello import LogRecord, hello_world
from .maps import MapPoller, MapReading
from .operators import (
    Router,
    View,
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
from .sources import RingBuffer
from .stats import RingStats
from .tracepipe import TraceLine, TracePipe, trace_pipe
from .windows_kernel import KernelWindowCounts, execve_window_counts

__all__ = [
    "EXECVE_EVENTS",
    "EXECVE_RECORD",
    "AiobpfError",
    "BccMissingError",
    "CompileError",
    "DispatchStats",
    "ExecveEvent",
    "ExecveEvents",
    "InsecureListenerError",
    "KernelHeadersError",
    "KernelWindowCounts",
    "KprobesUnavailableError",
    "ListenError",
    "LogRecord",
    "MapPoller",
    "MapReading",
    "MapTypeError",
    "PrivilegeError",
    "Program",
    "RecordLayoutError",
    "RingBuffer",
    "RingStats",
    "Router",
    "SyscallDispatch",
    "SyscallEvent",
    "TraceLine",
    "TracePipe",
    "TracefsError",
    "UnknownTracepointError",
    "View",
    "WindowCount",
    "batch",
    "execve_counts",
    "execve_events",
    "execve_window_counts",
    "filter_comm",
    "filter_pid",
    "filter_uid",
    "hello_world",
    "merge",
    "operators",
    "pipe",
    "route",
    "syscall_events",
    "syscall_name",
    "syscall_number",
    "top_n",
    "trace_pipe",
    "window_count",
]
