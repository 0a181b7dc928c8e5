"""A sink that publishes any aiobpf stream into a NATS JetStream subject, acknowledged.

Items go out in messages of up to ``max_items`` (one per batch handed to :meth:`send`), each a
JSON object with the node's identity, the sink's run and the message's number. One task
publishes them in order and waits for the engine's acknowledgement of each; while the engine is
slow or down, messages wait in a bounded buffer whose policy (block, drop_oldest, drop_newest)
decides what gives, and a failed publish is tried again with back-off, under the same message
id, so that the engine stores a message once even when an acknowledgement was lost on the way
(JetStream's duplicate window). A batch whose message would exceed the largest the engine takes
(its ``max_payload``, 1 MiB by default) is split in halves until each part fits; a single item
larger than that is dropped and counted (``too_large``): one oversize message retried forever
held up everything behind it. Nothing is lost silently: every item handed in is published
(acknowledged), dropped (counted), or still pending, and leaving the sink counts what it could
not publish in time as dropped.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import secrets
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Self, get_args

import anyio
import anyio.lowlevel
import attrs
from anyio import AsyncContextManagerMixin

from ..errors import StreamEngineError
from ..redaction import DEFAULT, Redaction
from ._encoding import to_json
from ._nats import (
    CONNECT_TIMEOUT,
    Engine,
    close_quietly,
    connect,
    nats_module,
    require_asyncio,
    through_elections,
)
from ._node import Node

__all__ = ["JetStreamSink", "SinkPolicy", "SinkStats", "publish"]

SinkPolicy = Literal["block", "drop_oldest", "drop_newest"]

#: NATS's default largest message is 1 MiB; an exec event is about 0.5 KiB of JSON.
MAX_ITEMS = 256

#: What a message's headers (its id) may take of the engine's largest message, which counts
#: headers and body together.
HEADER_ROOM = 1024


@attrs.frozen
class SinkStats:
    """What became of the items handed to a sink: ``received == published + dropped +
    pending``. ``messages`` were acknowledged, ``duplicates`` of them as a message the engine
    already had (a retry whose first acknowledgement was lost: its items count once);
    ``retries`` publishes failed and were tried again; ``disconnects`` counts lost
    connections; ``too_large`` items were each larger than the engine's largest message alone
    (dropped, and counted in ``dropped`` too)."""

    received: int
    published: int
    dropped: int
    pending: int
    messages: int
    duplicates: int
    retries: int
    disconnects: int
    too_large: int


@attrs.define
class _Message:
    message_id: str
    payload: bytes
    count: int
    subject: str


def _covers(pattern: str, subject: str) -> bool:
    """Whether NATS subject ``pattern`` (``*`` one token, ``>`` the rest) matches ``subject``."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or token not in ("*", tokens[index]):
            return False
    return len(tokens) == len(wanted)


class JetStreamSink(AsyncContextManagerMixin):
    """Publishes batches of items to ``subject`` of a NATS JetStream engine at ``url`` (one
    URL or several of a cluster; ``credentials``, ``tls_ca`` and ``insecure`` as for
    :class:`aiobpf.fleet.Engine`).

    ``async with JetStreamSink(url, subject="aiobpf.web1.exec") as sink: await
    sink.send(events)``. Entering connects (:class:`aiobpf.StreamEngineError` if the engine
    cannot be reached) and creates ``stream`` over ``stream_subjects`` if no stream holds the
    subject yet; the connection then comes back on its own after an outage. ``subject``
    defaults to ``aiobpf.<node>.events``. At most ``max_pending`` items wait unpublished; when
    more come, ``policy`` blocks :meth:`send`, drops the oldest waiting messages, or drops the
    new one. Leaving waits up to ``close_timeout`` seconds for the engine to take what is
    pending, and counts the rest as dropped. An engine that does not answer within
    ``connect_timeout`` seconds on entering is :class:`aiobpf.StreamEngineError`. Exec
    events' argv secrets are hidden by ``redaction`` (:data:`aiobpf.redaction.DEFAULT`).

    A publish that fails is tried again under the same id, attempts at least 0.05 s apart and
    doubling up to ``max_backoff`` seconds: once an election is over, the engine is asked
    again within half a second by default. ``ack_timeout`` bounds the wait for one answer.

    ``subjects`` names the subject of other kinds of item, by kind (``{"exit":
    "aiobpf.web1.exit"}``): :meth:`send` with ``kind="exit"`` publishes there. The stream
    that holds ``subject`` must hold them too (a stream made here does).

    Runs on asyncio only (nats-py): under trio, entering raises
    :class:`aiobpf.AsyncioOnlyError`.
    """

    def __init__(
        self,
        url: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        credentials: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        subject: str | None = None,
        stream: str = "AIOBPF",
        stream_subjects: Sequence[str] = ("aiobpf.>",),
        node: Node | None = None,
        max_pending: int = 65536,
        policy: SinkPolicy = "block",
        max_items: int = MAX_ITEMS,
        ack_timeout: float = 2.0,
        close_timeout: float = 5.0,
        max_backoff: float = 0.5,
        connect_timeout: float = CONNECT_TIMEOUT,
        redaction: Redaction = DEFAULT,
        replicas: int | None = None,
        subjects: Mapping[str, str] | None = None,
    ) -> None:
        if policy not in get_args(SinkPolicy):
            raise ValueError(f"policy must be one of {get_args(SinkPolicy)}, got {policy!r}")
        for name, value in (("max_items", max_items), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if max_pending < max_items:
            raise ValueError(f"max_pending ({max_pending}) must hold max_items ({max_items})")
        for name, seconds in (
            ("ack_timeout", ack_timeout),
            ("close_timeout", close_timeout),
            ("max_backoff", max_backoff),
            ("connect_timeout", connect_timeout),
        ):
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ValueError(f"{name} must be a finite number > 0 seconds, got {seconds!r}")
        if replicas is not None and (
            isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5
        ):
            raise ValueError(f"replicas must be a whole number from 1 to 5, got {replicas!r}")
        self.engine = Engine.of(url, credentials=credentials, tls_ca=tls_ca, insecure=insecure)
        self._replicas = replicas
        #: What entering found or made: the stream's replicas, and what was said of them.
        self.replicas: int | None = None
        self.notices: list[str] = []
        self.node = node or Node()
        self.redaction = redaction
        self.subject = subject or self.node.subject("events")
        self.subjects: dict[str, str] = dict(subjects or {})
        """The subjects of other kinds of item, by kind."""
        self.stream = stream
        self._stream_subjects = list(stream_subjects)
        for held in (self.subject, *self.subjects.values()):
            if not any(_covers(pattern, held) for pattern in self._stream_subjects):
                self._stream_subjects.append(held)
        self._max_pending, self.policy, self._max_items = max_pending, policy, max_items
        self._ack_timeout, self._close_timeout = ack_timeout, close_timeout
        self._max_backoff, self._connect_timeout = max_backoff, connect_timeout
        #: This sink's run, in every message id: a restarted publisher numbers from 0 again.
        self.run = uuid.uuid4().hex[:16]
        self._queue: collections.deque[_Message] = collections.deque()
        self._in_flight: _Message | None = None
        self._seq = 0
        self._received = self._published = self._dropped = self._pending = 0
        self._messages = self._duplicates = self._retries = self._disconnects = 0
        self._too_large = 0
        #: The largest message body the engine takes (its max_payload, less the headers'
        #: room), known once connected.
        self._largest = 1024 * 1024 - HEADER_ROOM
        self._changed: anyio.Event  # made on entering: an event belongs to a running loop
        self._attempt: anyio.CancelScope | None = None  # the publish under way
        self._client: Any = None
        self._open = self._closing = False

    # -- lifecycle ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        require_asyncio("JetStreamSink")
        self._changed = anyio.Event()
        client = await connect(
            self.engine,
            name=f"aiobpf sink {self.node.name}",
            connect_timeout=self._connect_timeout,
            on_disconnect=self._disconnected,
        )
        try:
            self._largest = client.max_payload - HEADER_ROOM
            jetstream = client.jetstream()
            self._client = client
            await self._ensure_stream(jetstream, cluster_size=len(client.servers))
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._publish_all, jetstream)
                self._open = True
                try:
                    yield self
                finally:
                    self._open = False
                    with anyio.move_on_after(self._close_timeout, shield=True):
                        while self._pending:
                            await self._wait_for_change()
                    tasks.cancel_scope.cancel()
        finally:
            self._dropped += self._pending  # not published in time: said, not lost silently
            self._pending = 0
            self._queue.clear()
            self._in_flight = None
            self._closing = True
            self._client = None
            with anyio.CancelScope(shield=True):
                await close_quietly(client)

    def _retried(self) -> None:
        self._retries += 1

    async def _disconnected(self) -> None:
        if not self._closing:
            self._disconnects += 1
            if self._attempt is not None:
                self._attempt.cancel()  # the lost server's answer never comes: ask again

    @property
    def connected_url(self) -> str | None:
        """The engine server this sink is connected to now (None while it is not)."""
        url = getattr(self._client, "connected_url", None)
        return None if url is None else f"{url.scheme}://{url.hostname}:{url.port}"

    async def _ensure_stream(self, jetstream: Any, *, cluster_size: int) -> None:
        """Uses the stream that holds the subject, as it is (an explicit ``replicas`` it does
        not have is an error; fewer than the cluster could give, a notice), or creates one:
        with ``replicas``, or 3 where the cluster has three or more servers (falling back to 1,
        with a notice, where the engine cannot place them), else 1."""
        nats = nats_module()
        wanted = self._replicas or (3 if cluster_size >= 3 else 1)

        async def lookup() -> tuple[str, Any]:
            name = await jetstream.find_stream_name_by_subject(self.subject)
            return name, await jetstream.stream_info(name)

        try:
            # a cluster that just started, or just lost a node, elects its leaders first
            name, info = await through_elections(lookup, self._retried)
        except nats.js.errors.NotFoundError:
            pass
        except nats.errors.Error as exc:
            raise StreamEngineError(
                f"the engine at {self.engine.shown} has no JetStream: {exc}"
            ) from exc
        else:
            await self._check_held(jetstream, name)
            self.replicas = info.config.num_replicas or 1
            if self.replicas < wanted:
                said = (
                    f"stream {name!r} has {self.replicas} replica(s), and {wanted} were asked"
                    if self._replicas is not None
                    else f"stream {name!r} has {self.replicas} replica(s) on a cluster of "
                    f"{cluster_size}: a lost engine node can take its messages with it"
                )
                if self._replicas is not None:
                    raise StreamEngineError(said + ": change it on the engine, or ask for fewer")
                self.notices.append(said)
            return
        for replicas in dict.fromkeys((wanted, 1 if self._replicas is None else wanted)):
            try:
                await through_elections(
                    functools.partial(
                        jetstream.add_stream,
                        name=self.stream,
                        subjects=self._stream_subjects,
                        num_replicas=replicas,
                    ),
                    self._retried,
                )
            except nats.errors.Error as exc:
                failure = exc
                continue
            self.replicas = replicas
            if replicas < wanted:
                self.notices.append(
                    f"stream {self.stream!r} made with 1 replica: the engine could not place "
                    f"{wanted} ({failure})"
                )
            return
        raise StreamEngineError(
            f"cannot create stream {self.stream!r} for {self.subject!r} at "
            f"{self.engine.shown}: {failure}"
        ) from failure

    async def _check_held(self, jetstream: Any, name: str) -> None:
        """Whether stream ``name`` holds the subjects of the other kinds too: a message to a
        subject no stream holds is never acknowledged, and would hold up all behind it."""
        nats = nats_module()
        for kind, subject in self.subjects.items():
            try:
                holder = await through_elections(
                    functools.partial(jetstream.find_stream_name_by_subject, subject),
                    self._retried,
                )
            except nats.js.errors.NotFoundError:
                holder = None
            if holder != name:
                raise StreamEngineError(
                    f"stream {name!r} holds {self.subject!r} but not {subject!r} ({kind} "
                    f"items): add it to the stream's subjects on the engine"
                )

    # -- handing items in -----------------------------------------------------------------------

    async def send(self, items: Iterable[Any], *, kind: str | None = None) -> None:
        """Queues ``items`` for publishing, in messages of up to ``max_items`` (fewer where
        the engine's largest message holds fewer; an item too large alone is dropped and
        counted), to ``subject``, or to the subject of ``kind`` in ``subjects``. With the
        ``block`` policy, waits while the buffer is full. Raises
        :class:`anyio.ClosedResourceError` when the sink is not open, :class:`TypeError` for
        an item with no JSON form (attrs classes, numpy records and plain values have one),
        :class:`ValueError` for a kind with no subject."""
        await anyio.lowlevel.checkpoint()  # the publisher runs between two sends
        if not self._open:
            raise anyio.ClosedResourceError("the sink is not open: use 'async with'")
        if kind is None:
            subject = self.subject
        elif kind in self.subjects:
            subject = self.subjects[kind]
        else:
            raise ValueError(f"the sink has no subject for {kind!r} items: {self.subjects}")
        batch = list(items)
        for start in range(0, len(batch), self._max_items):
            part = batch[start : start + self._max_items]
            messages, too_large = self._split(part, subject)  # TypeError first
            self._received += len(part)
            self._too_large += too_large
            self._dropped += too_large
            for index, message in enumerate(messages):
                try:
                    room = await self._make_room(message.count)
                except BaseException:  # cancelled, or the sink closed, while waiting for room
                    # never queued, this message and those after it: counted, not lost silently
                    self._dropped += sum(later.count for later in messages[index:])
                    raise
                if not room:
                    self._dropped += message.count
                    continue
                self._queue.append(message)
                self._pending += message.count
                self._notify()

    def _split(self, items: list[Any], subject: str) -> tuple[list[_Message], int]:
        """``items`` as messages the engine takes, in order: one, or halves of halves where
        one would be larger than the engine's largest message; with how many items were too
        large alone. Encoded once when they fit, as they do but for hostile input."""
        messages: list[_Message] = []
        too_large = 0
        parts = [items]
        while parts:
            part = parts.pop()
            payload = self._payload(part, self._seq)
            if len(payload) <= self._largest:
                messages.append(_Message(self._message_id(), payload, len(part), subject))
                self._seq += 1
            elif len(part) == 1:
                too_large += 1
            else:
                half = len(part) // 2
                parts += (part[half:], part[:half])  # the first half is taken next
        return messages, too_large

    def _payload(self, items: list[Any], seq: int) -> bytes:
        return to_json(
            {
                "node": self.node.name,
                "boot_id": self.node.boot_id,
                "run": self.run,
                "seq": seq,
                "items": items,
            },
            redaction=self.redaction,
        )

    @staticmethod
    def _message_id() -> str:
        """The engine's id of a message (Nats-Msg-Id), kept across its retries so that it is
        stored once, and random: a peer that read the node's earlier messages cannot publish
        the next id first and have the engine drop the node's message as a duplicate."""
        return secrets.token_hex(16)

    async def _make_room(self, count: int) -> bool:
        """Whether ``count`` more items may wait (after dropping or waiting, by policy)."""
        while self._pending + count > self._max_pending:
            if self.policy == "drop_newest":
                return False
            if self.policy == "drop_oldest":
                # the message being published, if any, heads the queue: it stays
                oldest = 1 if self._queue and self._queue[0] is self._in_flight else 0
                if oldest == len(self._queue):
                    return False
                dropped = self._queue[oldest]
                del self._queue[oldest]  # at the head: no walk of the queue
                self._pending -= dropped.count
                self._dropped += dropped.count
                continue
            await self._wait_for_change()
            if not self._open:
                raise anyio.ClosedResourceError("the sink closed")
        return True

    # -- publishing -----------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_for_change(self) -> None:
        await self._changed.wait()

    async def _publish_all(self, jetstream: Any) -> None:
        nats = nats_module()
        while True:
            while not self._queue:
                await self._wait_for_change()
            message = self._in_flight = self._queue[0]
            delay = 0.05
            ack = None
            while True:
                tried = anyio.current_time()
                with anyio.CancelScope() as self._attempt:
                    try:
                        ack = await jetstream.publish(
                            message.subject,
                            message.payload,
                            timeout=self._ack_timeout,
                            headers={"Nats-Msg-Id": message.message_id},
                        )
                    except nats.errors.MaxPayloadError:
                        # the engine now takes less than when the message was made (a
                        # reconnect to another server): trying again would hold up everything
                        # behind it
                        break
                    except nats.errors.Error:  # timeout, no stream, disconnected: tried again
                        pass
                    else:
                        break
                # failed, or given up on when the connection went (its answer would never
                # come: the server that had the request is gone): tried again, under its id
                self._retries += 1
                # attempts start at least ``delay`` apart: a time-out has waited already
                # (sleeping the whole back-off after it delayed the first publish after a
                # failover by up to max_backoff)
                await anyio.sleep_until(tried + delay)
                delay = min(delay * 2, self._max_backoff)
            self._queue.popleft()
            self._in_flight = None
            self._pending -= message.count
            if ack is None:
                self._too_large += message.count
                self._dropped += message.count
            else:
                self._published += message.count
                self._messages += 1
                self._duplicates += bool(ack.duplicate)
            self._notify()

    @property
    def stats(self) -> SinkStats:
        return SinkStats(
            received=self._received,
            published=self._published,
            dropped=self._dropped,
            pending=self._pending,
            messages=self._messages,
            duplicates=self._duplicates,
            retries=self._retries,
            disconnects=self._disconnects,
            too_large=self._too_large,
        )


async def publish(
    stream: AsyncIterable[Any],
    sink: JetStreamSink,
    *,
    batch_size: int = MAX_ITEMS,
    kind_of: Callable[[Any], str | None] | None = None,
) -> int:
    """Sends every item of ``stream`` to ``sink`` until the stream ends; returns how many.

    Items that arrive together (the records of one ring read) go out together, in batches of
    up to ``batch_size``: a task reads the stream into a buffer without going round the event
    loop between items, and each send takes what the buffer holds. The stream is never
    cancelled in the middle of a read, so any async iterable may feed it (a generator too).
    ``kind_of`` gives each item's kind (None: the sink's own subject), and each kind of a
    batch goes to its subject (see :class:`JetStreamSink`), in order within the kind.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    put, take = anyio.create_memory_object_stream[Any](batch_size)

    async def read_all() -> None:
        async with put:
            async for item in stream:
                try:
                    put.send_nowait(item)
                except anyio.WouldBlock:
                    await put.send(item)

    sent = 0
    async with anyio.create_task_group() as tasks, take:
        tasks.start_soon(read_all)
        async for item in take:
            items = [item]
            while len(items) < batch_size:
                try:
                    items.append(take.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            if kind_of is None:
                await sink.send(items)
            else:
                by_kind: dict[str | None, list[Any]] = {}
                for item in items:
                    by_kind.setdefault(kind_of(item), []).append(item)
                for kind, part in by_kind.items():
                    await sink.send(part, kind=kind)
            sent += len(items)
    return sent
