"""The service's events into a stream engine: one more subscriber of the hub, whose events a
:class:`aiobpf.fleet.JetStreamSink` publishes, counted on ``/metrics``: execs to the sink's
subject, and processes' ends to its subject for "exit" items, where it has one."""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..fleet import JetStreamSink, SinkStats, publish
from ._hub import EventHub, HubEvent, Subscriber, kind_of

__all__ = ["HubPublisher"]


class HubPublisher(Collector):
    """Publishes every event of a hub through ``sink`` (entered by the caller) while
    :meth:`run` runs: execs to ``sink.subject``, and exits to ``sink.subjects["exit"]`` (not
    published where the sink has no such subject); a Prometheus collector of what became of
    them."""

    def __init__(self, sink: JetStreamSink) -> None:
        if sink.policy == "block":
            raise ValueError(
                "a service's sink must drop what the engine cannot take (drop_oldest or "
                "drop_newest), not block: a stalled engine would hold the service's shutdown"
            )
        self.sink = sink
        self._subscriber: Subscriber | None = None
        self._finished = False

    async def run(self, hub: EventHub) -> None:
        """Publishes the hub's events until :meth:`finish` (then what was queued) or until the
        hub stops."""
        kinds = {"exec", "exit"} if "exit" in self.sink.subjects else {"exec"}
        with hub.subscribe(kinds=kinds) as subscriber:  # every event the service sees
            self._subscriber = subscriber
            if self._finished:
                subscriber.finish()
            await publish(subscriber.receive, self.sink, kind_of=_kind_of)

    def finish(self) -> None:
        """Takes no more events; :meth:`run` returns once the queued ones are handed over."""
        self._finished = True
        if self._subscriber is not None:
            self._subscriber.finish()

    @property
    def stats(self) -> SinkStats:
        """The sink's counts, with the events the hub's queue for it had no room for counted
        as received and dropped: ``received == published + dropped + pending``."""
        stats = self.sink.stats
        lost = self._subscriber.lost if self._subscriber is not None else 0
        return attrs.evolve(stats, received=stats.received + lost, dropped=stats.dropped + lost)

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        labels = {"subject": self.sink.subject}
        for name, value, documentation in (
            ("received", stats.received, "events handed to the stream engine's sink"),
            ("published", stats.published, "events the stream engine acknowledged"),
            ("dropped", stats.dropped, "events dropped before the engine took them"),
            ("retries", stats.retries, "publishes tried again (engine slow or away)"),
            ("disconnects", stats.disconnects, "connections to the stream engine lost"),
            ("too_large", stats.too_large, "events each larger than the engine's message"),
        ):
            counter = CounterMetricFamily(
                f"aiobpf_publish_{name}", documentation, labels=list(labels)
            )
            counter.add_metric(list(labels.values()), value)
            yield counter
        pending = GaugeMetricFamily(
            "aiobpf_publish_pending", "events waiting for the engine", labels=list(labels)
        )
        pending.add_metric(list(labels.values()), stats.pending)
        yield pending


def _kind_of(event: HubEvent) -> str | None:
    """The sink's kind of an event: execs go to its own subject."""
    kind = kind_of(event)
    return None if kind == "exec" else kind
