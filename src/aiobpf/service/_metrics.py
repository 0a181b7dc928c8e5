"""Any aiobpf pipeline as Prometheus metrics: window counts, map readings and histograms,
exported under a name of the user's, on the service's registry (``serve(collectors=...)``) or
any other."""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import AsyncIterable, Callable, Hashable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..errors import NotOpenError
from ..operators import Histogram, WindowCount
from ..sources import MapReading

__all__ = ["ProgramCostMetrics", "StreamMetrics"]

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class StreamMetrics(Collector):
    """Prometheus metrics of a stream of :class:`aiobpf.WindowCount` (``window_count``,
    ``top_n``, ``execve_window_counts``) or :class:`aiobpf.MapReading` (``MapPoller``,
    ``execve_counts``), by key:

    * ``<name>_total{<label>=key}``: a counter, everything counted since the start (windows and
      delta or drain readings are added up; snapshot readings are already totals);
    * ``<name>_last{<label>=key}``: a gauge, what the last window or reading held;
    * ``<name>_late_total`` (windows: events that came after their window closed) and
      ``<name>_dropped`` (readings: the program's count of updates its full map refused).

    A stream of :class:`aiobpf.operators.Histogram` (``histograms()``), or of dicts of them by
    key (``histograms(slot=...)``), is exported as one Prometheus histogram ``<name>``:
    ``_bucket{le=...}`` by key, each bucket's ``le`` its highest value and ``+Inf`` the count
    (bucket counts cannot give ``_sum``, and prometheus_client writes ``_count`` only with it).
    Interval histograms are added up; cumulative ones (snapshot readings) replace the totals.

    Feed it with :meth:`consume` (a task of your own) or :meth:`observe`; register it on a
    ``prometheus_client`` registry, or give it to :func:`aiobpf.service.serve`, whose
    ``/metrics`` then carries it behind the service's access control.
    """

    def __init__(self, name: str, documentation: str, *, label: str = "key") -> None:
        if not _NAME.match(name) or not _NAME.match(label):
            raise ValueError(f"not a Prometheus metric or label name: {name!r}, {label!r}")
        self.name = name
        self._documentation = documentation
        self._label = label
        self._totals: collections.Counter[Hashable] = collections.Counter()
        self._last: dict[Hashable, int] = {}
        self._late = 0
        self._dropped: int | None = None
        self._kind: type[Any] | None = None
        self._histograms: dict[Hashable, tuple[Histogram, list[int]]] = {}

    def observe(
        self, item: WindowCount | MapReading[Any, Any] | Histogram | dict[Any, Histogram]
    ) -> None:
        """Takes one window, reading or histogram into the metrics."""
        if isinstance(item, Histogram) or (
            isinstance(item, dict) and all(isinstance(h, Histogram) for h in item.values())
        ):
            self._check_kind(Histogram)
            by_key = {None: item} if isinstance(item, Histogram) else item
            for key, histogram in by_key.items():
                self._add_histogram(key, histogram)
        elif isinstance(item, WindowCount):
            self._check_kind(WindowCount)
            self._totals.update(item.counts)
            self._last = dict(item.counts)
            self._late += item.late
        elif isinstance(item, MapReading):
            self._check_kind(MapReading)
            values = {key: int(value) for key, value in item.values.items()}
            if item.mode == "snapshot":
                self._totals = collections.Counter(values)
            else:
                self._totals.update(values)
            self._last = values
            self._dropped = item.dropped
        else:
            raise TypeError(
                "StreamMetrics takes WindowCount, MapReading or Histogram items, not "
                f"{type(item).__name__}"
            )

    def _add_histogram(self, key: Hashable, histogram: Histogram) -> None:
        counts = list(histogram.counts)
        before = self._histograms.get(key)
        if before is not None and not histogram.cumulative:  # an interval's: added up
            counts = [a + b for a, b in itertools.zip_longest(before[1], counts, fillvalue=0)]
        self._histograms[key] = (histogram, counts)

    def _check_kind(self, kind: type[Any]) -> None:
        if self._kind is None:
            self._kind = kind
        elif self._kind is not kind:
            raise TypeError(f"{self.name}: a stream of {self._kind.__name__}, not {kind.__name__}")

    def _histogram_family(self) -> Metric:
        keyed = any(key is not None for key in self._histograms)
        family = HistogramMetricFamily(
            self.name, self._documentation, labels=[self._label] if keyed else None
        )
        for key, (histogram, counts) in sorted(self._histograms.items(), key=lambda i: str(i[0])):
            buckets: list[tuple[str, float]] = []
            running = 0
            for slot, count in enumerate(counts):
                running += count
                buckets.append((str(histogram.bounds(slot)[1]), running))
            buckets.append(("+Inf", running))
            family.add_metric([str(key)] if keyed else [], buckets, None)
        return family

    async def consume(self, stream: AsyncIterable[Any]) -> None:
        """Observes every item of ``stream`` until it ends."""
        async for item in stream:
            self.observe(item)

    def collect(self) -> Iterator[Metric]:
        if self._kind is Histogram:
            yield self._histogram_family()
            return
        labels = [self._label]
        total = CounterMetricFamily(self.name, self._documentation, labels=labels)
        last = GaugeMetricFamily(
            f"{self.name}_last", f"{self._documentation} (the last window)", labels=labels
        )
        for key, count in sorted(self._totals.items(), key=lambda item: str(item[0])):
            total.add_metric([str(key)], count)
        for key, count in sorted(self._last.items(), key=lambda item: str(item[0])):
            last.add_metric([str(key)], count)
        yield total
        yield last
        if self._kind is not MapReading:
            yield CounterMetricFamily(
                f"{self.name}_late",
                f"{self._documentation}: events that came after their window had closed",
                value=self._late,
            )
        if self._dropped is not None:
            yield GaugeMetricFamily(
                f"{self.name}_dropped",
                f"{self._documentation}: updates the program's full map had no room for",
                value=self._dropped,
            )


class _Costed(Protocol):
    @property
    def closed(self) -> bool: ...

    def program_costs(self) -> Mapping[str, Any]: ...


class ProgramCostMetrics(Collector):
    """What each source's BPF programs cost the kernel, as Prometheus counters by ``source``
    and ``program``: ``aiobpf_program_runs_total`` and ``aiobpf_program_run_seconds_total``,
    counted while :func:`aiobpf.enable_program_stats` is held (hold it as long as the
    metrics are served: the kernel counts only then). ``sources`` maps a name to a source
    (any with ``program_costs()``), or is a callable that returns the map when scraped;
    sources not open yet, or closed, are left out."""

    def __init__(
        self, sources: Mapping[str, _Costed] | Callable[[], Mapping[str, _Costed]]
    ) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "aiobpf_program_runs",
            "runs of each BPF program while run statistics were on",
            labels=["source", "program"],
        )
        seconds = CounterMetricFamily(
            "aiobpf_program_run_seconds",
            "time each BPF program ran in the kernel while run statistics were on",
            labels=["source", "program"],
        )
        sources = self._sources() if callable(self._sources) else self._sources
        for name, source in sorted(sources.items()):
            if source.closed:
                continue
            try:
                costs = source.program_costs()
            except NotOpenError:
                continue
            for program, cost in sorted(costs.items()):
                runs.add_metric([name, program], cost.runs)
                seconds.add_metric([name, program], cost.run_time_ns / 1e9)
        yield runs
        yield seconds
