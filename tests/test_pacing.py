"""A ring source's reading rhythm (sources/_pacing.py): pure arithmetic on given times.

The adaptive default is checked against a model of the source's loop (wait on the fd, wait out
the budget, read what has arrived, pause for the rest of the budget), fed arrival times."""

from __future__ import annotations

import random

import attrs
import pytest

from aiobpf.sources import AUTO_MAX_LATENCY, AdaptiveLatency
from aiobpf.sources._pacing import Pacing

RECORD_BYTES = 40  # a 32-byte record and its 8-byte header
RING_BYTES = 256 * 1024


@attrs.frozen
class Reads:
    sizes: list[int]  # records per read
    delays: list[float]  # per record: from its arrival to the read that took it
    times: list[float]  # of each read


def simulate(pacing: Pacing, arrivals: list[float], ring_bytes: int = RING_BYTES) -> Reads:
    """What a source with ``pacing`` reads, as RingBuffer._next_batch goes about it, for records
    arriving at ``arrivals`` (sorted), when reading and handling records take no time."""
    sizes: list[int] = []
    delays: list[float] = []
    times: list[float] = []
    now, index, pause_due = arrivals[0] - 1, 0, False  # the reader waits before the first
    while index < len(arrivals):
        if pause_due:
            now += pacing.pause_before_reading(now)
        while True:
            arrived = index
            while arrived < len(arrivals) and arrivals[arrived] <= now:
                arrived += 1
            if arrived > index:
                break
            now = max(now, arrivals[index])  # the fd wakes the reader
            now += pacing.woken(now)
        taken = arrived - index
        delays += [now - arrival for arrival in arrivals[index:arrived]]
        sizes.append(taken)
        times.append(now)
        pacing.read(taken * RECORD_BYTES, ring_bytes, now, records=taken)
        index, pause_due = arrived, True
    return Reads(sizes, delays, times)


def even(rate: float, seconds: float, start: float = 100.0) -> list[float]:
    return [start + i / rate for i in range(int(rate * seconds))]


@pytest.mark.parametrize("rate", [200, 500])
def test_the_adaptive_default_reads_at_once_while_records_come_apart(rate: int) -> None:
    """At 200 or 500 records/s (5 or 2 ms apart) waiting out the bound would gather too few
    records to pay for its timer: every record is read alone, the moment it arrives."""
    reads = simulate(Pacing(), even(rate, 2))
    assert set(reads.sizes) == {1}
    assert max(reads.delays) == 0


@pytest.mark.parametrize("rate", [1_000, 10_000, 100_000])
def test_the_adaptive_default_gathers_records_within_its_bound(rate: int) -> None:
    """Records 1 ms apart or closer: once the rate is known (within a few tenths of a second),
    one read takes several records, and no record waits longer than the bound."""
    reads = simulate(Pacing(), even(rate, 1))
    settled = [size for size, time in zip(reads.sizes, reads.times, strict=True) if time > 100.3]
    assert min(settled[:-1]) >= int(rate * AUTO_MAX_LATENCY)  # the last takes what is left
    assert max(reads.delays) <= AUTO_MAX_LATENCY + 1e-9
    assert len(reads.sizes) < 0.3 * rate + 1 / AUTO_MAX_LATENCY


def test_the_adaptive_default_follows_random_arrivals() -> None:
    """Poisson arrivals at 5,000 records/s: reads are shared, and the bound holds."""
    generator = random.Random(7)
    arrivals, now = [], 100.0
    for _ in range(5_000):
        now += generator.expovariate(5_000)
        arrivals.append(now)
    reads = simulate(Pacing(), arrivals)
    assert max(reads.delays) <= AUTO_MAX_LATENCY + 1e-9
    assert len(reads.sizes) < 1_500


@pytest.mark.parametrize(("rate", "gathered"), [(40, False), (1_400, True)])
def test_an_adaptive_budget_of_ones_own_gathers_from_three_records_per_bound(
    rate: int, gathered: bool
) -> None:
    """AdaptiveLatency(0.05), the tools' budget: 1,400 records/s (a busy build machine's execs)
    are read about 70 at a time once the rate is known, none waiting longer than 50 ms; at 40
    records/s (two per bound) waiting would not pay, and each is read at once."""
    bound = 0.05
    reads = simulate(Pacing(max_latency=AdaptiveLatency(bound)), even(rate, 2))
    assert max(reads.delays) <= bound + 1e-9
    settled = [size for size, time in zip(reads.sizes, reads.times, strict=True) if time > 100.5]
    if gathered:
        assert min(settled[:-1]) >= int(rate * bound)
    else:
        assert set(reads.sizes) == {1}


@pytest.mark.parametrize("bound", [0, -0.01, float("inf"), float("nan"), True, "0.05"])
def test_a_bad_adaptive_bound_is_refused(bound: object) -> None:
    with pytest.raises(ValueError, match="adaptive bound is a finite number > 0"):
        AdaptiveLatency(bound)  # type: ignore[arg-type]


def test_a_quiet_stretch_ends_the_waiting() -> None:
    """After a busy half second and a second of quiet, the next record is read at once: the
    rate decays over the quiet time, without a read to show it."""
    pacing = Pacing()
    simulate(pacing, even(10_000, 0.5))
    assert pacing.budget(100.5) == AUTO_MAX_LATENCY
    assert pacing.budget(101.5) == 0
    assert pacing.woken(101.5) == 0
    reads = simulate(pacing, [101.5, 101.6])
    assert reads.delays == [0, 0]


def test_the_adaptive_default_reads_at_once_when_waiting_could_overflow_the_ring() -> None:
    """2 M records/s into a 64 KiB ring would fill it within the bound: read without waiting."""
    pacing = Pacing()
    reads = simulate(pacing, even(2_000_000, 0.2), ring_bytes=65536)
    assert pacing.behind
    assert max(reads.delays[len(reads.delays) // 2 :]) < 0.0005


def _most_in_the_ring(pacing: Pacing, arrivals: list[float]) -> int:
    """The most records the ring held at once while ``pacing`` read ``arrivals``: what came
    between two reads (a read empties it)."""
    return max(simulate(pacing, arrivals).sizes)


def test_a_burst_after_quiet_loses_no_more_than_reading_at_once() -> None:
    """10 k records/s (the budget in force), a quiet second, then 3 M records/s: the averaged
    rates lag the step, and a budget waited out at its onset held 12,000 records (twice the
    6,553 the 256 KiB ring takes). From the first records of the burst on, the rate the reads
    show caps the wait: the ring never holds more than a quarter of itself, as reading at once
    would not either."""
    arrivals = even(10_000, 0.5) + even(3_000_000, 0.05, start=101.5)
    capacity = RING_BYTES // RECORD_BYTES
    assert _most_in_the_ring(Pacing(max_latency=0), arrivals) == 1  # reading at once
    assert _most_in_the_ring(Pacing(), arrivals) * 4 <= capacity


def test_a_rate_from_one_read_is_no_evidence() -> None:
    """The rate the reads show needs two reads within RATE_WINDOW: a single read after a quiet
    stretch, however close to its wake-up, does not make the source read at once."""
    pacing = Pacing(max_latency=0.001)
    pacing.read(4096, RING_BYTES, 100.0)
    pacing.read(4096, RING_BYTES, 101.0)
    assert not pacing.behind


def test_busy_polling_turns_the_adaptive_default_off() -> None:
    pacing = Pacing(busy_poll=0.01)
    reads = simulate(pacing, even(10_000, 0.5))
    assert max(reads.delays) == 0


def test_a_fixed_budget_waits_whatever_the_rate() -> None:
    """A number is a budget in force at any rate: 1 ms after each wake-up, even for records 5 ms
    apart."""
    pacing = Pacing(max_latency=0.001)
    reads = simulate(pacing, even(200, 1))
    assert reads.delays == pytest.approx([0.001] * 200)


@pytest.mark.parametrize("bad", ["fast", -1, float("nan"), float("inf")])
def test_a_bad_budget_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"max_latency must be 'auto' or a finite number >= 0"):
        Pacing(max_latency=bad)  # type: ignore[arg-type]


def test_a_numeric_budget_and_busy_polling_are_refused_together() -> None:
    with pytest.raises(ValueError, match="pull opposite ways"):
        Pacing(max_latency=0.001, busy_poll=0.001)


def test_the_fill_rate_a_latency_budget_is_weighed_against_is_averaged() -> None:
    """A ring of 64 KiB fed 58 MB/s (600 24-byte records every 0.25 ms) cannot hold a 1 ms
    budget twice, so the source reads without waiting. One small read just after a wake-up
    does not make that producer look slow (waiting then would overflow the ring); a quiet
    second does."""
    pacing = Pacing(max_latency=0.001)
    start = 100.0
    behind = []
    for i in range(200):
        pacing.read(600 * 24, 65536, start + i * 0.00025)
        behind.append(pacing.behind)
    assert behind[-1]
    assert not behind[0]  # no rate is known at the first read
    assert pacing.pause_before_reading(start + 0.05) == 0  # behind: read at once
    pacing.read(24, 65536, start + 0.05 + 5e-6)
    assert pacing.behind
    pacing.read(24, 65536, start + 1.05)
    assert not pacing.behind
    assert pacing.pause_before_reading(start + 1.05) == pytest.approx(0.001)


def test_pacing_without_a_budget_never_waits() -> None:
    pacing = Pacing(max_latency=0)
    pacing.read(65536, 65536, 1.0)
    assert (pacing.behind, pacing.pause_before_reading(1.0), pacing.woken(1.0)) == (False, 0, 0)


def test_a_reader_that_cannot_see_the_ring_is_never_behind() -> None:
    pacing = Pacing(max_latency=0.01)
    pacing.read(1 << 30, None, 1.0)
    assert not pacing.behind
    assert pacing.woken(2.0) == 0.01
