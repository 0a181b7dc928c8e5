"""The HTTP application over an :class:`EventHub`: what each route serves, and to whom.

* ``GET /events?uid=&comm=&type=``: Server-Sent Events, one ``exec`` event (JSON) per exec
  and one ``exit`` event per process that ended (``type=exec`` or ``type=exit``: one kind);
* ``GET /top``: exec calls per uid since start, from the kernel map, with the users' names,
  and the processes that ended and failed per uid;
* ``GET /stats``: events received, kernel and slow-client drops, ring occupancy, clients;
* ``GET /metrics``: the same for Prometheus (``prometheus_client`` exposition);
* ``GET /``: a small live dashboard on the SSE stream, no build step.

Every route serves the request's :class:`~aiobpf.service.Viewer` only what it may see:
a user who may not see everything gets its own uid's events (the filter is forced, and so
reaches the kernel like any other) and counts, and neither the metrics nor other clients'
filters. A request that did not come through :class:`~aiobpf.service.AccessControl` is
refused.
"""

from __future__ import annotations

import collections
import functools
import json
import pwd
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from importlib import resources
from typing import Any, cast

import attrs
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..programs import ProcessExit
from ..redaction import Redaction
from ..schema import exec_record, process_record
from ._access import AccessPolicy, Viewer, viewer_of
from ._hub import KINDS, EventHub, HubEvent

__all__ = ["create_app"]


@functools.lru_cache(maxsize=4096)
def _user_name(uid: int) -> str | None:
    """The login name of ``uid`` (None for a uid with no account), looked up once."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _sse(event: HubEvent, redaction: Redaction) -> str:
    """One SSE event: ``exec`` or ``exit``, its :mod:`aiobpf.schema` record as data."""
    if isinstance(event, ProcessExit):
        return f"event: exit\ndata: {json.dumps(process_record(event))}\n\n"
    return f"event: exec\ndata: {json.dumps(exec_record(event, redaction=redaction))}\n\n"


class _HubCollector(Collector):
    def __init__(self, hub: EventHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        by_uid = CounterMetricFamily(
            "aiobpf_execve", "exec calls per uid since start (kernel map)", labels=["uid"]
        )
        for uid, count in sorted(self._hub.top().items()):
            by_uid.add_metric([str(uid)], count)
        yield by_uid
        exits = self._hub.exits()
        if "exit" in self._hub.kinds:
            for name, index, help_text in (
                ("aiobpf_process_exits", 0, "processes that ended per uid since start"),
                ("aiobpf_process_failures", 1, "processes that ended with a non-zero code "
                 "or a signal, per uid since start"),
            ):  # fmt: skip
                family = CounterMetricFamily(name, help_text, labels=["uid"])
                for uid, counts in sorted(exits.items()):
                    family.add_metric([str(uid)], counts[index])
                yield family
        stats = attrs.asdict(self._hub.stats)
        source = ["execve"]
        for name, key, exit_key, help_text in (
            ("aiobpf_events_received", "received", "exits_received",
             "events read from the kernel ring"),
            ("aiobpf_kernel_dropped", "kernel_dropped", "exits_dropped",
             "events the ring had no room for"),
            ("aiobpf_user_dropped", "user_dropped", None,
             "events lost by slow clients' queues"),
        ):  # fmt: skip
            family = CounterMetricFamily(name, help_text, labels=["source"])
            family.add_metric(source, stats[key])
            if exit_key is not None and stats[exit_key] is not None:
                family.add_metric(["exit"], stats[exit_key])
            yield family
        occupancy = GaugeMetricFamily(
            "aiobpf_ring_occupancy_ratio",
            "share of the ring holding unread records",
            labels=["source"],
        )
        occupancy.add_metric(source, stats["ring_occupancy"] or 0.0)
        yield occupancy
        yield GaugeMetricFamily(
            "aiobpf_clients", "connected event stream clients", value=stats["clients"]
        )


class _ClosingStream(StreamingResponse):
    """A streaming response that closes its generator, and releases what the stream held,
    however the response ends. Starlette leaves the generator of a response whose send failed
    (a client gone) to the garbage collector, and with it the subscription it holds."""

    def __init__(self, body: AsyncGenerator[str, None], release: Callable[[], None]) -> None:
        super().__init__(body, media_type="text/event-stream")
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            await cast(AsyncGenerator[str, None], self.body_iterator).aclose()


def _optional_uid(text: str | None) -> int | None:
    if not text:
        return None
    uid = int(text)
    if not 0 <= uid < 2**32:
        raise ValueError(uid)
    return uid


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


_NOT_BEHIND_ACCESS_CONTROL = _error(
    403, "no viewer: serve the application with aiobpf.service.serve (or behind AccessControl)"
)


def create_app(
    hub: EventHub, policy: AccessPolicy | None = None, *, collectors: Iterable[Collector] = ()
) -> Starlette:
    """The HTTP application over ``hub`` (which the caller enters and exits), to be served
    behind :class:`~aiobpf.service.AccessControl` (:func:`aiobpf.service.serve` puts it
    there). ``policy`` caps the open event streams (its defaults when None); ``/metrics`` also
    serves ``collectors``."""
    policy = policy or AccessPolicy()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HubCollector(hub))
    for collector in collectors:
        registry.register(collector)
    here = resources.files(__package__ or "aiobpf.service")
    dashboard = here.joinpath("dashboard.html").read_text()
    streams: collections.Counter[str] = collections.Counter()

    async def events(request: Request) -> Response:
        viewer = viewer_of(request)
        if viewer is None:
            return _NOT_BEHIND_ACCESS_CONTROL
        try:
            uid = _optional_uid(request.query_params.get("uid"))
        except ValueError:
            return _error(400, "uid must be an integer from 0 to 2**32-1")
        if not viewer.sees_all:
            if uid is not None and uid != viewer.uid:
                return _error(403, f"uid {viewer.uid} may see only its own execs")
            uid = viewer.uid
        comm = request.query_params.get("comm") or None
        kind = request.query_params.get("type") or None
        if kind is not None and kind not in hub.kinds:
            return _error(400, f"type must be one of {sorted(hub.kinds)}")
        kinds = KINDS if kind is None else frozenset({kind})
        # root and those who see everything over the socket are held to no quota: a local
        # user filling the caps must not lock the administrator out
        counted = not viewer.exempt
        if counted and streams.total() >= policy.max_clients:
            return _error(429, f"the service holds {policy.max_clients} event streams already")
        if counted and streams[viewer.name] >= policy.max_clients_per_user:
            return _error(
                429, f"{viewer.name} holds {policy.max_clients_per_user} event streams already"
            )
        if counted:
            streams[viewer.name] += 1

        def release() -> None:
            if counted:
                streams[viewer.name] -= 1

        async def stream() -> AsyncIterator[str]:
            with hub.subscribe(uid, comm, kinds) as subscriber:
                # Subscribed: from here on, every matching event reaches this client or is
                # counted.
                connected = {"uid": uid, "comm": comm, "types": sorted(kinds & hub.kinds)}
                yield f"event: connected\ndata: {json.dumps(connected)}\n\n"
                async for event in subscriber.receive:
                    if subscriber.unreported_lost:
                        lost, subscriber.unreported_lost = subscriber.unreported_lost, 0
                        yield f"event: lost\ndata: {json.dumps({'count': lost})}\n\n"
                    yield _sse(event, policy.redaction)

        return _ClosingStream(cast(AsyncGenerator[str, None], stream()), release)

    async def top(request: Request) -> Response:
        viewer = viewer_of(request)
        if viewer is None:
            return _NOT_BEHIND_ACCESS_CONTROL
        visible = {uid: n for uid, n in hub.top().items() if viewer.may_see(uid)}
        ended = {uid: n for uid, n in hub.exits().items() if viewer.may_see(uid)}
        named = visible.keys() | ended.keys()
        users = {str(uid): name for uid in named if (name := _user_name(uid)) is not None}
        counts = {str(uid): n for uid, n in visible.items()}
        answer: dict[str, Any] = {"time": time.time(), "counts": counts, "users": users}
        if "exit" in hub.kinds:
            answer["exits"] = {str(uid): n for uid, (n, _) in ended.items()}
            answer["failures"] = {str(uid): n for uid, (_, n) in ended.items()}
        return JSONResponse(answer)

    async def stats(request: Request) -> Response:
        viewer = viewer_of(request)
        if viewer is None:
            return _NOT_BEHIND_ACCESS_CONTROL
        everything = attrs.asdict(hub.stats)
        if viewer.sees_all:
            return JSONResponse(everything)
        return JSONResponse(_own_stats(everything, viewer))

    async def metrics(request: Request) -> Response:
        viewer = viewer_of(request)
        if viewer is None:
            return _NOT_BEHIND_ACCESS_CONTROL
        if not viewer.sees_all:
            return _error(403, f"the metrics cover every user; uid {viewer.uid} may not see them")
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
        if viewer_of(request) is None:
            return _NOT_BEHIND_ACCESS_CONTROL
        return HTMLResponse(dashboard)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/events", events),
            Route("/top", top),
            Route("/stats", stats),
            Route("/metrics", metrics),
        ]
    )


def _own_stats(stats: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """What a user who may see only its own execs learns of the service: the kernel's losses
    (which may have hidden its own execs), nothing of other clients or their filters."""
    return {
        "uid": viewer.uid,
        "kernel_dropped": stats["kernel_dropped"],
        "ring_occupancy": stats["ring_occupancy"],
        "exits_dropped": stats["exits_dropped"],
    }
