"""Reading whole BPF maps from user space, by fd, in as few syscalls as the kernel allows.

Keys and values come back as numpy arrays (decoded in one pass, not per element). Per-CPU maps
hold one value per possible CPU, each padded to 8 bytes; they are summed over CPUs here.

Reads use ``BPF_MAP_LOOKUP_BATCH`` (and ``..._AND_DELETE_BATCH`` to drain), falling back to
walking the keys with ``get_next_key`` where the kernel or map type has no batch operations.
Draining without batches uses ``BPF_MAP_LOOKUP_AND_DELETE_ELEM``, which takes each element
atomically, never a lookup followed by a separate delete.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from ..errors import MapError, MapTypeError
from .libbpf import check, libbpf
from .ring_memory import map_info

__all__ = ["MapReader", "percpu_sums"]

HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH = 1, 2, 5, 6, 9, 10
_READABLE = {HASH, ARRAY, PERCPU_HASH, PERCPU_ARRAY, LRU_HASH, LRU_PERCPU_HASH}
_PER_CPU = {PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH}
_DRAINABLE = {HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH}
_NO_BATCH = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def _sum_over_cpus(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Sums axis 1 (CPUs) of a numeric or structured array of shape (n, cpus)."""
    if values.dtype.names is None:
        return np.asarray(values.sum(axis=1, dtype=values.dtype))
    total = np.zeros(values.shape[0], dtype=values.dtype)
    for name in values.dtype.names:
        total[name] = values[name].sum(axis=1)
    return total


@attrs.define(eq=False)
class MapReader:
    """Reads one map (by fd) into numpy keys and values."""

    fd: int
    name: str
    key: np.dtype[Any]
    value: np.dtype[Any]
    map_type: int = attrs.field(init=False)
    max_entries: int = attrs.field(init=False)
    _cpus: int = attrs.field(init=False)
    _stride: int = attrs.field(init=False)
    batch: bool = True
    _buffers: tuple[Any, Any] | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        info = map_info(self.fd)
        self.map_type = info.get("map_type", -1)
        if self.map_type not in _READABLE:
            raise MapTypeError(
                f"map {self.name!r} has type {self.map_type}; polling reads hash, array, LRU "
                f"hash and their per-CPU variants"
            )
        self.max_entries = info["max_entries"]
        key_size, value_size = info["key_size"], info["value_size"]
        if self.key.itemsize != key_size or self.value.itemsize != value_size:
            raise MapTypeError(
                f"map {self.name!r} has {key_size}-byte keys and {value_size}-byte values, but "
                f"the declared key is {self.key.itemsize} and the value {self.value.itemsize} bytes"
            )
        per_cpu = self.map_type in _PER_CPU
        self._cpus = check(libbpf().libbpf_num_possible_cpus(), "possible CPUs") if per_cpu else 1
        self._stride = (value_size + 7) & ~7 if per_cpu else value_size

    @property
    def drainable(self) -> bool:
        return self.map_type in _DRAINABLE

    def _decode(
        self, keys: Any, values: Any, count: int
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Copies of the first ``count`` keys and values (summed over CPUs) of two buffers."""
        key_array = np.frombuffer(keys, dtype=self.key, count=count).copy()
        if self._cpus == 1:
            return key_array, np.frombuffer(values, dtype=self.value, count=count).copy()
        slot = np.dtype(
            {"names": ["v"], "formats": [self.value], "offsets": [0], "itemsize": self._stride}
        )
        raw = np.frombuffer(values, dtype=slot, count=count * self._cpus)["v"]
        return key_array, _sum_over_cpus(raw.reshape(count, self._cpus))

    def read(self, *, delete: bool = False) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Every key and value (summed over CPUs); ``delete`` takes them out atomically."""
        if delete and not self.drainable:
            raise MapTypeError(
                f"map {self.name!r} (type {self.map_type}) cannot be drained: array elements "
                f"cannot be deleted; poll it in 'delta' mode instead"
            )
        if self.batch:
            try:
                return self._read_batch(delete)
            except OSError as exc:
                if exc.errno not in _NO_BATCH:
                    raise
                self.batch = False  # this kernel or map type has no batch operations
        return self._read_walk(delete)

    def _read_batch(self, delete: bool) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        lib = libbpf()
        operation = lib.bpf_map_lookup_and_delete_batch if delete else lib.bpf_map_lookup_batch
        capacity = max(self.max_entries, 1)
        if self._buffers is None:  # room for the whole map, allocated once, not at every poll
            self._buffers = (
                ctypes.create_string_buffer(capacity * self.key.itemsize),
                ctypes.create_string_buffer(capacity * self._stride * self._cpus),
            )
        keys, values = self._buffers
        # The batch token is opaque and its size differs by map type; 8 bytes hold any of them.
        token_in, token_out = ctypes.c_uint64(0), ctypes.c_uint64(0)
        total = 0
        while total < capacity:
            count = ctypes.c_uint32(capacity - total)
            result = operation(
                self.fd,
                ctypes.byref(token_in) if total else None,
                ctypes.byref(token_out),
                ctypes.byref(keys, total * self.key.itemsize),
                ctypes.byref(values, total * self._stride * self._cpus),
                ctypes.byref(count),
                None,
            )
            total += count.value
            if result < 0:
                err = -result
                if err == errno.ENOENT:
                    break  # the whole map was read
                raise MapError(err, f"batch read of map {self.name!r}: {errno.errorcode.get(err)}")
            token_in.value = token_out.value
        return self._decode(memoryview(keys), memoryview(values), total)

    def _read_walk(self, delete: bool) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        lib = libbpf()
        key = ctypes.create_string_buffer(self.key.itemsize)
        following = ctypes.create_string_buffer(self.key.itemsize)
        value = ctypes.create_string_buffer(self._stride * self._cpus)
        keys: list[bytes] = []
        values: list[bytes] = []
        previous = None
        operation = lib.bpf_map_lookup_and_delete_elem if delete else lib.bpf_map_lookup_elem
        for _ in range(max(self.max_entries, 1) * 4):  # keys churning faster than the walk: stop
            if lib.bpf_map_get_next_key(self.fd, previous, following) != 0:
                break
            ctypes.memmove(key, following, self.key.itemsize)
            result = operation(self.fd, key, value)
            if result == 0:
                keys.append(key.raw)
                values.append(value.raw)
            elif delete:
                err = -result if result != -1 else ctypes.get_errno()
                if err != errno.ENOENT:  # gone meanwhile is fine; a refusal would repeat forever
                    what = f"taking a key out of map {self.name!r}"
                    raise MapError(err, f"{what}: {os.strerror(err)}")
            # After a delete the walk restarts from the first key: the deleted one is gone.
            previous = None if delete else key
        return self._decode(b"".join(keys), b"".join(values), len(keys))


def percpu_sums(fd: int, slots: int) -> Callable[[], list[int]]:
    """A reader of per-CPU array ``fd`` of ``slots`` u64 values: each slot summed over CPUs."""
    cpus = check(libbpf().libbpf_num_possible_cpus(), "counting the possible CPUs")
    values = np.zeros(cpus, dtype=np.uint64)
    key = ctypes.c_uint32()
    lookup = libbpf().bpf_map_lookup_elem

    def read() -> list[int]:
        sums = []
        for slot in range(slots):
            key.value = slot
            check(lookup(fd, ctypes.byref(key), values.ctypes.data), "reading counters")
            sums.append(int(values.sum()))
        return sums

    return read
