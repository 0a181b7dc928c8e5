"""Helpers for tests that load real BPF programs: availability, leak counting, test processes."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from aiobpf.lowlevel import cgroup_root
from aiobpf.testing import held_bpf_objects, loaded_bpf_ids


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
    return held_bpf_objects()


def loaded_program_ids() -> set[int]:
    """Ids of the BPF programs loaded in the kernel (its own listing) that no other process
    holds open: this process's, and any nobody holds any more. Programs other processes load
    meanwhile (a benchmark, another test run) do not count as this one's."""
    return loaded_bpf_ids("prog", held_elsewhere=False)


def held_program_ids() -> set[int]:
    """Ids of the BPF programs this process holds open (its own ``/proc/self/fdinfo``): what it
    loaded and has not released, whatever other processes do meanwhile."""
    ids: set[int] = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            with open(f"/proc/self/fdinfo/{fd}") as info:
                lines = info.read().splitlines()
        except OSError:
            continue  # the listing's own fd, closed by now
        ids.update(int(line.split()[1]) for line in lines if line.startswith("prog_id:"))
    return ids


def program_names(ids: set[int]) -> set[str]:
    """The names of the BPF programs ``ids``, from bpftool's listing (the kernel keeps the
    first 15 bytes of a name)."""
    listing = subprocess.run(
        ["bpftool", "--json", "prog", "show"], capture_output=True, text=True, check=True
    )
    return {entry.get("name", "") for entry in json.loads(listing.stdout) if entry["id"] in ids}


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def uniquely_named_program(directory: Path, name: str) -> Path:
    """A copy of /bin/true called ``name``: its exec shows that comm and filename."""
    path = directory / name
    shutil.copy(shutil.which("true") or "/bin/true", path)
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def shared_directory() -> Iterator[Path]:
    """A directory every user may enter and read (pytest's temporary directories are under
    one only root may enter), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="aiobpf-shared-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


def setpriv_command(uid: int, program: str | Path) -> list[str]:
    """Runs ``program`` (an absolute path: one execve) as uid/gid ``uid``, setpriv exec'ing it."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", str(program)]


@contextlib.contextmanager
def new_cgroup(parent: Path | None = None) -> Iterator[Path]:
    """A cgroup v2 of the test's own (under ``parent``, or the root), removed afterwards, once
    the processes started in it have exited."""
    path = (parent or cgroup_root()) / f"aiobpf-test-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        path.rmdir()


def in_cgroup_command(cgroup: Path, program: str | Path) -> list[str]:
    """Runs ``program`` (one execve) in ``cgroup``: a shell moves itself there, then exec's it.
    The shell's own exec happens in the caller's cgroup."""
    return ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec "$2"', "sh", str(cgroup), str(program)]


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


def wait_until_unloaded(ids: set[int], timeout: float = 30.0) -> set[int]:
    """Waits until none of the program ``ids`` is loaded; returns those still loaded at timeout.

    Detaching a raw tracepoint is synchronous (the program stops running at once), but since
    Linux 6.9 the kernel frees its link, and so the program, only after an RCU tasks-trace grace
    period, a few hundred milliseconds later (longer on a loaded machine). Programs another
    process released just before are in the same state, and in nobody's hands. There is no fd
    or event to wait on for that, so this looks at the kernel's program list until the ids are
    gone or the time is up: a program really left behind is still there at the end.
    """
    import time

    deadline = time.monotonic() + timeout
    while (left := loaded_program_ids() & ids) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


def tracefs() -> Path:
    """The mounted tracefs directory."""
    from aiobpf._kernel.tracefs import ensure_tracefs

    return ensure_tracefs()


def processes_named(comm: str) -> set[int]:
    """Pids of the processes whose name (``/proc/<pid>/comm``) is ``comm``."""
    pids = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as name:
                    if name.read().strip() == comm[:15]:
                        pids.add(int(pid))
            except OSError:
                continue
    return pids


def wait_for_new_processes(comm: str, known: set[int], timeout: float = 60.0) -> set[int]:
    """The processes named ``comm`` not in ``known``, once there is one (or at the timeout).
    Another program's start sends no event this process could wait on; this looks at /proc."""
    import time

    deadline = time.monotonic() + timeout
    while not (found := processes_named(comm) - known) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_until_busy(pids: set[int], timeout: float = 60.0) -> bool:
    """Whether one of ``pids`` has used CPU time (a generator that was told to go) in time."""
    import time

    deadline = time.monotonic() + timeout
    while not any(_cpu_ticks(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def wait_until_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Those of ``pids`` still running at the timeout (zombies count as gone)."""
    import time

    deadline = time.monotonic() + timeout

    def alive() -> set[int]:
        running = set()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                        running.add(pid)
            except OSError:
                continue
        return running

    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left
