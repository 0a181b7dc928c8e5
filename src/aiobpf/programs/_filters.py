"""Filter sets a kernel source applies in its BPF program, changeable while it runs.

A program declares ``filter_config`` (an array of one u32 flag word) and one hash per kind of
filter (``filter_uids``, ``filter_pids`` keyed by u32, ``filter_comms`` keyed by char[16],
``filter_cgroups`` keyed by u64 cgroup ids); events whose value is not in an enabled set are
dropped before they reach the ring (a cgroup set also passes the cgroups below its members).

Two kinds of request meet here. Filters pushed down by operators only ever narrow the stream
(each one intersects with the last), so that the filters a pipeline states keep holding. A
*selection* is replaced as a whole and can widen again: a source shared by several consumers
selects the union of what they want, and the consumers filter their own part in user space.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from .._core.validate import check_id
from .._kernel.cgroups import narrow_cgroups
from .._kernel.libbpf import libbpf, write_element
from . import _constants as C
from ._constants import comm_key

__all__ = ["CAPACITY", "KernelFilters", "check_values", "id_params"]

_KINDS = {
    "uid": (C.FILTER_UID, "filter_uids"),
    "pid": (C.FILTER_PID, "filter_pids"),
    "comm": (C.FILTER_COMM, "filter_comms"),
    "cgroup": (C.FILTER_CGROUP, "filter_cgroups"),
}
CAPACITY = C.FILTER_CAPACITY
"""Entries each filter hash holds (its ``max_entries`` in the program)."""


#: What a tool object's ``target_uid``/``target_pid`` parameter holds for "no filter".
_NO_FILTER = (1 << 32) - 1


def id_params(**ids: int | None) -> dict[str, int]:
    """The ``target_<name>`` parameters of a tool object (opens, connects) for the uid and pid
    filters given (None: not given); ValueError for a value that is not an id, or that is the
    object's "no filter" (``(uid_t)-1`` is nobody's anyway)."""
    params: dict[str, int] = {}
    for name, value in ids.items():
        if value is not None:
            number = check_id(name, value)
            if number == _NO_FILTER:
                raise ValueError(f"a {name} filter of {number} would match nothing")
            params[f"target_{name}"] = number
    return params


def _key(kind: str, value: Any) -> bytes:
    if kind == "comm":
        return comm_key(str(value))
    if kind == "cgroup":
        return check_id("cgroup id", value, bits=64).to_bytes(8, "little")
    return check_id(kind, value).to_bytes(4, "little")


def _intersect(kind: str, first: frozenset[bytes], second: frozenset[bytes]) -> frozenset[bytes]:
    """The set of ``kind`` that passes what both ``first`` and ``second`` pass."""
    if kind != "cgroup":
        return first & second
    ids = [frozenset(int.from_bytes(key, "little") for key in keys) for keys in (first, second)]
    return frozenset(_key(kind, cgroup) for cgroup in narrow_cgroups(*ids))


def check_values(kind: str, values: frozenset[Any]) -> None:
    """Refuses, at the call, values the kernel filter of ``kind`` cannot hold."""
    _keys(kind, values)


def _keys(kind: str, values: frozenset[Any]) -> frozenset[bytes]:
    keys = frozenset(_key(kind, value) for value in values)
    if len(keys) > CAPACITY:
        raise ValueError(f"a kernel {kind} filter holds at most {CAPACITY} values, not {len(keys)}")
    return keys


class KernelFilters:
    """The filter maps of one program: what was pushed down, what is selected, and the
    intersection of the two that the kernel applies."""

    kinds = frozenset(_KINDS)

    def __init__(self, map_fd: Callable[[str], int]) -> None:
        """``map_fd(name)``: a duplicate of the fd of the program's map ``name``."""
        names = ["filter_config", *(name for _, name in _KINDS.values())]
        self._fds: dict[str, int] = {}
        try:
            for name in names:
                self._fds[name] = map_fd(name)
        except BaseException:
            self.close()
            raise
        self._pushed: dict[str, frozenset[bytes]] = {}
        self._selected: dict[str, frozenset[bytes]] = {}
        self._applied: dict[str, frozenset[bytes]] = {}
        self._descendants = False

    def restrict(self, kind: str, values: frozenset[Any]) -> None:
        """Keeps only events whose ``kind`` is in ``values`` (and in any earlier set of it)."""
        keys = _keys(kind, values)
        self._pushed[kind] = _intersect(kind, self._pushed.get(kind, keys), keys)
        self._apply(kind)

    def select(self, kind: str, values: frozenset[Any] | None) -> None:
        """Replaces the selection of ``kind`` (None: no selection), within what was pushed."""
        if values is None:
            self._selected.pop(kind, None)
        else:
            self._selected[kind] = _keys(kind, values)
        self._apply(kind)

    def _apply(self, kind: str) -> None:
        """Makes the kernel's set of ``kind`` what is wanted now.

        A set that stays in force changes by taking out the values no longer wanted first, then
        putting in the new ones: the map never holds more than the larger of the two sets, so a
        full set can be replaced by another full one, and values wanted before and after pass
        all along. A set turned on is filled before its flag; one turned off is emptied after.
        If the kernel refuses an update halfway, what is recorded here is what the map holds.
        """
        wanted = [
            keys for keys in (self._pushed.get(kind), self._selected.get(kind)) if keys is not None
        ]
        applied = self._applied.get(kind, frozenset())
        if not wanted:
            self._applied.pop(kind, None)
            self._write_flags()  # off first: the kernel then ignores the set
            self._remove(kind, applied)
            return
        keys = functools.reduce(lambda first, second: _intersect(kind, first, second), wanted)
        in_force = kind in self._applied
        self._applied[kind] = applied & keys
        self._remove(kind, applied - keys)
        try:
            self._add(kind, keys - applied)
        finally:
            if not in_force:
                self._write_flags()

    def _remove(self, kind: str, keys: frozenset[bytes]) -> None:
        name = _KINDS[kind][1]
        for key in keys:
            libbpf().bpf_map_delete_elem(self._fds[name], key)

    def _add(self, kind: str, keys: frozenset[bytes]) -> None:
        name = _KINDS[kind][1]
        for key in keys:
            write_element(self._fds[name], key, b"\1", name)
            self._applied[kind] = self._applied[kind] | {key}

    def follow_descendants(self) -> None:
        """Passes only execs of the processes in the program's tracked set (which another
        object fills: see aiobpf.programs._execve), from now on."""
        self._descendants = True
        self._write_flags()

    def _write_flags(self) -> None:
        flags = sum(_KINDS[kind][0] for kind in self._applied)
        flags |= C.FILTER_DESCENDANTS if self._descendants else 0
        write_element(
            self._fds["filter_config"], bytes(4), flags.to_bytes(4, "little"), "filter_config"
        )

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
