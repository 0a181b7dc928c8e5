"""The BPF ring buffer consumer protocol, over memory that is already mapped.

This module owns the walk from the consumer position to the producer position and nothing else: it
does not open, map, wait or decode, so the tests drive it on a ring laid out in ordinary memory.

How the kernel lays the ring out (``kernel/bpf/ringbuf.c``, ``Documentation/bpf/ringbuf.rst``):

* a read-write *consumer page* holds ``consumer_pos`` (u64); a read-only *producer page* holds
  ``producer_pos`` (u64); both positions only grow, and ``pos & (size - 1)`` is the offset in the
  data area;
* the data area (a power of two, a multiple of the page size) is mapped twice back to back, so a
  record that wraps past the end is still contiguous: a slice ``data[off : off + n]`` with
  ``n <= size`` is always valid;
* each record is an 8-byte header (``u32 len``, ``u32 pg_off``) then the payload, the whole rounded
  up to 8 bytes. Bit 31 of ``len`` is BUSY (reserved, not committed yet), bit 30 is DISCARD (the
  producer gave the space back: skip it).

Why reading it from Python is correct on x86-64: the producer reserves space by advancing
``producer_pos`` with a release store *after* writing the BUSY header, and commits by clearing BUSY
with a release store *after* writing the payload. x86-64 is TSO: loads are not reordered with older
loads, and stores are not reordered with older loads or stores. So we (1) load ``producer_pos``,
(2) copy the headers out of the ring and test them, (3) only then copy the payloads of the records
that tested committed, and (4) store the new ``consumer_pos`` after those copies. Each step is a
separate numpy operation issued in program order, which TSO keeps in order. We never test a header
through a live view: the value tested and the value acted on must be the same copy. On weaker
CPUs (arm64) plain loads give no acquire ordering, so :mod:`aiobpf.sources` uses BCC's own
consumer there.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import numpy as np
import numpy.typing as npt

from ..errors import RecordLayoutError

__all__ = [
    "BUSY_BIT",
    "DISCARD_BIT",
    "HEADER_SIZE",
    "MalformedRecords",
    "RecordReader",
    "RingReader",
    "record_stride",
]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
_LENGTH_MASK = ~(BUSY_BIT | DISCARD_BIT) & 0xFFFFFFFF

#: Up to this many records, a read copies them one by one (see RingReader._read_few).
_FEW = 8


class RecordReader(Protocol):
    """What a ring source reads with: :class:`RingReader` over the mapped ring, or BCC's
    callback consumer where the mmap reader's ordering argument does not hold."""

    @property
    def data_size(self) -> int | None:
        """The ring's data size in bytes; None for a reader that cannot see the ring."""

    @property
    def stride(self) -> int:
        """Bytes a record takes in the ring, header and padding included."""

    def pending_bytes(self) -> int | None:
        """Bytes waiting that the reader knows of: between the consumer and producer positions
        for a reader that sees the ring; for one that does not (``data_size`` None), only what
        it took out already, so that 0 does not mean the ring is empty."""

    @property
    def malformed(self) -> int:
        """Records skipped because their size was not the declared record's."""

    def take_error(self) -> str | None:
        """What the reads since the last call found wrong (a record of another size), once."""

    def read(self) -> npt.NDArray[np.void]:
        """Takes every committed record now, without waiting, as a new array; raises
        :class:`aiobpf.RecordLayoutError` for a record of another size than declared."""


def record_stride(payload_size: int) -> int:
    """Bytes one record of ``payload_size`` takes in the ring: header plus payload, 8-aligned."""
    return (payload_size + HEADER_SIZE + 7) & ~7


class MalformedRecords:
    """What every reader shares about records of another size than declared: it skips and
    counts them (``_malformed``) and keeps the first message (``_error``) for the source to
    raise once, through :meth:`take_error`."""

    _malformed: int = 0
    _error: str | None = None

    @property
    def malformed(self) -> int:
        return self._malformed

    def take_error(self) -> str | None:
        error, self._error = self._error, None
        return error

    def _count_malformed(self, message: str) -> None:
        self._malformed += 1
        self._error = self._error or message


@attrs.define(eq=False)
class RingReader(MalformedRecords):
    """Reads fixed-size records between the consumer and producer positions, in batches.

    ``consumer_pos`` and ``producer_pos`` are one-element ``uint64`` arrays over the two position
    words; ``data`` is a ``uint8`` array over the double-mapped data area (``2 * data_size`` bytes).
    """

    consumer_pos: npt.NDArray[np.uint64]
    producer_pos: npt.NDArray[np.uint64]
    data: npt.NDArray[np.uint8]
    data_size: int
    record: np.dtype[np.void]
    _framed: np.dtype[np.void] = attrs.field(init=False)
    _stride: int = attrs.field(init=False)
    _view: memoryview = attrs.field(init=False)
    _consumer: memoryview = attrs.field(init=False)  # the position words, read as Python ints
    _producer: memoryview = attrs.field(init=False)
    _corrupt: str | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.data_size <= 0 or self.data_size & (self.data_size - 1):
            raise ValueError(f"ring data size must be a power of two, got {self.data_size}")
        if len(self.data) < 2 * self.data_size:
            raise ValueError(
                f"ring data must be mapped twice ({2 * self.data_size} bytes), got {len(self.data)}"
            )
        self._stride = record_stride(self.record.itemsize)
        self._view = self.data.data.cast("B")
        # numpy indexing makes a numpy scalar to convert; a memoryview gives the int at once
        self._consumer = self.consumer_pos.data
        self._producer = self.producer_pos.data
        self._framed = np.dtype(
            {
                "names": ["len", "payload"],
                "formats": ["<u4", f"V{self.record.itemsize}"],
                "offsets": [0, HEADER_SIZE],
                "itemsize": self._stride,
            }
        )

    @property
    def stride(self) -> int:
        return self._stride

    def pending_bytes(self) -> int:
        """Bytes between the consumer and producer positions (committed or not)."""
        return self._producer[0] - self._consumer[0]

    def read(self) -> npt.NDArray[np.void]:
        """Copies out every committed record up to the first busy one and publishes the position.

        Returns a new array of ``record`` (owned by the caller; the ring space is given back to
        the kernel before this returns). A committed record that is not ``record.itemsize`` bytes
        long is skipped and counted in :attr:`malformed`, and :meth:`take_error` says so; the
        records around it are returned. A header that would move the position past the
        producer's is not the kernel's: :class:`RecordLayoutError`, and the position stays before
        it (the ring cannot be read further).
        """
        if self._corrupt is not None:
            raise RecordLayoutError(self._corrupt)
        start = self._consumer[0]
        end = self._producer[0]
        few = end - start <= _FEW * self._stride
        records, pos = self._take_few(start, end) if few else self._take_many(start, end)
        if pos != start:
            self._consumer[0] = pos  # the space goes back to the kernel: copied out already
        if records is None:
            if self._corrupt is not None:
                raise RecordLayoutError(self._corrupt)
            return np.empty(0, dtype=self.record)
        return records

    def _take_many(self, start: int, end: int) -> tuple[npt.NDArray[np.void] | None, int]:
        """Copies of the records from ``start`` on (None if none), and where reading stopped:
        runs of committed records of the declared size as one numpy copy each."""
        mask = self.data_size - 1
        parts: list[npt.NDArray[np.void]] = []
        pos = start
        while pos < end:
            offset = pos & mask
            count = (end - pos) // self._stride
            if count:
                framed = self.data[offset : offset + count * self._stride].view(self._framed)
                lengths = framed["len"].copy()  # one copy: test what we act on
                committed = lengths == self.record.itemsize
                good = count if committed.all() else int(np.argmin(committed))
                if good:
                    parts.append(framed["payload"][:good].copy())  # a copy, even of one record
                    pos += good * self._stride
                if good == count:
                    continue
                header = int(lengths[good])
            else:
                header = int(self.data[offset : offset + 4].view("<u4")[0])
            after = self._skip(header, pos, end)
            if after is None:
                break
            pos = after
        if not parts:
            return None, pos
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return joined.view(self.record).reshape(-1), pos

    def _take_few(self, start: int, end: int) -> tuple[npt.NDArray[np.void] | None, int]:
        """:meth:`_take_many` for a few records (one per wake-up, when they come apart): plain
        integer reads of the headers and one copy, where numpy's set-up would cost more than
        the records. The same protocol, step by step."""
        view, mask, size = self._view, self.data_size - 1, self.record.itemsize
        chunks: list[bytes] = []
        pos = start
        while pos < end:
            offset = pos & mask
            header = int.from_bytes(view[offset : offset + 4], "little")
            if header == size:  # committed, of the declared size
                chunks.append(view[offset + HEADER_SIZE : offset + HEADER_SIZE + size].tobytes())
                pos += self._stride
                continue
            after = self._skip(header, pos, end)
            if after is None:
                break
            pos = after
        if not chunks:
            return None, pos
        return np.frombuffer(bytearray(b"".join(chunks)), dtype=self.record), pos

    def _skip(self, header: int, pos: int, end: int) -> int | None:
        """Where reading goes on after a record that is not a committed one of the declared
        size (its header at ``pos``), counting it; None to stop (busy, or not the kernel's)."""
        if header & BUSY_BIT:
            return None
        length = header & _LENGTH_MASK
        after = pos + record_stride(length)
        if after > end:
            self._corrupt = (
                f"ring header at position {pos} claims {length} bytes, past the "
                f"producer's position {end}: this is not a BPF ring buffer's memory"
            )
            return None
        if not header & DISCARD_BIT:
            self._count_malformed(
                f"ring record at position {pos} is {length} bytes, but the declared record "
                f"type is {self.record.itemsize} bytes; declare the record exactly as the BPF "
                f"program submits it (sizeof of its struct). Records of another size are "
                f"skipped and counted."
            )
        return after
