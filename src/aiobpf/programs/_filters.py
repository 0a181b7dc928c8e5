"""Filter sets a kernel source applies in its BPF program, changeable while it runs.

A program declares ``filter_config`` (an array of one u32 flag word) and one hash per kind of
filter (``filter_uids``, ``filter_pids`` keyed by u32, ``filter_comms`` keyed by char[16]);
events whose value is not in an enabled set are dropped before they reach the ring.

Two kinds of request meet here. Filters pushed down by operators only ever narrow the stream
(each one intersects with the last), so that the filters a pipeline states keep holding. A
*selection* is replaced as a whole and can widen again: a source shared by several consumers
selects the union of what they want, and the consumers filter their own part in user space.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from .._kernel.bcc import Program, map_fd
from .._kernel.libbpf import check, libbpf
from ..sources._validate import check_id
from . import _constants as C
from ._constants import comm_key

__all__ = ["CAPACITY", "KernelFilters", "check_values"]

_KINDS = {
    "uid": (C.FILTER_UID, "filter_uids"),
    "pid": (C.FILTER_PID, "filter_pids"),
    "comm": (C.FILTER_COMM, "filter_comms"),
}
CAPACITY = C.FILTER_CAPACITY
"""Entries each filter hash holds (its ``max_entries`` in the program)."""


def _key(kind: str, value: Any) -> bytes:
    if kind == "comm":
        return comm_key(str(value))
    return check_id(kind, value).to_bytes(4, "little")


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

    def __init__(self, program: Program) -> None:
        names = ["filter_config", *(name for _, name in _KINDS.values())]
        self._fds = {name: map_fd(program.bpf, name) for name in names}
        self._pushed: dict[str, frozenset[bytes]] = {}
        self._selected: dict[str, frozenset[bytes]] = {}
        self._applied: dict[str, frozenset[bytes]] = {}

    def restrict(self, kind: str, values: frozenset[Any]) -> None:
        """Keeps only events whose ``kind`` is in ``values`` (and in any earlier set of it)."""
        keys = _keys(kind, values)
        self._pushed[kind] = self._pushed.get(kind, keys) & keys
        self._apply(kind)

    def select(self, kind: str, values: frozenset[Any] | None) -> None:
        """Replaces the selection of ``kind`` (None: no selection), within what was pushed."""
        if values is None:
            self._selected.pop(kind, None)
        else:
            self._selected[kind] = _keys(kind, values)
        self._apply(kind)

    def _apply(self, kind: str) -> None:
        wanted = [
            keys for keys in (self._pushed.get(kind), self._selected.get(kind)) if keys is not None
        ]
        applied = self._applied.get(kind, frozenset())
        name = _KINDS[kind][1]
        lib = libbpf()
        present = ctypes.c_uint8(1)
        keys = frozenset.intersection(*wanted) if wanted else frozenset()
        # Keys go in before the flag word turns a set on and out after it is turned off: while a
        # set changes, the kernel passes a superset for a moment, never less than is wanted.
        for key in keys - applied:
            buffer = ctypes.create_string_buffer(key, len(key))
            check(lib.bpf_map_update_elem(self._fds[name], buffer, ctypes.byref(present), 0), name)
        if wanted:
            self._applied[kind] = keys
        else:
            self._applied.pop(kind, None)
        self._write_flags()
        for key in applied - keys:
            lib.bpf_map_delete_elem(self._fds[name], ctypes.create_string_buffer(key, len(key)))

    def _write_flags(self) -> None:
        flags = sum(_KINDS[kind][0] for kind in self._applied)
        zero, word = ctypes.c_uint32(0), ctypes.c_uint32(flags)
        check(
            libbpf().bpf_map_update_elem(
                self._fds["filter_config"], ctypes.byref(zero), ctypes.byref(word), 0
            ),
            "filter_config",
        )

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
