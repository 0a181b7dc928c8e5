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

from ..errors import CgroupError, SetupError
from .mounts import mount_points

__all__ = [
    "cgroup_directory",
    "cgroup_id",
    "cgroup_of",
    "cgroup_path",
    "cgroup_root",
    "find_below",
    "narrow_cgroups",
]


@functools.cache
def cgroup_root() -> Path:
    """Where the cgroup2 filesystem is mounted; SetupError where it is not."""
    for mounted in mount_points("cgroup2"):
        return mounted
    raise SetupError(
        "no cgroup2 filesystem is mounted (cgroup v2 ids need it): mount it, for example "
        "`mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )


def cgroup_id(path: str | os.PathLike[str]) -> int:
    """The id of cgroup ``path``: absolute under the cgroup2 mount, or relative to it
    (``"system.slice/ssh.service"``). FileNotFoundError when there is no such cgroup."""
    return cgroup_directory(path).stat().st_ino


def cgroup_directory(path: str | os.PathLike[str]) -> Path:
    """The directory of cgroup ``path`` (as for :func:`cgroup_id`). FileNotFoundError when
    there is no such cgroup."""
    full = Path(path)
    if not full.is_absolute() or not full.is_relative_to(cgroup_root()):
        full = cgroup_root() / str(path).lstrip("/")
    if not (full / "cgroup.procs").exists():
        raise FileNotFoundError(f"no cgroup {str(path)!r} under {cgroup_root()}")
    return full


def cgroup_path(cgroup: int) -> str | None:
    """The path of cgroup id ``cgroup`` relative to the cgroup2 mount ("/" for the root), or
    None when no cgroup has that id any more (it was removed)."""
    root = cgroup_root()
    found = find_below(root, cgroup)
    return None if found is None else "/" + os.path.relpath(found, root).removeprefix(".")


def find_below(top: str | os.PathLike[str], cgroup: int) -> str | None:
    """The directory of cgroup id ``cgroup`` if it is ``top`` or below it, else None.

    A cgroup v2 cgroup never moves to another parent and its id is never reused, so an answer
    stays true for as long as the cgroup exists."""
    if os.stat(top).st_ino == cgroup:
        return os.fspath(top)
    for directory, subdirectories, _ in os.walk(top):
        for name in subdirectories:
            child = os.path.join(directory, name)
            try:
                if os.stat(child).st_ino == cgroup:
                    return child
            except FileNotFoundError:  # removed while walking
                continue
    return None


def cgroup_of(pid: int) -> str:
    """The cgroup v2 path of process ``pid`` (from ``/proc/<pid>/cgroup``)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hierarchy, _, path = line.split(":", 2)
        if hierarchy == "0":
            return path
    raise CgroupError(f"process {pid} is in no cgroup v2 (no 0:: line in /proc/{pid}/cgroup)")


def narrow_cgroups(first: frozenset[int], second: frozenset[int]) -> frozenset[int]:
    """The cgroups whose trees make up what is in the tree of ``first`` and in that of
    ``second``: the members of each that are in or below a member of the other (two cgroup
    trees meet only where one holds the other)."""
    directories = {cgroup: find_below(cgroup_root(), cgroup) for cgroup in first | second}

    def below(cgroup: int, tops: frozenset[int]) -> bool:
        return any(
            (top := directories[other]) is not None and find_below(top, cgroup) is not None
            for other in tops
        )

    return frozenset(c for c in first if below(c, second)) | frozenset(
        c for c in second if below(c, first)
    )
