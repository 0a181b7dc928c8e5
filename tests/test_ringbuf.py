"""The ring consumer protocol on a ring laid out in ordinary memory (no root needed)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from aiobpf import RecordLayoutError

from .synthetic import SyntheticRing, record_bytes

RECORD = np.dtype([("value", "<u8"), ("extra", "<u8")])


@pytest.fixture
def ring() -> Iterator[SyntheticRing]:
    synthetic = SyntheticRing(256, RECORD)
    yield synthetic
    synthetic.close()


def test_reads_committed_records_in_order_and_publishes_position(ring: SyntheticRing) -> None:
    """Every committed record comes out once, in order, and the consumer position moves past it."""
    for value in range(5):
        ring.submit(record_bytes(value))
    batch = ring.reader().read()
    assert batch["value"].tolist() == [0, 1, 2, 3, 4]
    assert int(ring.consumer_pos[0]) == int(ring.producer_pos[0]) == 5 * 24
    assert len(ring.reader().read()) == 0


def test_busy_record_stops_the_batch(ring: SyntheticRing) -> None:
    """A reserved, uncommitted record ends the batch; records after it wait until it commits."""
    ring.submit(record_bytes(1))
    busy = ring.reserve(record_bytes(2))
    assert busy is not None
    ring.submit(record_bytes(3))
    reader = ring.reader()
    assert reader.read()["value"].tolist() == [1]
    assert int(ring.consumer_pos[0]) == busy
    assert len(reader.read()) == 0
    ring.commit(busy, 16)
    assert reader.read()["value"].tolist() == [2, 3]


def test_discarded_records_are_skipped(ring: SyntheticRing) -> None:
    """A discarded record is stepped over, whatever its size, and the walk goes on after it."""
    ring.submit(record_bytes(1))
    discarded = ring.reserve(bytes(40))  # another size: the reader must use its header length
    assert discarded is not None
    ring.commit(discarded, 40, discard=True)
    ring.submit(record_bytes(2))
    assert ring.reader().read()["value"].tolist() == [1, 2]
    assert int(ring.consumer_pos[0]) == int(ring.producer_pos[0])


def test_records_wrapping_past_the_end_are_read_whole() -> None:
    """A record that straddles the end of the data area is contiguous through the second map."""
    ring = SyntheticRing(256, RECORD, start=256 * 7 + 240)  # 16 bytes before the end
    try:
        for value in range(10):
            ring.submit(record_bytes(value + 100))
        batch = ring.reader().read()
        assert batch["value"].tolist() == list(range(100, 110))
        assert batch["extra"].tolist() == [0] * 10
    finally:
        ring.close()


def test_many_laps_keep_every_record(ring: SyntheticRing) -> None:
    """Over many laps of the ring, read in uneven batches, no record is lost or repeated."""
    reader = ring.reader()
    seen: list[int] = []
    produced = 0
    for lap in range(200):
        for _ in range(lap % 7 + 1):
            if ring.submit(record_bytes(produced)) is not None:
                produced += 1
        seen.extend(reader.read()["value"].tolist())
    seen.extend(reader.read()["value"].tolist())
    assert seen == list(range(produced))
    assert produced > 3 * 256 // 24


def test_batch_is_a_copy_that_outlives_the_ring_space(ring: SyntheticRing) -> None:
    """A returned batch keeps its values after the kernel reuses the space."""
    ring.submit(record_bytes(7))
    batch = ring.reader().read()
    for value in range(20):
        ring.submit(record_bytes(1000 + value))
        ring.reader().read()
    assert batch["value"].tolist() == [7]


def test_a_record_of_another_size_is_skipped_counted_and_told(ring: SyntheticRing) -> None:
    """A committed record whose size differs from the declared record is never read as garbage:
    it is skipped and counted, the records around it are delivered, and the reader says what
    was wrong, once."""
    ring.submit(record_bytes(1))
    ring.submit(bytes(24))
    ring.submit(record_bytes(2))
    reader = ring.reader()
    assert reader.read()["value"].tolist() == [1, 2]
    assert reader.malformed == 1
    error = reader.take_error()
    assert error is not None
    assert "24 bytes, but the declared record type is 16" in error
    assert reader.take_error() is None
    assert int(ring.consumer_pos[0]) == int(ring.producer_pos[0])  # nothing is stuck


def test_a_header_past_the_producer_is_refused_after_the_records_before_it(
    ring: SyntheticRing,
) -> None:
    """A length that would move the consumer past the producer is not the kernel's: the good
    records before it are delivered, then every read refuses, and the position stays there."""
    ring.submit(record_bytes(1))
    pos = ring.reserve(record_bytes(2))
    assert pos is not None
    ring.commit(pos, 4000)  # claims 4000 bytes; only one record's worth was produced
    reader = ring.reader()
    assert reader.read()["value"].tolist() == [1]
    for _ in range(2):
        with pytest.raises(RecordLayoutError, match="past the producer's position"):
            reader.read()
    assert int(ring.consumer_pos[0]) == pos


def test_data_size_must_be_a_power_of_two() -> None:
    """A ring whose size is not a power of two is refused with the value named."""
    with pytest.raises(ValueError, match="power of two, got 384"):
        SyntheticRing(384, RECORD).reader()


@pytest.mark.parametrize("length", [1, 13, 17, 23])
def test_a_skipped_record_of_an_odd_length_is_stepped_over_by_its_rounded_size(
    ring: SyntheticRing, length: int
) -> None:
    """A record's space is its length rounded up to 8 bytes: a record of another size whose
    length is not a multiple of 8 is skipped by that rounded size, and the next record is read
    whole from where it really starts."""
    ring.submit(record_bytes(1))
    ring.submit(bytes(range(length)))
    ring.submit(record_bytes(2))
    reader = ring.reader()
    assert reader.read()["value"].tolist() == [1, 2]
    assert reader.malformed == 1
    assert int(ring.consumer_pos[0]) == int(ring.producer_pos[0])


def test_a_discarded_record_of_the_declared_size_is_neither_read_nor_counted(
    ring: SyntheticRing,
) -> None:
    """A record the program discarded after reserving it, of exactly the declared size, is not
    an event: skipped, not delivered, not counted as malformed."""
    ring.submit(record_bytes(1))
    discarded = ring.reserve(record_bytes(99))
    assert discarded is not None
    ring.commit(discarded, RECORD.itemsize, discard=True)
    ring.submit(record_bytes(2))
    reader = ring.reader()
    assert reader.read()["value"].tolist() == [1, 2]
    assert reader.malformed == 0
    assert reader.take_error() is None
