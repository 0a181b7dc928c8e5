"""Perf buffers (``BPF_PERF_OUTPUT``) read in user space: one perf event per CPU, opened,
mapped and wired into the program's perf event array here, and their records walked here.

Each CPU's buffer is a ``perf_event_mmap_page`` (``include/uapi/linux/perf_event.h``) followed by
a data area of ``page_cnt`` pages that is *not* mapped twice, so a record may wrap around its
end. The kernel writes records at ``data_head`` and frees space up to ``data_tail``, which the
reader publishes. A ``bpf_perf_event_output`` of ``n`` bytes becomes a ``PERF_RECORD_SAMPLE``: an
8-byte header, a ``u32`` size, then the bytes, padded so the record ends on 8 bytes. A sample the
buffer had no room for is counted by the kernel and reported, before the next sample that fits,
as a ``PERF_RECORD_LOST`` with the count.

Ordering: as for the BPF ring (see :mod:`aiobpf._kernel.ring_protocol`), reading ``data_head``
before the records and writing ``data_tail`` after copying them relies on x86-64's total store
order; the caller uses this reader only there. Records of different CPUs are not ordered with
respect to each other.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import platform
import select
import struct
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

from ..errors import AttachError, MapTypeError, PrivilegeError, UnsupportedMachineError
from .libbpf import check, libbpf
from .libc import libc
from .ring_memory import map_info
from .ring_protocol import MalformedRecords

__all__ = ["PerfBuffers", "online_cpus", "open_perf_buffers"]

BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
_PERF_TYPE_SOFTWARE, _PERF_COUNT_SW_BPF_OUTPUT, _PERF_SAMPLE_RAW = 1, 10, 1 << 10
_PERF_FLAG_FD_CLOEXEC = 1 << 3
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_RECORD_LOST, _PERF_RECORD_SAMPLE = 2, 9
_ATTR = struct.Struct("<IIQQQQQII")  # type, size, config, sample_period, sample_type,
#                                      read_format, flags, wakeup_events, bp_type (VER0, padded)
_ATTR_SIZE = 64
_HEADER = struct.Struct("<IHH")
_DATA_HEAD, _DATA_TAIL, _DATA_OFFSET, _DATA_SIZE = 1024, 1032, 1040, 1048


def online_cpus() -> list[int]:
    """The online CPUs, from ``/sys/devices/system/cpu/online`` ("0-3,6")."""
    cpus: list[int] = []
    for part in Path("/sys/devices/system/cpu/online").read_text().strip().split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def sample_size(record_size: int) -> int:
    """The size of the PERF_RECORD_SAMPLE a record of ``record_size`` bytes becomes."""
    return 8 + (record_size + 4 + 7) // 8 * 8


def _perf_event_open(cpu: int) -> int:
    """A BPF output perf event on ``cpu`` that wakes its reader on every sample."""
    number = _PERF_EVENT_OPEN.get(platform.machine())
    if number is None:
        raise UnsupportedMachineError(f"perf buffers are not supported on {platform.machine()} yet")
    attr = bytearray(_ATTR_SIZE)
    _ATTR.pack_into(
        attr, 0, _PERF_TYPE_SOFTWARE, _ATTR_SIZE, _PERF_COUNT_SW_BPF_OUTPUT, 1, _PERF_SAMPLE_RAW,
        0, 0, 1, 0,
    )  # fmt: skip
    buffer = (ctypes.c_char * _ATTR_SIZE).from_buffer(attr)
    fd = int(libc().syscall(number, buffer, -1, cpu, -1, _PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        if err in (1, 13):  # EPERM, EACCES
            raise PrivilegeError(
                f"opening a perf event on CPU {cpu} was refused ({os.strerror(err)}): run as "
                "root or with CAP_PERFMON"
            )
        raise AttachError(err, f"perf_event_open on CPU {cpu}: {os.strerror(err)}")
    return fd


@attrs.define(eq=False)
class _CpuBuffer:
    """One CPU's perf event, its mapping, and numpy views of the words the reader uses."""

    cpu: int
    fd: int
    memory: mmap.mmap
    head: npt.NDArray[np.uint64]
    tail: npt.NDArray[np.uint64]
    data: npt.NDArray[np.uint8]

    @classmethod
    def open(cls, cpu: int, page_cnt: int) -> _CpuBuffer:
        fd = _perf_event_open(cpu)
        try:
            memory = mmap.mmap(
                fd,
                (1 + page_cnt) * mmap.PAGESIZE,
                flags=mmap.MAP_SHARED,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
            )
        except BaseException:
            os.close(fd)
            raise
        words = np.frombuffer(memory, dtype=np.uint64, count=_DATA_SIZE // 8 + 1)
        offset, size = int(words[_DATA_OFFSET // 8]), int(words[_DATA_SIZE // 8])
        if not size:  # a kernel before 4.1: the data area follows the first page
            offset, size = mmap.PAGESIZE, page_cnt * mmap.PAGESIZE
        data = np.frombuffer(memory, dtype=np.uint8, count=size, offset=offset)
        return cls(
            cpu,
            fd,
            memory,
            words[_DATA_HEAD // 8 : _DATA_HEAD // 8 + 1],
            words[_DATA_TAIL // 8 : _DATA_TAIL // 8 + 1],
            data,
        )

    def take(self) -> npt.NDArray[np.uint8]:
        """Copies out the bytes between tail and head (a record may wrap: two slices) and
        publishes the new tail."""
        head, tail = int(self.head[0]), int(self.tail[0])
        if head == tail:
            return _EMPTY
        size = len(self.data)
        start, end = tail % size, head % size
        if start < end or end == 0:
            taken = self.data[start : end or size].copy()
        else:
            taken = np.concatenate([self.data[start:], self.data[:end]])
        self.tail[0] = head  # the space goes back to the kernel: copied out already
        return taken

    def pending_bytes(self) -> int:
        return int(self.head[0]) - int(self.tail[0])

    def close(self) -> None:
        # the arrays over the mapping go first: a mapping with views over it cannot be closed
        self.head = self.tail = np.empty(0, dtype=np.uint64)
        self.data = _EMPTY
        with contextlib.suppress(BufferError):  # a view still held elsewhere: unmapped when freed
            self.memory.close()
        os.close(self.fd)


_EMPTY = np.empty(0, dtype=np.uint8)


class PerfBuffers(MalformedRecords):
    """The per-CPU buffers of one perf event array, read as one :class:`RecordReader`: every
    sample of every CPU, CPU by CPU (each CPU's in order), as one batch of ``record``."""

    def __init__(
        self, buffers: list[_CpuBuffer], record: np.dtype[np.void], order_by: str | None = None
    ) -> None:
        self._buffers = buffers
        self.record = record
        self._order_by = order_by
        self._sample = sample_size(record.itemsize)
        self._frame = np.dtype(
            {
                "names": ["type", "size", "payload"],
                "formats": ["<u4", "<u2", record],
                "offsets": [0, 6, 12],
                "itemsize": self._sample,
            }
        )
        self.lost = 0
        """Samples the kernel had no room for, as its PERF_RECORD_LOST records reported them."""

    @property
    def data_size(self) -> int:
        """One CPU's buffer size: what a budget is weighed against (each fills on its own)."""
        return len(self._buffers[0].data) if self._buffers else 0

    @property
    def stride(self) -> int:
        return self._sample

    def pending_bytes(self) -> int:
        return sum(buffer.pending_bytes() for buffer in self._buffers)

    def read(self) -> npt.NDArray[np.void]:
        """Every sample in every CPU's buffer, as a new array of ``record``."""
        parts = [self._records(buffer.take()) for buffer in self._buffers]
        parts = [part for part in parts if len(part)]
        if not parts:
            return np.empty(0, dtype=self.record)
        if len(parts) == 1:
            return parts[0]
        batch = np.concatenate(parts)
        if self._order_by is not None:  # CPUs interleave: sorted by the program's timestamp
            batch = batch[np.argsort(batch[self._order_by], kind="stable")]
        return batch

    def _records(self, taken: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
        """The samples in one CPU's bytes: one numpy copy when they are all samples of the
        record's size (the common case), else a walk record by record."""
        if not len(taken):
            return np.empty(0, dtype=self.record)
        if len(taken) % self._sample == 0:
            frames = taken.view(self._frame)
            if bool(
                np.all((frames["type"] == _PERF_RECORD_SAMPLE) & (frames["size"] == self._sample))
            ):
                return frames["payload"].copy()
        return self._walk(taken)

    def _walk(self, taken: npt.NDArray[np.uint8]) -> npt.NDArray[np.void]:
        payloads: list[bytes] = []
        raw = taken.tobytes()
        position = 0
        while position + _HEADER.size <= len(raw):
            kind, _, size = _HEADER.unpack_from(raw, position)
            if size < _HEADER.size:  # not a perf record: stop rather than loop
                break
            if kind == _PERF_RECORD_SAMPLE:
                if size == self._sample:
                    start = position + 12
                    payloads.append(raw[start : start + self.record.itemsize])
                else:
                    self._count_malformed(
                        f"perf sample of {size - 12} raw bytes where the declared record type "
                        f"({self.record.itemsize} bytes) makes {self._sample - 12}; declare the "
                        "record exactly as the BPF program submits it (sizeof of its struct)"
                    )
            elif kind == _PERF_RECORD_LOST:
                self.lost += struct.unpack_from("<Q", raw, position + 16)[0]
            position += size
        if not payloads:
            return np.empty(0, dtype=self.record)
        return np.frombuffer(bytearray(b"".join(payloads)), dtype=self.record)

    def close(self) -> None:
        buffers, self._buffers = self._buffers, []
        for buffer in buffers:
            buffer.close()


def open_perf_buffers(
    map_fd: int,
    name: str,
    record: np.dtype[np.void],
    page_cnt: int,
    *,
    order_by: str | None = None,
) -> tuple[PerfBuffers, select.epoll, Callable[[], None]]:
    """Opens a perf event per online CPU, maps its buffer, and puts it in the perf event array
    ``map_fd`` at that CPU's index; returns the reader, an epoll object readable when any
    buffer has a sample, and the release (which first empties the array's slots, so the
    program stops writing into buffers nobody reads).

    Raises :class:`MapTypeError` for another map type, :class:`ValueError` for a ``page_cnt``
    that is not a power of two, :class:`PrivilegeError` without CAP_PERFMON.
    """
    if not (isinstance(page_cnt, int) and page_cnt > 0 and page_cnt & (page_cnt - 1) == 0):
        raise ValueError(f"page_cnt must be a power of two number of pages, got {page_cnt!r}")
    info = map_info(map_fd)
    if info.get("map_type") != BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        raise MapTypeError(
            f"map {name!r} has type {info.get('map_type')}, expected a perf event array "
            f"(BPF_MAP_TYPE_PERF_EVENT_ARRAY = {BPF_MAP_TYPE_PERF_EVENT_ARRAY}); declare it "
            "with BPF_PERF_OUTPUT"
        )
    lib = libbpf()
    buffers: list[_CpuBuffer] = []
    slots: list[int] = []
    epoll = select.epoll()

    def release() -> None:
        for cpu in slots:
            key = ctypes.c_uint32(cpu)
            lib.bpf_map_delete_elem(map_fd, ctypes.byref(key))  # best effort: closing anyway
        epoll.close()
        reader.close()

    reader = PerfBuffers(buffers, record, order_by)
    try:
        for cpu in online_cpus():
            if cpu >= info.get("max_entries", 0):
                break
            buffer = _CpuBuffer.open(cpu, page_cnt)
            buffers.append(buffer)
            key, value = ctypes.c_uint32(cpu), ctypes.c_uint32(buffer.fd)
            check(
                lib.bpf_map_update_elem(map_fd, ctypes.byref(key), ctypes.byref(value), 0),
                f"putting CPU {cpu}'s perf event in map {name!r}",
            )
            slots.append(cpu)
            epoll.register(buffer.fd, select.EPOLLIN)
            check(
                libc().ioctl(buffer.fd, _PERF_EVENT_IOC_ENABLE, 0),
                f"enabling CPU {cpu}'s perf event",
            )
    except BaseException:
        release()
        raise
    return reader, epoll, release
