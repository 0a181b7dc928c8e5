"""The BPF programs aiobpf ships, each as an async source (its C beside the Python that reads
its records).

Each is created by a plain call and opened with ``async with``, which loads the program
(prebuilt at set-up as a CO-RE object: no compiler at run time), attaches and starts it;
leaving detaches it. The common ones are also at the top level (``aiobpf.execve_events``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (see _HOMES): a tool pays only for its own program
    from ._biolatency import block_io_latency
    from ._command import TracedCommand, trace_command
    from ._connects import CONNECT_RECORD, ConnectEvent, connect_events
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
    from ._opens import OPEN_RECORD, OpenEvent, open_events
    from ._process import (
        PROCESS_RECORD,
        ProcessEvents,
        ProcessExec,
        ProcessExit,
        ProcessFork,
        ProcessKind,
        process_events,
    )
    from ._runqlat import run_queue_latency
    from ._uid_counts import ExecveCounts, execve_counts

__all__ = [
    "CONNECT_RECORD",
    "EXECVE_RECORD",
    "LOG_RECORD",
    "OPEN_RECORD",
    "PROCESS_RECORD",
    "SYSCALL_RECORD",
    "ConnectEvent",
    "DispatchStats",
    "ExecveCounts",
    "ExecveEvent",
    "ExecveEvents",
    "HelloWorld",
    "KernelWindowCounts",
    "LogRecord",
    "OpenEvent",
    "ProcessEvents",
    "ProcessExec",
    "ProcessExit",
    "ProcessFork",
    "ProcessKind",
    "SyscallDispatch",
    "SyscallEvent",
    "SyscallEvents",
    "TracedCommand",
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
]

#: Where each public name lives, imported the first time it is used.
_HOMES = {
    "._biolatency": ("block_io_latency",),
    "._command": ("TracedCommand", "trace_command"),
    "._connects": ("CONNECT_RECORD", "ConnectEvent", "connect_events"),
    "._dispatch": (
        "SYSCALL_RECORD",
        "DispatchStats",
        "SyscallDispatch",
        "SyscallEvent",
        "SyscallEvents",
        "syscall_events",
    ),
    "._execve": ("ExecveEvents", "execve_events"),
    "._execve_event": ("EXECVE_RECORD", "ExecveEvent"),
    "._hello": ("LOG_RECORD", "HelloWorld", "LogRecord", "hello_world"),
    "._opens": ("OPEN_RECORD", "OpenEvent", "open_events"),
    "._runqlat": ("run_queue_latency",),
    "._kernel_windows": ("KernelWindowCounts", "execve_window_counts"),
    "._process": (
        "PROCESS_RECORD",
        "ProcessEvents",
        "ProcessExec",
        "ProcessExit",
        "ProcessFork",
        "ProcessKind",
        "process_events",
    ),
    "._uid_counts": ("ExecveCounts", "execve_counts"),
}
_HOME_OF = {name: home for home, names in _HOMES.items() for name in names}

if not TYPE_CHECKING:  # type checkers see the imports above

    def __getattr__(name: str) -> Any:
        if name not in _HOME_OF:
            raise AttributeError(f"module 'aiobpf.programs' has no attribute {name!r}")
        value = getattr(importlib.import_module(_HOME_OF[name], __name__), name)
        globals()[name] = value  # the next use finds it at once
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
