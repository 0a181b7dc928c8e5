"""How many connections the service holds open, counted before anything is read from them.

A request is authenticated when it is read; a connection that sends nothing costs a file
descriptor and a task until hypercorn's timeouts end it, so a local user could open enough of
them, each sending nothing, to exhaust the process's file limit. Counting happens as a
connection is accepted: past ``max_connections`` in all (over TCP, where nobody is known before
the token), or past ``max_connections_per_user`` for one local user over the Unix socket (root
and ``see_all`` exempt), a new connection is closed at once.

A user's subordinate ids (``/etc/subuid``: 65,536 per user, usable in a user namespace without
privileges) are that user's: they count against its quotas, not as 65,536 users of their own.
"""

from __future__ import annotations

import collections
import contextvars
import os
import pwd
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ConnectionLimits", "admitted", "connection_limits", "owner_of"]

#: Where the system says which uids each user may map in a user namespace.
SUBUID = "/etc/subuid"


@attrs.frozen
class _Range:
    owner: int
    start: int
    count: int


_ranges_cache: dict[str, tuple[float, tuple[_Range, ...]]] = {}


def _ranges(path: str) -> tuple[_Range, ...]:
    """The subordinate ranges of ``path`` (read again when it changes); none when it is
    missing or unreadable. A line is ``user:start:count``; ``user`` a name or a uid."""
    try:
        changed = os.stat(path).st_mtime
    except OSError:
        return ()
    cached = _ranges_cache.get(path)
    if cached is not None and cached[0] == changed:
        return cached[1]
    ranges = []
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or line.lstrip().startswith("#"):
            continue
        user, start, count = fields
        try:
            owner = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
            ranges.append(_Range(owner, int(start), int(count)))
        except (KeyError, ValueError):
            continue  # a user that does not exist, or a malformed line: maps nothing
    _ranges_cache[path] = (changed, tuple(ranges))
    return tuple(ranges)


def owner_of(uid: int, subuid: str | None = SUBUID) -> int:
    """The user ``uid`` belongs to: its owner when it is someone's subordinate id, else
    itself."""
    if subuid is None:
        return uid
    for entry in _ranges(subuid):
        if entry.start <= uid < entry.start + entry.count:
            return entry.owner
    return uid


class ConnectionLimits(Collector):
    """The open connections of one service, in all and per local user; uids ``exempt`` says
    yes to (those who see everything: the policy's ``sees_all``) are not counted. A Prometheus
    collector of what it counts: nothing refused goes unsaid."""

    def __init__(
        self,
        max_connections: int,
        max_per_user: int,
        exempt: Callable[[int], bool],
        subuid: str | None,
    ) -> None:
        self.max_connections, self.max_per_user = max_connections, max_per_user
        self._exempt, self._subuid = exempt, subuid
        self.open = 0
        self.refused = 0
        self._by_user: collections.Counter[int] = collections.Counter()

    def admit(self, peer_uid: int | None) -> Callable[[], None] | None:
        """A new connection, from the Unix peer ``peer_uid`` (None over TCP): None when it is
        over a limit (close it at once), else the call that releases it when it ends."""
        user = None if peer_uid is None else owner_of(peer_uid, self._subuid)
        if peer_uid is not None and self._exempt(peer_uid):
            return _nothing  # by its own uid: root's subordinate ids are not root
        if self.open >= self.max_connections or (
            user is not None and self._by_user[user] >= self.max_per_user
        ):
            self.refused += 1
            return None
        self.open += 1
        if user is not None:
            self._by_user[user] += 1

        def release() -> None:
            self.open -= 1
            if user is not None:
                self._by_user[user] -= 1
                if not self._by_user[user]:
                    del self._by_user[user]

        return release

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "aiobpf_connections_open",
            "connections held to the connection caps, open now",
            value=self.open,
        )
        yield CounterMetricFamily(
            "aiobpf_connections_refused",
            "connections closed as they were accepted: over --max-connections or its per-user cap",
            value=self.refused,
        )


def _nothing() -> None:
    pass


#: The limits of the service whose connections are being served (set by ``serve()``; the
#: connection tasks hypercorn starts inherit it).
connection_limits: contextvars.ContextVar[ConnectionLimits | None] = contextvars.ContextVar(
    "aiobpf_connection_limits", default=None
)


def admitted(peer_uid: int | None) -> Callable[[], None] | None:
    """A new connection counted against the limits of the service serving it
    (:data:`connection_limits`; none outside ``serve()``): as :meth:`ConnectionLimits.admit`."""
    limits = connection_limits.get()
    return _nothing if limits is None else limits.admit(peer_uid)
