"""StreamMetrics on synthetic windows and readings: what a Prometheus scrape would read."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aiobpf import MapReading, WindowCount
from aiobpf.operators import Histogram
from aiobpf.service import StreamMetrics

pytestmark = pytest.mark.anyio


def _scrape(metrics: StreamMetrics) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return generate_latest(registry).decode()


async def _items(items: list[Any]) -> Any:
    for item in items:
        yield item


async def test_windows_add_up_and_the_last_one_is_a_gauge() -> None:
    metrics = StreamMetrics("exec_by_comm", "exec calls per command", label="comm")
    await metrics.consume(
        _items(
            [
                WindowCount(start=0, end=1, counts={"bash": 2, "ls": 1}),
                WindowCount(start=1, end=2, counts={"ls": 4}, late=3),
            ]
        )
    )
    text = _scrape(metrics)
    assert 'exec_by_comm_total{comm="bash"} 2.0' in text
    assert 'exec_by_comm_total{comm="ls"} 5.0' in text
    assert 'exec_by_comm_last{comm="ls"} 4.0' in text
    assert 'exec_by_comm_last{comm="bash"}' not in text
    assert "exec_by_comm_late_total 3.0" in text


@pytest.mark.parametrize(("mode", "total"), [("snapshot", 7), ("delta", 10), ("drain", 10)])
async def test_readings_are_totals_or_increments_by_their_mode(mode: Any, total: int) -> None:
    metrics = StreamMetrics("exec_by_uid", "exec calls per user", label="uid")
    metrics.observe(MapReading(time=1.0, values={1000: 3}, mode=mode, dropped=0))
    metrics.observe(MapReading(time=2.0, values={1000: 7}, mode=mode, dropped=2))
    text = _scrape(metrics)
    assert f'exec_by_uid_total{{uid="1000"}} {total}.0' in text
    assert 'exec_by_uid_last{uid="1000"} 7.0' in text
    assert "exec_by_uid_dropped 2.0" in text
    assert "late" not in text


def test_bad_names_and_mixed_streams_are_refused() -> None:
    with pytest.raises(ValueError, match="not a Prometheus"):
        StreamMetrics("exec-by-comm", "x")
    metrics = StreamMetrics("x", "x")
    metrics.observe(WindowCount(start=0, end=1, counts={}))
    with pytest.raises(TypeError, match="a stream of WindowCount, not MapReading"):
        metrics.observe(MapReading(time=1.0, values={}, mode="delta", dropped=None))
    with pytest.raises(TypeError, match="not int"):
        metrics.observe(3)  # type: ignore[arg-type]


async def test_interval_histograms_add_up_into_one_prometheus_histogram() -> None:
    """Two intervals' log2 histograms: cumulative buckets whose ``le`` is each slot's highest
    value, ``+Inf`` holding the count, no sum (nor, with it, a count series); a cumulative
    (snapshot) histogram replaces the totals."""
    metrics = StreamMetrics("read_latency_usecs", "read() latency")
    await metrics.consume(
        _items([Histogram.from_counts({1: 2, 3: 1}), Histogram.from_counts({3: 4, 4: 1})])
    )
    text = _scrape(metrics)
    for line in [
        'read_latency_usecs_bucket{le="0"} 0.0',
        'read_latency_usecs_bucket{le="1"} 2.0',
        'read_latency_usecs_bucket{le="3"} 2.0',
        'read_latency_usecs_bucket{le="7"} 7.0',
        'read_latency_usecs_bucket{le="15"} 8.0',
        'read_latency_usecs_bucket{le="+Inf"} 8.0',
    ]:
        assert line in text, text
    assert "_sum" not in text
    assert "_count" not in text
    metrics.observe(Histogram.from_counts({2: 5}, cumulative=True))
    assert 'read_latency_usecs_bucket{le="+Inf"} 5.0' in _scrape(metrics)


async def test_keyed_histograms_are_labelled_by_key() -> None:
    metrics = StreamMetrics("syscall_usecs", "syscall latency", label="syscall")
    metrics.observe(
        {"read": Histogram.from_counts({2: 1}), "openat": Histogram.from_counts({5: 3})}
    )
    text = _scrape(metrics)
    assert 'syscall_usecs_bucket{le="31",syscall="openat"} 3.0' in text
    assert 'syscall_usecs_bucket{le="+Inf",syscall="read"} 1.0' in text
    with pytest.raises(TypeError, match="a stream of Histogram, not WindowCount"):
        metrics.observe(WindowCount(start=0, end=1, counts={}))
