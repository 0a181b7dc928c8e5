"""The fleet's events, read back from JetStream through a durable consumer.

The consumer is durable: the engine remembers, under its name, which messages were
acknowledged, so a reader that restarts resumes where it left off. A message is acknowledged
once every event in it was handed out and the reader came back for more (or closed): a reader
that closes (or dies) in the middle leaves it to the next reader, which tells the repeats by
their ids (:attr:`FleetEvent.message_id` and :attr:`FleetEvent.index`); within one reader, a
message seen before is dropped and counted.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Sequence
from typing import Any

import anyio
import attrs
from anyio.abc import ObjectReceiveStream

from ..errors import StreamEngineError
from ._nats import (
    CONNECT_TIMEOUT,
    ELECTION_TIMEOUT,
    RETRY_WAIT,
    Engine,
    close_quietly,
    connect,
    nats_module,
    require_asyncio,
)

__all__ = ["FleetEvent", "FleetEvents", "FleetStats", "fleet_events"]

#: How long one fetch waits on the engine for messages before it asks again (a long poll: the
#: engine answers as soon as a message comes).
FETCH_WAIT = 5.0

#: How long binding the durable consumer is tried again while a cluster elects its leaders.
BIND_TIMEOUT = ELECTION_TIMEOUT


@attrs.frozen
class FleetEvent:
    """One item a node published: the node's ``node`` name and ``boot_id``, the ``message_id``
    and ``index`` that tell it apart from every other, and the item's ``fields`` (an exec
    event's ``pid``, ``uid``, ``comm``...), which are also its attributes: ``event.uid``, so
    that operators such as ``window_count(lambda e: (e.node, e.uid))`` work unchanged."""

    node: str
    boot_id: str
    message_id: str
    index: int
    fields: dict[str, Any] = attrs.field(repr=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


@attrs.frozen
class FleetStats:
    """``messages`` read, ``events`` handed out, ``duplicates`` (messages seen before, dropped),
    ``malformed`` messages (not aiobpf's JSON: acknowledged and skipped) and ``retries``
    (fetches and acknowledgements the engine could not answer: an election, a failover)."""

    messages: int
    events: int
    duplicates: int
    malformed: int
    retries: int = 0


class FleetEvents(ObjectReceiveStream[FleetEvent]):
    """An async source of :class:`FleetEvent` from a JetStream stream (see
    :func:`fleet_events`)."""

    def __init__(
        self,
        engine: Engine,
        *,
        subject: str,
        stream: str,
        durable: str,
        batch: int,
        remembered: int,
        connect_timeout: float,
    ) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a whole number >= 1, got {batch!r}")
        self.engine, self.subject, self.stream, self.durable = engine, subject, stream, durable
        self._batch, self._connect_timeout = batch, connect_timeout
        self._client: Any = None
        self._subscription: Any = None
        self._ready: collections.deque[FleetEvent] = collections.deque()
        self._last_of: dict[int, Any] = {}  # id(last event of a message) -> the message
        self._to_ack: list[Any] = []
        self._held: list[Any] = []  # fetched and not acknowledged yet
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._remembered = remembered
        self._messages = self._events = self._duplicates = self._malformed = self._retries = 0
        self._closed = False

    async def __aenter__(self) -> FleetEvents:
        await self.open()
        return self

    async def open(self) -> None:
        """Connects and binds the durable consumer (made on first use); idempotent."""
        if self._closed:
            raise anyio.ClosedResourceError("the fleet reader is closed")
        if self._subscription is not None:
            return
        require_asyncio("fleet_events()")
        nats = nats_module()
        client = await connect(
            self.engine,
            name=f"aiobpf fleet reader {self.durable}",
            connect_timeout=self._connect_timeout,
        )
        try:
            self._subscription = await self._bind(client)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await close_quietly(client)
            if isinstance(exc, nats.errors.Error):
                raise StreamEngineError(
                    f"cannot read stream {self.stream!r} ({self.subject}) at "
                    f"{self.engine.shown}: {exc}"
                ) from exc
            raise
        self._client = client

    async def _bind(self, client: Any) -> Any:
        """The durable consumer's subscription. A cluster that is electing a leader (a node
        just went) answers with time-outs and 503s for a while: tried again for up to
        BIND_TIMEOUT; a stream that does not exist is said at once."""
        nats = nats_module()
        give_up = anyio.current_time() + BIND_TIMEOUT
        while True:
            try:
                return await client.jetstream().pull_subscribe(
                    self.subject, durable=self.durable, stream=self.stream
                )
            except nats.js.errors.NotFoundError:
                raise
            except nats.errors.Error:
                if anyio.current_time() >= give_up:
                    raise
                self._retries += 1
                await anyio.sleep(RETRY_WAIT)

    async def receive(self) -> FleetEvent:
        """The next event; raises :class:`anyio.ClosedResourceError` once closed."""
        if self._closed:
            raise anyio.ClosedResourceError("the fleet reader is closed")
        if self._subscription is None:
            await self.open()
        await self._acknowledge()
        while not self._ready:
            await self._fetch()
            await self._acknowledge()  # messages that held nothing new
        event = self._ready.popleft()
        message = self._last_of.pop(id(event), None)
        if message is not None:
            self._to_ack.append(message)  # acknowledged when the reader comes back
        self._events += 1
        return event

    async def _acknowledge(self) -> None:
        nats = nats_module()
        while self._to_ack:
            message = self._to_ack[0]
            try:
                await message.ack()
            except nats.errors.Error:
                # the engine node went (a failover): the message comes again after the
                # consumer's ack wait, and is told as a repeat by its id
                self._retries += 1
            self._to_ack.pop(0)
            self._held.remove(message)

    async def _fetch(self) -> None:
        nats = nats_module()
        try:
            messages = await self._subscription.fetch(self._batch, timeout=FETCH_WAIT)
        except nats.errors.TimeoutError:
            return  # nothing came meanwhile: ask again
        except nats.errors.Error:
            # no responders, 503, a connection lost: the cluster is electing a leader or the
            # client is moving to another server; ask again shortly
            self._retries += 1
            await anyio.sleep(RETRY_WAIT)
            return
        for message in messages:
            self._held.append(message)
            self._messages += 1
            events = self._decode(message)
            if events:
                self._ready.extend(events)
                self._last_of[id(events[-1])] = message
            else:
                self._to_ack.append(message)

    def _decode(self, message: Any) -> list[FleetEvent]:
        """The events of one message; none, counted as malformed, for anything that is not
        aiobpf's JSON. A peer may send anything on the subject: nothing it sends may stop
        the reader (a deeply nested body raised RecursionError out of it, and the message,
        never acknowledged, came back to every restart)."""
        try:
            body = json.loads(message.data)
            if not isinstance(body, dict):
                raise TypeError("a message is a JSON object")
            node, boot_id, items = body["node"], body["boot_id"], body["items"]
            run, seq = body["run"], body["seq"]
            if not (isinstance(node, str) and isinstance(boot_id, str) and isinstance(run, str)):
                raise TypeError("node, boot_id and run are text")
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise TypeError("seq is a whole number")
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise TypeError("items must be a list of objects")
        except (ValueError, KeyError, TypeError, RecursionError):
            self._malformed += 1
            return []
        message_id = f"{node}:{run}:{seq}"
        # a repeat is told by its subject too: a peer allowed only its own subject cannot
        # make the reader drop another node's message by publishing its numbers first
        seen = f"{getattr(message, 'subject', '')} {message_id}"
        if seen in self._seen:
            self._duplicates += 1
            return []
        self._seen[seen] = None
        if len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        return [
            FleetEvent(node, boot_id, message_id, index, fields)
            for index, fields in enumerate(items)
        ]

    @property
    def connected_url(self) -> str | None:
        """The engine server this reader is connected to now (None while it is not)."""
        url = getattr(self._client, "connected_url", None)
        return None if url is None else f"{url.scheme}://{url.hostname}:{url.port}"

    @property
    def stats(self) -> FleetStats:
        return FleetStats(
            self._messages, self._events, self._duplicates, self._malformed, self._retries
        )

    def __aiter__(self) -> FleetEvents:
        return self

    async def __anext__(self) -> FleetEvent:
        if self._closed:
            raise StopAsyncIteration
        return await self.receive()

    async def aclose(self) -> None:
        """Acknowledges the messages wholly handed out and gives the others back to the engine
        (a negative acknowledgement: the next reader gets them at once), then disconnects; the
        durable consumer stays on the engine for the next reader. Idempotent."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._acknowledge()
                for message in self._held:
                    await message.nak()
                self._held.clear()
            finally:
                await close_quietly(client)


def fleet_events(
    url: str | Sequence[str] = "nats://127.0.0.1:4222",
    *,
    credentials: str | os.PathLike[str] | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    subject: str = "aiobpf.>",
    stream: str = "AIOBPF",
    durable: str = "aiobpf-fleet",
    batch: int = 256,
    remembered: int = 100_000,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> FleetEvents:
    """Every node's events in JetStream ``stream`` (on ``subject``), through the durable
    consumer ``durable``: ``async with fleet_events(url) as events: async for event in
    events``, with the same operators as a node's own events.

    A reader that restarts with the same ``durable`` resumes after the last message it
    acknowledged; the ids of the last ``remembered`` messages drop repeats. Runs on asyncio
    only (nats-py): under trio, opening raises :class:`aiobpf.AsyncioOnlyError`; an engine
    that cannot be reached, or has no such stream, :class:`aiobpf.StreamEngineError`.
    """
    return FleetEvents(
        Engine.of(url, credentials=credentials, tls_ca=tls_ca, insecure=insecure),
        subject=subject,
        stream=stream,
        durable=durable,
        batch=batch,
        remembered=remembered,
        connect_timeout=connect_timeout,
    )
