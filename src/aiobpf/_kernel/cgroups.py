"""Cgroup v2 ids and paths: what ``bpf_get_current_cgroup_id()`` returns in a program, and the
directory it names, so that events can be told apart by container or service.

A cgroup v2 id is the inode number of the cgroup's directory in the cgroup2 filesystem (the
kernfs node id the helper returns). The cgroup2 mount is ``/sys/fs/cgroup`` on most systems and
``/sys/fs/cgroup/unified`` on hybrid ones; it is found in ``/proc/self/mountinfo``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import SetupError

__all__ = ["cgroup_id", "cgroup_of", "cgroup_path", "cgroup_root"]


@functools.cache
def cgroup_root() -> Path:
    """Where the cgroup2 filesystem is mounted; SetupError where it is not."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] == "cgroup2":
            return Path(before.split(" ")[4])
    raise SetupError(
        "no cgroup2 filesystem is mounted (cgroup v2 ids need it): mount it, for example "
        "`mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )


def cgroup_id(path: str | os.PathLike[str]) -> int:
    """The id of cgroup ``path``: absolute under the cgroup2 mount, or relative to it
    (``"system.slice/ssh.service"``). FileNotFoundError when there is no such cgroup."""
    full = Path(path)
    if not full.is_absolute() or not full.is_relative_to(cgroup_root()):
        full = cgroup_root() / str(path).lstrip("/")
    if not (full / "cgroup.procs").exists():
        raise FileNotFoundError(f"no cgroup {str(path)!r} under {cgroup_root()}")
    return full.stat().st_ino


def cgroup_path(cgroup: int) -> str | None:
    """The path of cgroup id ``cgroup`` relative to the cgroup2 mount ("/" for the root), or
    None when no cgroup has that id any more (it was removed)."""
    root = cgroup_root()
    if root.stat().st_ino == cgroup:
        return "/"
    for directory, subdirectories, _ in os.walk(root):
        for name in subdirectories:
            child = os.path.join(directory, name)
            try:
                if os.stat(child).st_ino == cgroup:
                    return "/" + os.path.relpath(child, root)
            except FileNotFoundError:  # removed while walking
                continue
    return None


def cgroup_of(pid: int) -> str:
    """The cgroup v2 path of process ``pid`` (from ``/proc/<pid>/cgroup``)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, _, path = line.split(":", 2)
        if hierarchy == "0":
            return path
    raise LookupError(f"process {pid} is in no cgroup v2 (no 0:: line in /proc/{pid}/cgroup)")
