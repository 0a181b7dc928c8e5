"""A ring buffer laid out in ordinary memory, written the way the kernel writes one.

The kernel maps the data area twice so that wrapping records are contiguous; here every write
goes to both copies, which gives a reader the same view.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from aiobpf import RingBuffer
from aiobpf._kernel.ring_protocol import (
    BUSY_BIT,
    DISCARD_BIT,
    HEADER_SIZE,
    RingReader,
)
from aiobpf.lowlevel import record_type


class SyntheticRing:
    def __init__(self, data_size: int, record: np.dtype[np.void], start: int = 0) -> None:
        self.data_size = data_size
        self.record = record
        self.consumer_pos = np.array([start], dtype=np.uint64)
        self.producer_pos = np.array([start], dtype=np.uint64)
        self.data: npt.NDArray[np.uint8] = np.zeros(2 * data_size, dtype=np.uint8)
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)

    def reader(self) -> RingReader:
        return _WakingReader(
            ring=self,
            consumer_pos=self.consumer_pos,
            producer_pos=self.producer_pos,
            data=self.data,
            data_size=self.data_size,
            record=self.record,
        )

    def _write(self, pos: int, raw: bytes) -> None:
        for i, byte in enumerate(raw):
            offset = (pos + i) % self.data_size
            self.data[offset] = byte
            self.data[offset + self.data_size] = byte

    def _header(self, pos: int, length: int) -> None:
        self._write(pos, int(length).to_bytes(4, "little") + b"\0\0\0\0")

    def free_bytes(self) -> int:
        return self.data_size - (int(self.producer_pos[0]) - int(self.consumer_pos[0]))

    def reserve(self, payload: bytes) -> int | None:
        """Reserves a BUSY record as bpf_ringbuf_reserve does; None when the ring is full."""
        pos = int(self.producer_pos[0])
        # the kernel's own arithmetic (round_up(len + BPF_RINGBUF_HDR_SZ, 8)), not the reader's
        stride = -(-(len(payload) + 8) // 8) * 8
        if stride > self.free_bytes():
            return None
        self._header(pos, len(payload) | BUSY_BIT)
        self._write(pos + HEADER_SIZE, payload)
        self.producer_pos[0] = pos + stride
        return pos

    def commit(self, pos: int, length: int, *, discard: bool = False, wake: bool = True) -> None:
        """Commits a reserved record; ``wake=False`` leaves the fd alone (BPF_RB_NO_WAKEUP)."""
        self._header(pos, length | (DISCARD_BIT if discard else 0))
        if wake:
            os.write(self.write_fd, b"x")  # the kernel's wake-up: the fd becomes readable

    def submit(self, payload: bytes, *, wake: bool = True) -> int | None:
        pos = self.reserve(payload)
        if pos is not None:
            self.commit(pos, len(payload), wake=wake)
        return pos

    def drain_wakeups(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def source(self, **options: Any) -> RingBuffer[Any]:
        """An async source over this ring, woken through the pipe as the kernel wakes a reader."""
        return RingBuffer(
            name="synthetic",
            fd=self.read_fd,
            record=record_type(self.record),
            reader=self.reader(),
            **options,
        )

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


@attrs.define(eq=False)
class _WakingReader(RingReader):
    """Reads like the kernel ring: the fd stays readable only while data is pending.

    A pipe stays readable until drained, so reading drains it first; a record committed after
    the drain leaves a byte behind, which costs at most one extra wake-up, as in the kernel.
    """

    ring: SyntheticRing | None = attrs.field(default=None, kw_only=True)

    def read(self) -> npt.NDArray[np.void]:
        assert self.ring is not None
        self.ring.drain_wakeups()
        return super().read()


def record_bytes(value: int, size: int = 16) -> bytes:
    return value.to_bytes(8, "little") + bytes(size - 8)
