"""Filter sets a kernel source applies in its BPF program, changeable while it runs.

A program declares ``filter_config`` (an array of one u32 flag word) and one hash per kind of
filter (``filter_uids``, ``filter_pids`` keyed by u32, ``filter_comms`` keyed by char[16]);
events whose value is not in an enabled set are dropped before they reach the ring.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from ._bcc import Program, map_fd
from ._libbpf import check, libbpf

__all__ = ["KernelFilters"]

_KINDS = {"uid": (1, "filter_uids"), "pid": (2, "filter_pids"), "comm": (4, "filter_comms")}


def _key(kind: str, value: Any) -> bytes:
    if kind == "comm":
        return str(value).encode()[:15].ljust(16, b"\0")
    return int(value).to_bytes(4, "little")


class KernelFilters:
    """The filter maps of one program: sets to intersect with, flags to enable them."""

    kinds = frozenset(_KINDS)

    def __init__(self, program: Program) -> None:
        names = ["filter_config", *(name for _, name in _KINDS.values())]
        self._fds = {name: map_fd(program.bpf, name) for name in names}
        self._sets: dict[str, frozenset[bytes]] = {}

    def restrict(self, kind: str, values: frozenset[Any]) -> None:
        """Keeps only events whose ``kind`` is in ``values`` (and in any earlier set of it)."""
        name = _KINDS[kind][1]
        keys = frozenset(_key(kind, value) for value in values)
        if kind in self._sets:
            keys &= self._sets[kind]
        lib = libbpf()
        present = ctypes.c_uint8(1)
        for key in keys - self._sets.get(kind, frozenset()):
            buffer = ctypes.create_string_buffer(key, len(key))
            check(lib.bpf_map_update_elem(self._fds[name], buffer, ctypes.byref(present), 0), name)
        for key in self._sets.get(kind, frozenset()) - keys:
            lib.bpf_map_delete_elem(self._fds[name], ctypes.create_string_buffer(key, len(key)))
        self._sets[kind] = keys
        flags = sum(_KINDS[k][0] for k in self._sets)
        zero, word = ctypes.c_uint32(0), ctypes.c_uint32(flags)
        check(
            lib.bpf_map_update_elem(
                self._fds["filter_config"], ctypes.byref(zero), ctypes.byref(word), 0
            ),
            "filter_config",
        )

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
