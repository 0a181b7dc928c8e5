"""The BPF programs aiobpf ships, each as an async source (its C beside the Python that reads
its records).

Each is created by a plain call and opened with ``async with``, which compiles, attaches and
starts it; leaving detaches it. The common ones are also at the top level
(``aiobpf.execve_events``).
"""

from __future__ import annotations

from ._dispatch import (
    SYSCALL_RECORD,
    DispatchStats,
    SyscallDispatch,
    SyscallEvent,
    SyscallEvents,
    syscall_events,
)
from ._execve import ExecveEvents, execve_events
from ._execve_event import EXECVE_RECORD, ExecveEvent
from ._hello import LOG_RECORD, HelloWorld, LogRecord, hello_world
from ._kernel_windows import KernelWindowCounts, execve_window_counts
from ._uid_counts import ExecveCounts, execve_counts

__all__ = [
    "EXECVE_RECORD",
    "LOG_RECORD",
    "SYSCALL_RECORD",
    "DispatchStats",
    "ExecveCounts",
    "ExecveEvent",
    "ExecveEvents",
    "HelloWorld",
    "KernelWindowCounts",
    "LogRecord",
    "SyscallDispatch",
    "SyscallEvent",
    "SyscallEvents",
    "execve_counts",
    "execve_events",
    "execve_window_counts",
    "hello_world",
    "syscall_events",
]
