"""``filter_cgroup``: events of the processes in a container's or service's cgroup, or below it.

Processes are told apart by their cgroup v2 id (``bpf_get_current_cgroup_id()``, an event's
``cgroup_id``). A container runtime or systemd gives a container, a pod or a service its own
cgroup, often with cgroups of its own under it, so the filter keeps a cgroup and everything
below it. On an aiobpf kernel source the kernel applies it (it compares the task's ancestors
with the allowed ids); on any other stream of events or batches with a ``cgroup_id`` field it
runs here, with the same result for cgroups that still exist when their events arrive.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, cast

import numpy as np

from .._kernel.cgroups import cgroup_directory, cgroup_root, find_below
from ._core import Operator, Pipeline, _Filtered

__all__ = ["CgroupTree", "filter_cgroup"]

#: The verdicts a :class:`CgroupTree` keeps (cleared when full: each costs one walk to redo).
_REMEMBERED = 4096

Cgroup = str | os.PathLike[str] | int


class CgroupTree:
    """Which cgroup ids are in or below a set of cgroups, answered from the cgroup2 filesystem.

    An id not met before costs one walk of the cgroups' directories; the answer is kept, since
    a cgroup v2 cgroup never moves to another parent and its id is never reused. A cgroup
    removed before its id is asked about is counted as outside (nothing is left to place it).
    """

    def __init__(self, tops: dict[int, str]) -> None:
        self.ids = frozenset(tops)
        self._tops = tuple(tops.values())
        self._verdicts: dict[int, bool] = {}

    @classmethod
    def of(cls, cgroups: Cgroup | Iterable[Cgroup]) -> CgroupTree:
        """The tree of ``cgroups``: paths (absolute under the cgroup2 mount or relative to it)
        or ids. FileNotFoundError for a path or id with no cgroup."""
        if isinstance(cgroups, str | os.PathLike | int):
            cgroups = [cgroups]
        root = cgroup_root()
        tops: dict[int, str] = {}
        for cgroup in cgroups:
            if isinstance(cgroup, int) and not isinstance(cgroup, bool):
                found = find_below(root, cgroup)
                if found is None:
                    raise FileNotFoundError(f"no cgroup has id {cgroup} under {root}")
                tops[cgroup] = found
            elif isinstance(cgroup, str | os.PathLike):
                directory = cgroup_directory(cgroup)
                tops[directory.stat().st_ino] = os.fspath(directory)
            else:
                raise TypeError(f"a cgroup is a path or an id, got {cgroup!r}")
        return cls(tops)

    def __contains__(self, cgroup: object) -> bool:
        if cgroup in self.ids:
            return True
        if not isinstance(cgroup, int):
            return False
        verdict = self._verdicts.get(cgroup)
        if verdict is None:
            verdict = any(find_below(top, cgroup) is not None for top in self._tops)
            if len(self._verdicts) >= _REMEMBERED:
                self._verdicts.clear()
            self._verdicts[cgroup] = verdict
        return verdict

    def mask(self, cgroups: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Which of the ``cgroups`` ids are in the tree (one lookup per distinct id)."""
        distinct = np.unique(cgroups)
        inside = [number for number in distinct.tolist() if number in self]
        return np.isin(cgroups, np.array(inside, dtype=cgroups.dtype))


def filter_cgroup(cgroups: Cgroup | Iterable[Cgroup]) -> Operator[Any, Any]:
    """Events of processes in the given cgroup(s) or in cgroups below them.

    ``cgroups``: cgroup v2 paths, absolute under the cgroup2 mount (``/sys/fs/cgroup/...``) or
    relative to it (``"system.slice/docker-1f2e.scope"``, the path in ``/proc/<pid>/cgroup``),
    or cgroup ids. Resolved when called: raises FileNotFoundError for one that does not exist,
    and :class:`aiobpf.SetupError` when no cgroup2 filesystem is mounted. On an aiobpf kernel
    source (:func:`aiobpf.execve_events`), runs in the kernel; elsewhere, events (or batch
    rows) need a ``cgroup_id`` field.
    """
    tree = CgroupTree.of(cgroups)

    def apply(stream: AsyncIterable[Any]) -> Pipeline[Any]:
        push_down: Callable[[str, frozenset[Any]], bool] | None = getattr(stream, "push_down", None)
        if push_down is not None and push_down("cgroup", tree.ids):
            return cast(Pipeline[Any], stream)
        return _Filtered(
            stream,
            lambda event: event.cgroup_id in tree,
            lambda batch: tree.mask(batch["cgroup_id"]),
        )

    return Operator(apply, f"filter_cgroup({sorted(tree.ids)!r})")
