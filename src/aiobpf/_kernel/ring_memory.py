"""Memory-mapping a ring buffer map fd, laid out as ``kernel/bpf/ringbuf.c`` exposes it.

Two mappings: the consumer page (read-write, offset 0) and, from offset PAGE_SIZE, the producer
page followed by the data area mapped twice (read-only). The map's size and type come from
``/proc/self/fdinfo``, which needs no BPF syscall and works for any map fd.
"""

from __future__ import annotations

import contextlib
import mmap
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

from ..errors import MapTypeError

__all__ = ["RingMemory", "map_info"]

BPF_MAP_TYPE_RINGBUF = 27


def map_info(fd: int) -> dict[str, int]:
    """The integer fields of a BPF map fd's fdinfo (``map_type``, ``max_entries``, ...)."""
    info: dict[str, int] = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        try:
            info[key.strip()] = int(value.strip(), 0)
        except ValueError:
            continue
    return info


@attrs.define(eq=False)
class RingMemory:
    """The two mappings of one ring and numpy arrays over the words the consumer needs."""

    data_size: int
    consumer_pos: npt.NDArray[np.uint64]
    producer_pos: npt.NDArray[np.uint64]
    data: npt.NDArray[np.uint8]
    _consumer_map: mmap.mmap
    _producer_map: mmap.mmap

    @classmethod
    def open(cls, fd: int, name: str) -> RingMemory:
        """Maps ring ``name`` (its fd); raises :class:`MapTypeError` for any other map type."""
        info = map_info(fd)
        if info.get("map_type") != BPF_MAP_TYPE_RINGBUF:
            raise MapTypeError(
                f"map {name!r} has type {info.get('map_type')}, expected a ring buffer "
                f"(BPF_MAP_TYPE_RINGBUF = {BPF_MAP_TYPE_RINGBUF}); declare it with "
                f"BPF_RINGBUF_OUTPUT"
            )
        size = info["max_entries"]
        page = mmap.PAGESIZE
        consumer_map = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            producer_map = mmap.mmap(
                fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except BaseException:
            consumer_map.close()
            raise
        return cls(
            data_size=size,
            consumer_pos=np.frombuffer(consumer_map, dtype=np.uint64, count=1),
            producer_pos=np.frombuffer(producer_map, dtype=np.uint64, count=1),
            data=np.frombuffer(producer_map, dtype=np.uint8, offset=page),
            consumer_map=consumer_map,
            producer_map=producer_map,
        )

    def close(self) -> None:
        """Unmaps the ring, dropping the arrays over it first (mmap refuses to close under them)."""
        empty64 = np.zeros(1, dtype=np.uint64)
        self.consumer_pos = empty64
        self.producer_pos = empty64
        self.data = np.zeros(0, dtype=np.uint8)
        for mapping in (self._consumer_map, self._producer_map):
            # An array over the ring may outlive this close (the frame of an error raised while
            # the source was being built can hold one): the mapping then goes with it.
            with contextlib.suppress(BufferError):
                mapping.close()
