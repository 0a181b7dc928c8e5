"""Syscall names and numbers of the running machine.

Which syscalls the kernel has comes from tracefs (``events/syscalls/sys_enter_<name>``); their
numbers, which tracefs does not give (a tracepoint's ``id`` is the event's, not the syscall's),
come from the architecture's ABI header ``asm/unistd_64.h``. Syscall numbers are ABI: they never
change on an architecture, so a header older than the kernel is still right for every syscall it
names.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path

from ..errors import SetupError, UnknownSyscallError
from .tracefs import ensure_tracefs

__all__ = ["syscall_name", "syscall_number", "syscall_table"]

_ARCH_DIRS = {"x86_64": "x86", "aarch64": "arm64"}
_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.MULTILINE)


def _headers() -> list[Path]:
    machine = platform.machine()
    build = Path("/lib/modules") / os.uname().release / "build"
    arch = _ARCH_DIRS.get(machine, machine)
    return [
        build / "arch" / arch / "include" / "generated" / "uapi" / "asm" / "unistd_64.h",
        Path("/usr/include") / f"{machine}-linux-gnu" / "asm" / "unistd_64.h",
        Path("/usr/include/asm/unistd_64.h"),
    ]


@functools.cache
def syscall_table() -> dict[str, int]:
    """``{name: number}`` for every syscall that has tracepoints on this kernel."""
    events = ensure_tracefs() / "events" / "syscalls"
    traced = {p.name.removeprefix("sys_enter_") for p in events.glob("sys_enter_*")}
    for header in _headers():
        if header.is_file():
            numbers = {name: int(nr) for name, nr in _DEFINE.findall(header.read_text())}
            table = {name: nr for name, nr in numbers.items() if name in traced}
            # Some syscalls are traced under their kernel function's name: fstat as newfstat.
            for name, nr in numbers.items():
                if name not in traced and f"new{name}" in traced:
                    table[name] = table[f"new{name}"] = nr
            return table
    raise SetupError(
        "cannot find the syscall numbers of this architecture (asm/unistd_64.h); install "
        "linux-libc-dev or kernel headers (scripts/setup.sh does)"
    )


def syscall_number(name: str | int) -> int:
    """The number of syscall ``name`` (a number is returned as it is); raises
    :class:`aiobpf.UnknownSyscallError`."""
    if isinstance(name, int):
        return name
    table = syscall_table()
    try:
        return table[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, table, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownSyscallError(f"this kernel has no syscall named {name!r}{hint}") from None


@functools.cache
def _names() -> dict[int, str]:
    names: dict[int, str] = {}
    for name, nr in syscall_table().items():
        names.setdefault(nr, name)  # the ABI name before the tracefs alias (fstat, not newfstat)
    return names


def syscall_name(nr: int) -> str:
    """The name of syscall ``nr``, or ``"syscall_<nr>"`` for one this machine cannot name."""
    return _names().get(nr, f"syscall_{nr}")
