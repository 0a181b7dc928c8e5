"""Helpers for tests that load real BPF programs: availability, leak counting, test processes."""

from __future__ import annotations

import collections
import ctypes
import functools
import os
import shutil
import subprocess
from pathlib import Path

from aiobpf._libbpf import libbpf


@functools.cache
def unavailable_reason() -> str | None:
    """Why BPF tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "kernel tests need root (BPF programs need CAP_BPF and CAP_PERFMON)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "the bcc module is not importable (run scripts/setup.sh)"
    if not (Path("/lib/modules") / os.uname().release / "build" / "include").is_dir():
        return "no kernel headers for BCC (run scripts/setup.sh)"
    return None


def bpf_objects() -> dict[str, int]:
    """Kernel objects this process holds open, by kind, from /proc/self/fd link targets."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("anon_inode:"):
            kinds[target.removeprefix("anon_inode:")] += 1
    return {kind: n for kind, n in kinds.items() if "bpf" in kind or "perf_event" in kind}


def loaded_program_ids() -> set[int]:
    """Ids of every BPF program loaded in the kernel (the kernel's own listing)."""
    lib = libbpf()
    ids: set[int] = set()
    current = ctypes.c_uint32(0)
    while lib.bpf_prog_get_next_id(current.value, ctypes.byref(current)) == 0:
        ids.add(current.value)
    return ids


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def uniquely_named_program(directory: Path, name: str) -> Path:
    """A copy of /bin/true called ``name``: its exec shows that comm and filename."""
    path = directory / name
    shutil.copy(shutil.which("true") or "/bin/true", path)
    path.chmod(0o755)
    return path


def setpriv_command(uid: int, program: str | Path) -> list[str]:
    """Runs ``program`` (an absolute path: one execve) as uid/gid ``uid``, setpriv exec'ing it."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(program)]


def spawn_as(uid: int, program: Path) -> subprocess.Popen[bytes]:
    """Starts ``program`` with real and effective uid/gid ``uid``."""
    return subprocess.Popen(setpriv_command(uid, program))


def comm_of(pid: int) -> str:
    """The comm of a process, as the kernel gives it to BPF programs."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def current_tid() -> int:
    """The calling thread's id (the event loop's thread, in these tests)."""
    import threading

    return threading.get_native_id()


def wait_until_unloaded(ids: set[int], timeout: float = 5.0) -> set[int]:
    """Waits until none of the program ``ids`` is loaded; returns those still loaded at timeout.

    Detaching a raw tracepoint is synchronous (the program stops running at once), but since
    Linux 6.9 the kernel frees its link, and so the program, only after an RCU tasks-trace grace
    period, a few hundred milliseconds later. There is no fd or event to wait on for that, so
    this looks at the kernel's program list until the ids are gone or the time is up.
    """
    import time

    deadline = time.monotonic() + timeout
    while (left := loaded_program_ids() & ids) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def tracefs() -> Path:
    """The mounted tracefs directory."""
    from aiobpf._tracefs import ensure_tracefs

    return ensure_tracefs()
