"""A live execve event service: what aiobpf looks like embedded in an async web service.

One :class:`EventHub` attaches the kernel sources once (``execve_events`` and the per-uid
counting map) and fans events out to subscribers, each behind its own bounded queue: a slow
client loses events (counted, and told with an SSE ``lost`` event), never blocks the others or
the kernel reader. :func:`create_app` serves it over HTTP (Starlette):

* ``GET /events?uid=&comm=``: Server-Sent Events, one ``exec`` event (JSON) per execve;
* ``GET /top``: execve calls per uid since start, from the kernel map;
* ``GET /stats``: events received, kernel and user-side drops, ring occupancy, clients;
* ``GET /metrics``: the same for Prometheus (``prometheus_client`` exposition);
* ``GET /``: a small live dashboard on the SSE stream, no build step.

:func:`serve` runs it with hypercorn on asyncio or trio, bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from importlib import resources
from typing import Any, cast

import anyio
import anyio.abc
import attrs
import sniffio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .counts import execve_counts
from .events import ExecveEvent
from .execve import ExecveEvents, execve_events
from .maps import MapPoller

__all__ = ["EventHub", "Subscriber", "create_app", "serve"]


def _event_json(event: ExecveEvent) -> str:
    return json.dumps(attrs.asdict(event))


class Subscriber:
    """One client's bounded queue of events and what it lost."""

    def __init__(self, uid: int | None, comm: str | None, buffer: int) -> None:
        self.uid, self.comm = uid, comm
        self._send, self.receive = anyio.create_memory_object_stream[ExecveEvent](buffer)
        self.unreported_lost = 0
        self.lost = 0

    def offer(self, event: ExecveEvent) -> bool:
        """Queues ``event`` if it matches; False when the queue was full (the event is lost)."""
        if (self.uid is not None and event.uid != self.uid) or (
            self.comm is not None and event.comm != self.comm
        ):
            return True
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.lost += 1
            self.unreported_lost += 1
            return False
        return True

    def close(self) -> None:
        self._send.close()
        self.receive.close()


class EventHub:
    """The kernel sources of the service, attached once, and the subscribers they feed."""

    def __init__(self, *, uids: Iterable[int] | None = None, client_buffer: int = 1024) -> None:
        self._uids = None if uids is None else frozenset(uids)
        self._client_buffer = client_buffer
        self._subscribers: set[Subscriber] = set()
        self._events: ExecveEvents | None = None
        self._counts: MapPoller[int, int] | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self.user_dropped = 0
        self.started = time.time()

    async def __aenter__(self) -> EventHub:
        events = execve_events()
        if self._uids is not None:
            events.push_down("uid", self._uids)  # the whole service wants only these users
        async with contextlib.AsyncExitStack() as stack:
            self._events = await stack.enter_async_context(events)
            self._counts = await stack.enter_async_context(
                await execve_counts(interval=1.0, uids=self._uids)
            )
            self._tasks = await stack.enter_async_context(anyio.create_task_group())
            self._tasks.start_soon(self._fan_out)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        for subscriber in list(self._subscribers):
            subscriber.close()
        await self._stack.__aexit__(*exc_info)

    async def _fan_out(self) -> None:
        assert self._events is not None
        async for event in self._events:
            for subscriber in list(self._subscribers):
                if not subscriber.offer(event):
                    self.user_dropped += 1

    @contextlib.contextmanager
    def subscribe(self, uid: int | None = None, comm: str | None = None) -> Iterator[Subscriber]:
        """A subscriber for the duration of the ``with`` block."""
        subscriber = Subscriber(uid, comm, self._client_buffer)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            subscriber.close()

    def _running(self) -> tuple[ExecveEvents, MapPoller[int, int]]:
        if self._events is None or self._counts is None:
            raise RuntimeError("EventHub is not running yet: use it with 'async with'")
        return self._events, self._counts

    def top(self) -> dict[int, int]:
        """execve calls per uid since start, read from the kernel map now."""
        return dict(self._running()[1].read().values)

    def stats(self) -> dict[str, Any]:
        """Events received, kernel and slow-client drops, ring occupancy, clients."""
        events = self._running()[0]
        ring = events.stats
        return {
            "received": ring.received,
            "kernel_dropped": ring.dropped or 0,
            "user_dropped": self.user_dropped,
            "ring_occupancy": events.ring.occupancy,
            "clients": len(self._subscribers),
        }


class _HubCollector(Collector):
    def __init__(self, hub: EventHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        by_uid = CounterMetricFamily(
            "aiobpf_execve", "execve calls per uid since start (kernel map)", labels=["uid"]
        )
        for uid, count in sorted(self._hub.top().items()):
            by_uid.add_metric([str(uid)], count)
        yield by_uid
        stats = self._hub.stats()
        source = ["execve"]
        for name, key, help_text in (
            ("aiobpf_events_received", "received", "events read from the kernel ring"),
            ("aiobpf_kernel_dropped", "kernel_dropped", "events the ring had no room for"),
            ("aiobpf_user_dropped", "user_dropped", "events lost by slow clients' queues"),
        ):
            family = CounterMetricFamily(name, help_text, labels=["source"])
            family.add_metric(source, stats[key])
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


def _optional_int(text: str | None) -> int | None:
    return None if not text else int(text)


def create_app(hub: EventHub) -> Starlette:
    """The HTTP application over ``hub`` (which the caller enters and exits)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HubCollector(hub))
    dashboard = resources.files("aiobpf").joinpath("dashboard.html").read_text()

    async def events(request: Request) -> Response:
        try:
            uid = _optional_int(request.query_params.get("uid"))
        except ValueError:
            return JSONResponse({"error": "uid must be an integer"}, status_code=400)
        comm = request.query_params.get("comm") or None

        async def stream() -> AsyncIterator[str]:
            with hub.subscribe(uid, comm) as subscriber:
                yield ": connected\n\n"
                async for event in subscriber.receive:
                    if subscriber.unreported_lost:
                        lost, subscriber.unreported_lost = subscriber.unreported_lost, 0
                        yield f"event: lost\ndata: {json.dumps({'count': lost})}\n\n"
                    yield f"event: exec\ndata: {_event_json(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def top(request: Request) -> Response:
        counts = {str(uid): count for uid, count in hub.top().items()}
        return JSONResponse({"time": time.time(), "counts": counts})

    async def stats(request: Request) -> Response:
        return JSONResponse(hub.stats())

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def index(request: Request) -> Response:
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


async def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    uids: Iterable[int] | None = None,
    client_buffer: int = 1024,
    shutdown: anyio.Event | None = None,
    task_status: anyio.abc.TaskStatus[EventHub] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves the application until ``shutdown`` is set (or forever), then detaches everything.

    Started with ``task_group.start(serve, ...)``, it reports the running hub once the programs
    are attached and the socket is bound.
    """
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    stop = shutdown if shutdown is not None else anyio.Event()
    async with EventHub(uids=uids, client_buffer=client_buffer) as hub:
        app = create_app(hub)
        if sniffio.current_async_library() == "trio":
            from hypercorn.trio import serve as hypercorn_serve
        else:
            from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]
        async with anyio.create_task_group() as tasks:
            # Starlette is an ASGI app; hypercorn's annotation spells ASGI out more narrowly
            asgi_app = cast(Any, app)
            run = functools.partial(hypercorn_serve, asgi_app, config, shutdown_trigger=stop.wait)
            tasks.start_soon(run)
            await _wait_listening(host, port)
            task_status.started(hub)
            await stop.wait()


async def _wait_listening(host: str, port: int) -> None:
    """Waits until the server accepts connections (hypercorn gives no started signal)."""
    with anyio.fail_after(30):
        while True:
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                await anyio.sleep(0.02)
                continue
            await stream.aclose()
            return
