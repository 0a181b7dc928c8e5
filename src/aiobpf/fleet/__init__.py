"""Fleet scale: every node's events into a stream engine (NATS JetStream), and the fleet's
events back out as a source, for the same operators.

    async with JetStreamSink("nats://engine:4222", subject="aiobpf.web1.exec") as sink:
        await publish(aiobpf.execve_events(), sink)

    async with fleet_events("nats://engine:4222") as events:
        async for window in events | window_count(lambda e: (e.node, e.uid), every=2):
            ...

Built on nats-py (``pip install 'aiobpf[nats]'``), which runs on asyncio only.
"""

from ._consumer import FleetEvent, FleetEvents, FleetStats, fleet_events
from ._nats import Engine
from ._node import Node
from ._sink import JetStreamSink, SinkPolicy, SinkStats, publish

__all__ = [
    "Engine",
    "FleetEvent",
    "FleetEvents",
    "FleetStats",
    "JetStreamSink",
    "Node",
    "SinkPolicy",
    "SinkStats",
    "fleet_events",
    "publish",
]
