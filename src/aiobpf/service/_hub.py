"""The event hub: the service's kernel sources, attached once, fanned out to subscribers.

Two kinds of event: every exec (:class:`~aiobpf.ExecveEvent`) and every process's end
(:class:`~aiobpf.ProcessExit`, from a program of its own). Each subscriber has its own bounded
queue: a slow one loses events (counted, and told to it), never blocks the others or the kernel
reader. The subscribers' exec filters reach the kernel as far as one shared program can take
them: when every subscriber filters by uid (or comm), the kernel passes only the union of their
values, and with no subscriber at all it passes nothing. Exits are all read (within the
service's ``uids``): the hub counts them, and the failures among them, per uid.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Iterable, Iterator
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio import AsyncContextManagerMixin

from .._core.validate import MaxLatency
from ..errors import NotOpenError
from ..programs import (
    ExecveCounts,
    ExecveEvent,
    ExecveEvents,
    ProcessEvents,
    ProcessExit,
    execve_counts,
    execve_events,
    process_events,
)
from ..programs._filters import CAPACITY
from ..sources import Replay
from ..sources import replay as aiobpf_replay

__all__ = ["KINDS", "EventHub", "HubEvent", "HubStats", "Subscriber", "kind_of"]

#: What a hub hands its subscribers: execs, and processes' ends.
HubEvent = ExecveEvent | ProcessExit

#: The kinds of :data:`HubEvent`, as ``event.type`` and the SSE event names say them.
KINDS = frozenset({"exec", "exit"})


def kind_of(event: HubEvent) -> str:
    """The kind of a hub's event, one of :data:`KINDS`."""
    return "exit" if type(event) is ProcessExit else "exec"


class Subscriber:
    """One client's bounded queue of events and what it lost."""

    def __init__(
        self,
        uid: int | None,
        comm: str | None,
        buffer: int,
        kinds: frozenset[str] = KINDS,
    ) -> None:
        self.uid = uid
        # the kernel keeps 15 bytes of a task's name: compare what it can report
        self.comm = None if comm is None else comm.encode()[:15].decode(errors="ignore")
        self.kinds = kinds
        self._send, self.receive = anyio.create_memory_object_stream[HubEvent](buffer)
        self.unreported_lost = 0
        self.lost = 0
        self._finished = False

    def offer(self, event: HubEvent) -> bool:
        """Queues ``event`` if it matches; False when the queue was full (the event is lost).
        Once finished, the stream has ended: what comes after is not part of it."""
        if (
            self._finished
            or (self.uid is not None and event.uid != self.uid)
            or (self.comm is not None and event.comm != self.comm)
            or (self.kinds is not KINDS and kind_of(event) not in self.kinds)
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

    def finish(self) -> None:
        """Ends the queue: what it holds can still be received, then the stream ends."""
        self._finished = True
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self.receive.close()


@attrs.frozen
class HubStats:
    """What an :class:`EventHub` has seen (``GET /stats`` serves it as JSON)."""

    received: int
    """Exec events read from the kernel ring."""
    kernel_dropped: int
    """Exec events the ring had no room for."""
    user_dropped: int
    """Events slow clients' queues had no room for (each was told)."""
    ring_occupancy: float | None
    """The share of the ring holding unread records."""
    clients: int
    """Subscribers connected."""
    kernel_selection: dict[str, list[Any] | None]
    """Per kind, the values the kernel lets through for the subscribers (None: all)."""
    exits_received: int | None = None
    """Process exits read from their ring (None: the hub reads no exits)."""
    exits_dropped: int | None = None
    """Process exits their ring had no room for (None: the hub reads no exits)."""


class EventHub(AsyncContextManagerMixin):
    """The kernel sources of the service, attached once, and the subscribers they feed.

    With ``replay`` (a recording, :func:`aiobpf.replay`), the events come from it instead, with
    no kernel and no privileges: it plays from when the first subscriber connects (so a
    dashboard shows it from its start) at ``replay_speed``, and ``/top`` counts what it has
    played; its recorded losses are the kernel's.

    ``exits``: processes' ends are read too (:func:`aiobpf.process_events`, exits only),
    handed to subscribers that want them, and counted per uid with their failures
    (:meth:`exits`); a replay has none."""

    def __init__(
        self,
        *,
        uids: Iterable[int] | None = None,
        client_buffer: int = 1024,
        max_latency: MaxLatency = "auto",
        replay: str | os.PathLike[str] | None = None,
        replay_speed: float | None = 1.0,
        exits: bool = True,
    ) -> None:
        self._uids = None if uids is None else frozenset(uids)
        self._want_exits = exits and replay is None
        self._exits: ProcessEvents | None = None
        self._ended: collections.Counter[int] = collections.Counter()  # exits per uid
        self._failed: collections.Counter[int] = collections.Counter()
        self._client_buffer = client_buffer
        self._max_latency = max_latency
        self._subscribers: set[Subscriber] = set()
        self._finished = False
        self._events: ExecveEvents | Replay | None = None
        self._counts: ExecveCounts | None = None
        self._replay = None if replay is None else aiobpf_replay(replay, speed=replay_speed)
        self._played: collections.Counter[int] = collections.Counter()  # a replay's /top
        self.user_dropped = 0
        self.kernel_selection: dict[str, list[Any] | None] = {}
        """Per kind, the values the kernel lets through for the subscribers (None: all)."""
        self.started = time.time()
        self._clients_changed = anyio.Event()

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        """Attaches the kernel sources (or opens the recording) and fans events out while
        entered; leaving ends every subscription and detaches."""
        async with contextlib.AsyncExitStack() as held:
            if self._replay is not None:
                self._events = await held.enter_async_context(self._replay)
                run = self._play
            else:
                events = execve_events(max_latency=self._max_latency)
                if self._uids is not None:
                    events.push_down("uid", self._uids)  # the whole service wants only these
                self._select(events)
                self._events = await held.enter_async_context(events)
                counts = execve_counts(interval=1.0, uids=self._uids)
                self._counts = await held.enter_async_context(counts)
                run = self._fan_out
                if self._want_exits:
                    exits = process_events(max_latency=self._max_latency, kinds=("exit",))
                    if self._uids is not None:
                        exits.push_down("uid", self._uids)
                    self._exits = await held.enter_async_context(exits)
            tasks = await held.enter_async_context(anyio.create_task_group())
            tasks.start_soon(run)
            if self._exits is not None:
                tasks.start_soon(self._fan_out_exits, self._exits)
            try:
                yield self
            finally:
                tasks.cancel_scope.cancel()
                for subscriber in list(self._subscribers):
                    subscriber.close()

    async def _play(self) -> None:
        """A recording's events to the subscribers, from when the first one connects."""
        await self.wait_clients(1)
        await self._fan_out()

    async def _fan_out(self) -> None:
        """Offers each event to every subscriber. The source hands out a burst of events between
        two checkpoints, so when a queue is half full this yields before the next event: a
        client that keeps up never loses a burst, and a stalled one never blocks the others."""
        assert self._events is not None
        played, uids = self._played if self._replay is not None else None, self._uids
        async for event in self._events:
            if played is not None:  # user space does what the kernel does for a live source
                if uids is not None and event.uid not in uids:
                    continue
                played[event.uid] += 1
            if self._offer(event):
                await anyio.lowlevel.checkpoint()

    async def _fan_out_exits(self, exits: ProcessEvents) -> None:
        """Counts each exit and offers it to every subscriber, as :meth:`_fan_out` does."""
        async for event in exits:
            assert isinstance(event, ProcessExit)  # the source reports exits only
            self._ended[event.uid] += 1
            if event.failed:
                self._failed[event.uid] += 1
            if self._offer(event):
                await anyio.lowlevel.checkpoint()

    def _offer(self, event: HubEvent) -> bool:
        """Offers ``event`` to every subscriber (counting what full queues lose); whether a
        queue is half full, and the caller should let the clients' tasks run."""
        behind = False
        for subscriber in list(self._subscribers):
            if not subscriber.offer(event):
                self.user_dropped += 1
            behind = behind or subscriber.behind
        return behind

    def kernel_sources(self) -> dict[str, Any]:
        """The kernel sources while they are attached, by name (none for a replay)."""
        sources: dict[str, Any] = {}
        if isinstance(self._events, ExecveEvents):
            sources["execve_events"] = self._events
        if self._counts is not None:
            sources["execve_counts"] = self._counts
        if self._exits is not None:
            sources["process_exits"] = self._exits
        return sources

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of event this hub hands out: "exec", and "exit" when it reads exits."""
        return KINDS if self._want_exits else frozenset({"exec"})

    @contextlib.contextmanager
    def subscribe(
        self,
        uid: int | None = None,
        comm: str | None = None,
        kinds: Iterable[str] | None = None,
    ) -> Iterator[Subscriber]:
        """A subscriber for the duration of the ``with`` block: the events of ``uid`` and
        ``comm`` (None: any), of ``kinds`` ("exec", "exit"; None: every kind the hub has)."""
        wanted = KINDS if kinds is None else frozenset(kinds)
        if not wanted <= KINDS:
            raise ValueError(f"kinds are some of {sorted(KINDS)}, got {sorted(wanted - KINDS)}")
        subscriber = Subscriber(uid, comm, self._client_buffer, wanted)
        if self._finished:
            subscriber.finish()
        self._subscribers.add(subscriber)
        self._tell_clients_changed()
        try:
            if isinstance(self._events, ExecveEvents):
                self._select(self._events)
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            self._tell_clients_changed()
            subscriber.close()
            if isinstance(self._events, ExecveEvents):
                self._select(self._events)

    def finish(self) -> None:
        """Ends every subscription, those made later too: what a queue holds is still
        delivered, then its stream ends. A server shutting down calls it first, so that its
        event streams end and their connections with them, instead of being waited for and
        then cut (hypercorn waits three seconds)."""
        self._finished = True
        for subscriber in self._subscribers:
            subscriber.finish()

    def _tell_clients_changed(self) -> None:
        self._clients_changed.set()
        self._clients_changed = anyio.Event()

    async def wait_clients(self, count: int) -> None:
        """Returns once exactly ``count`` subscribers are connected (``clients`` in
        :meth:`stats`): a client's connection sends no event of its own to wait on."""
        while len(self._subscribers) != count:
            await self._clients_changed.wait()

    def _select(self, events: ExecveEvents) -> None:
        """Lets the kernel pass only the execs some subscriber wants: per kind, the union of
        the exec subscribers' values when every one of them filters by it (nothing with no
        subscriber of execs)."""
        execs = [subscriber for subscriber in self._subscribers if "exec" in subscriber.kinds]
        for kind, wanted in (
            ("uid", {subscriber.uid for subscriber in execs}),
            ("comm", {subscriber.comm for subscriber in execs}),
        ):
            selection = None if None in wanted or len(wanted) > CAPACITY else frozenset(wanted)
            events.select(kind, selection)
            self.kernel_selection[kind] = None if selection is None else sorted(selection)

    def _running(self) -> ExecveEvents | Replay:
        if self._events is None:
            raise NotOpenError("EventHub is not running yet: use it with 'async with'")
        return self._events

    def top(self) -> dict[int, int]:
        """execve calls per uid since start, read from the kernel map now (a replay's:
        counted as it plays)."""
        self._running()
        if self._counts is None:
            return dict(self._played)
        return dict(self._counts.read().values)

    def exits(self) -> dict[int, tuple[int, int]]:
        """Per uid, the processes that ended since start and how many of them failed (a
        non-zero code, or a signal); empty when the hub reads no exits."""
        self._running()
        return {uid: (ended, self._failed[uid]) for uid, ended in self._ended.items()}

    @property
    def stats(self) -> HubStats:
        """Events received, kernel and slow-client drops, ring occupancy, clients."""
        events = self._running()
        ring = events.stats
        exits = None if self._exits is None else self._exits.stats
        return HubStats(
            received=ring.received,
            kernel_dropped=ring.dropped or 0,
            user_dropped=self.user_dropped,
            ring_occupancy=events.ring.occupancy if isinstance(events, ExecveEvents) else None,
            clients=len(self._subscribers),
            kernel_selection=dict(self.kernel_selection),
            exits_received=None if exits is None else exits.received,
            exits_dropped=None if exits is None else exits.dropped or 0,
        )
