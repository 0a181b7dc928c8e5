"""StreamMetrics on synthetic windows and readings: what a Prometheus scrape would read."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from aiobpf import MapReading, WindowCount
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
