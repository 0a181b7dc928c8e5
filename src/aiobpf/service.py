"""A live execve event service: what aiobpf looks like embedded in an async web service.

One :class:`EventHub` attaches the kernel sources once (``execve_events`` and the per-uid
counting map) and fans events out to subscribers, each behind its own bounded queue: a slow
client loses events (counted, and told with an SSE ``lost`` event), never blocks the others or
the kernel reader. The clients' filters reach the kernel as far as one shared program can take
them: when every client filters by uid (or comm), the kernel passes only the union of their
values, and with no client at all it passes nothing. :func:`create_app` serves it over HTTP
(Starlette):

* ``GET /events?uid=&comm=``: Server-Sent Events, one ``exec`` event (JSON) per execve;
* ``GET /top``: execve calls per uid since start, from the kernel map;
* ``GET /stats``: events received, kernel and user-side drops, ring occupancy, clients;
* ``GET /metrics``: the same for Prometheus (``prometheus_client`` exposition);
* ``GET /``: a small live dashboard on the SSE stream, no build step.

:func:`serve` runs it with hypercorn on asyncio or trio, bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
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

from ._filters import CAPACITY
from .counts import execve_counts
from .events import ExecveEvent
from .execve import ExecveEvents, execve_events
from .maps import MapPoller

__all__ = ["EventHub", "Subscriber", "create_app", "serve"]

_log = logging.getLogger(__name__)


def _event_json(event: ExecveEvent) -> str:
    return json.dumps(attrs.asdict(event))


class Subscriber:
    """One client's bounded queue of events and what it lost."""

    def __init__(self, uid: int | None, comm: str | None, buffer: int) -> None:
        self.uid = uid
        # the kernel keeps 15 bytes of a task's name: compare what it can report
        self.comm = None if comm is None else comm.encode()[:15].decode(errors="ignore")
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

    @property
    def behind(self) -> bool:
        """At least half of the queue is waiting: time to let the client's task run."""
        statistics = self._send.statistics()
        return statistics.current_buffer_used * 2 >= statistics.max_buffer_size

    def close(self) -> None:
        self._send.close()
        self.receive.close()


class EventHub:
    """The kernel sources of the service, attached once, and the subscribers they feed."""

    def __init__(
        self,
        *,
        uids: Iterable[int] | None = None,
        client_buffer: int = 1024,
        max_latency: float = 0.0,
    ) -> None:
        self._uids = None if uids is None else frozenset(uids)
        self._client_buffer = client_buffer
        self._max_latency = max_latency
        self._subscribers: set[Subscriber] = set()
        self._events: ExecveEvents | None = None
        self._counts: MapPoller[int, int] | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self.user_dropped = 0
        self.kernel_selection: dict[str, list[Any] | None] = {}
        """Per kind, the values the kernel lets through for the subscribers (None: all)."""
        self.started = time.time()

    async def __aenter__(self) -> EventHub:
        events = execve_events(max_latency=self._max_latency)
        if self._uids is not None:
            events.push_down("uid", self._uids)  # the whole service wants only these users
        self._select(events)
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
        """Offers each event to every subscriber. The source hands out a burst of events between
        two checkpoints, so when a queue is half full this yields before the next event: a
        client that keeps up never loses a burst, and a stalled one never blocks the others."""
        assert self._events is not None
        async for event in self._events:
            behind = False
            for subscriber in list(self._subscribers):
                if not subscriber.offer(event):
                    self.user_dropped += 1
                behind = behind or subscriber.behind
            if behind:
                await anyio.lowlevel.checkpoint()

    @contextlib.contextmanager
    def subscribe(self, uid: int | None = None, comm: str | None = None) -> Iterator[Subscriber]:
        """A subscriber for the duration of the ``with`` block."""
        subscriber = Subscriber(uid, comm, self._client_buffer)
        self._subscribers.add(subscriber)
        try:
            if self._events is not None:
                self._select(self._events)
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            subscriber.close()
            if self._events is not None:
                self._select(self._events)

    def _select(self, events: ExecveEvents) -> None:
        """Lets the kernel pass only what some subscriber wants: per kind, the union of the
        subscribers' values when every one of them filters by it (nothing with no subscribers)."""
        for kind, wanted in (
            ("uid", {subscriber.uid for subscriber in self._subscribers}),
            ("comm", {subscriber.comm for subscriber in self._subscribers}),
        ):
            selection = None if None in wanted or len(wanted) > CAPACITY else frozenset(wanted)
            events.select(kind, selection)
            self.kernel_selection[kind] = None if selection is None else sorted(selection)

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
            "kernel_selection": self.kernel_selection,
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


class _ClosingStream(StreamingResponse):
    """A streaming response that closes its generator however the response ends. Starlette
    leaves the generator of a response whose send failed (a client gone) to the garbage
    collector, and with it the subscription the generator holds."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await cast(AsyncGenerator[str, None], self.body_iterator).aclose()


def _optional_uid(text: str | None) -> int | None:
    if not text:
        return None
    uid = int(text)
    if not 0 <= uid < 2**32:
        raise ValueError(uid)
    return uid


def create_app(hub: EventHub) -> Starlette:
    """The HTTP application over ``hub`` (which the caller enters and exits)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HubCollector(hub))
    dashboard = resources.files("aiobpf").joinpath("dashboard.html").read_text()

    async def events(request: Request) -> Response:
        try:
            uid = _optional_uid(request.query_params.get("uid"))
        except ValueError:
            return JSONResponse(
                {"error": "uid must be an integer from 0 to 2**32-1"}, status_code=400
            )
        comm = request.query_params.get("comm") or None

        async def stream() -> AsyncIterator[str]:
            with hub.subscribe(uid, comm) as subscriber:
                # Subscribed: from here on, every matching exec reaches this client or is counted.
                yield f"event: connected\ndata: {json.dumps({'uid': uid, 'comm': comm})}\n\n"
                async for event in subscriber.receive:
                    if subscriber.unreported_lost:
                        lost, subscriber.unreported_lost = subscriber.unreported_lost, 0
                        yield f"event: lost\ndata: {json.dumps({'count': lost})}\n\n"
                    yield f"event: exec\ndata: {_event_json(event)}\n\n"

        return _ClosingStream(stream(), media_type="text/event-stream")

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
    max_latency: float = 0.0,
    send_buffer: int | None = None,
    stalled_client_timeout: float = 60.0,
    app: Callable[[EventHub], Any] = create_app,
    shutdown: anyio.Event | None = None,
    task_status: anyio.abc.TaskStatus[EventHub] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves ``app(hub)`` (aiobpf's own application by default) until ``shutdown`` is set, or
    forever, then detaches everything.

    Started with ``task_group.start(serve, ...)``, it reports the running hub once the programs
    are attached and the socket listens (connections made from then on wait in its backlog).

    ``max_latency`` is the kernel source's latency budget (see :meth:`aiobpf.RingBuffer.from_bcc`):
    a service on every node can trade a few milliseconds of latency for far less CPU under exec
    storms.

    What a slow client may hold: ``client_buffer`` events in its queue, then what the kernel
    keeps for its connection: ``send_buffer`` bytes (``SO_SNDBUF``; None lets the kernel grow it,
    up to ``net.ipv4.tcp_wmem``'s maximum), after which its events are dropped and counted. A
    client that takes nothing at all for ``stalled_client_timeout`` seconds is disconnected
    (``TCP_USER_TIMEOUT``), which also bounds how long a shutdown waits for it: hypercorn's trio
    server cannot interrupt a send to a client that does not read.
    """
    from hypercorn.config import Config

    config = Config()
    config.accesslog = None
    stop = shutdown if shutdown is not None else anyio.Event()
    async with EventHub(uids=uids, client_buffer=client_buffer, max_latency=max_latency) as hub:
        application = app(hub)
        if sniffio.current_async_library() == "trio":
            from hypercorn.trio import serve as hypercorn_serve

            timed_out_clients: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        else:
            from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]

            timed_out_clients = _timed_out_clients_are_not_loop_errors()
        listener = _listening_socket(
            host, port, config.backlog, send_buffer, max(1, round(stalled_client_timeout * 1000))
        )
        with listener, timed_out_clients:
            # hypercorn takes ownership of the descriptor it is given: a duplicate of ours
            config.bind = [f"fd://{os.dup(listener.fileno())}"]
            async with anyio.create_task_group() as tasks:
                # Starlette is an ASGI app; hypercorn's annotation spells ASGI out more narrowly
                run = functools.partial(
                    hypercorn_serve, cast(Any, application), config, shutdown_trigger=stop.wait
                )
                tasks.start_soon(run)
                task_status.started(hub)
                await stop.wait()


@contextlib.contextmanager
def _timed_out_clients_are_not_loop_errors() -> Iterator[None]:
    """While serving on asyncio, a client connection that ends in an OSError is logged at debug
    level instead of reaching the loop's exception handler; everything else still does.

    hypercorn 0.18's asyncio server lets such an error out of its connection task when it
    closes the connection (pgjones/hypercorn#361, open): a client the kernel disconnected for
    taking nothing (``TCP_USER_TIMEOUT``: ``ETIMEDOUT``) would otherwise be reported as if the
    server had failed.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and context.get("message") == _CLIENT_TASK_FAILED:
            _log.debug("client connection ended: %r", error)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)


#: How asyncio's streams report a connection task that raised (asyncio/streams.py).
_CLIENT_TASK_FAILED = "Unhandled exception in client_connected_cb"


def _listening_socket(
    host: str, port: int, backlog: int, send_buffer: int | None, user_timeout_ms: int
) -> socket.socket:
    """A socket listening before the server starts, so that being started means listening.
    Accepted connections inherit its options: no Nagle delay, the send buffer, the timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
        if send_buffer is not None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        listener.bind((host.strip("[]"), port))
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener
