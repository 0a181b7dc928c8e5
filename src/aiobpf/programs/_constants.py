"""The numbers aiobpf's C programs and their Python halves must agree on, written once.

Every program is compiled with these as ``-D`` flags (:func:`aiobpf.programs._text.include_flags`),
and ``aiobpf.h`` refuses to compile without them, so the C never keeps a copy of its own.
"""

from __future__ import annotations

__all__ = ["SHARED", "comm_key", "shared_flags"]

#: Slots of a ring's ``<ring>_counts`` per-CPU array (see ``aiobpf.h``).
PRODUCED = 0
DROPPED = 1

#: Bytes of a task's comm, NUL included (TASK_COMM_LEN); a comm key compares the first 15.
COMM_SIZE = 16

#: Entries each filter, selection and scope set holds (its ``max_entries``).
FILTER_CAPACITY = 1024

#: execve.bpf.c: which pushed-down filters are in force (``filter_config[0]``).
FILTER_UID = 1
FILTER_PID = 2
FILTER_COMM = 4
FILTER_CGROUP = 8

#: execve.bpf.c: the deepest cgroup level a cgroup filter looks at (the root is level 0): a
#: task below it passes a cgroup filter only through its nearer ancestors.
CGROUP_DEPTH = 32

#: execve.bpf.c: sizes of a record's strings, the syscall it reports and its truncation flags.
FILENAME_SIZE = 256
ARGS_SIZE = 2048  # argv, each argument ending with NUL, back to back
ARG_SIZE = 256  # the most of one argument kept, NUL included
MAX_ARGS = 64  # the most arguments of argv an event can keep (execve_events(max_args=))
SYSCALL_EXECVE = 0
SYSCALL_EXECVEAT = 1
TRUNCATED_FILENAME = 1
TRUNCATED_ARGS = 2

#: dispatch.bpf.c: the program array's size, the scope flags (``config[0]``), the default
#: actions (``config[1]``) and the slots of ``dispatch_counts``.
MAX_SYSCALLS = 512
SCOPE_TID = 1
SCOPE_TGID = 2
SCOPE_UID = 4
SCOPE_COMM = 8
DEFAULT_COUNT = 0
DEFAULT_EMIT = 1
DEFAULT_NOTHING = 2
STAT_IN_SCOPE = 0
STAT_FELL_THROUGH = 1
STAT_IGNORED = 2
STAT_COMPAT = 3

#: process.bpf.c: the kinds of record, the ancestors an exec record holds, the tracked set's
#: size, the tracking flag (``process_config[0]``, beside FILTER_UID) and the slot of
#: ``events_counts`` that counts forks the full tracked set could not follow.
PROCESS_FORK = 1
PROCESS_EXEC = 2
PROCESS_EXIT = 3
PROCESS_DEPTH = 16
TRACKED_CAPACITY = 16384
PROCESS_TRACK = 16
TRACKED_FULL = 2
#: process.bpf.c following a tree for another object and reporting nothing itself
#: (process_config[0]); execve.bpf.c's filter word: only execs of the shared tracked set.
PROCESS_QUIET = 32
FILTER_DESCENDANTS = 64
#: process.bpf.c: kinds of record not wanted (process_config[0]): process_events(kinds=).
PROCESS_SKIP_FORK = 128
PROCESS_SKIP_EXEC = 256
PROCESS_SKIP_EXIT = 512

SHARED = {
    name: value
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and not name.startswith("_")
}
"""Every constant above, by name."""


def comm_key(comm: str) -> bytes:
    """``struct comm_key`` of a process name: its first 15 bytes, as the kernel keeps them."""
    return comm.encode()[: COMM_SIZE - 1].ljust(COMM_SIZE, b"\0")


def shared_flags() -> list[str]:
    """``-DAIOBPF_<NAME>=<value>`` for every shared constant."""
    return [f"-DAIOBPF_{name}={value}" for name, value in sorted(SHARED.items())]
