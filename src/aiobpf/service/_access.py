"""Who may see what of the service: the peer's identity, and what it is allowed.

aiobpf runs as root and sees every user's execs. What it serves reaches only those allowed to
see it, by the kernel's own rule for ``/proc/<pid>`` with ``hidepid=``: a user sees its own.

* Over the Unix socket (the default listener) the kernel tells who connected (``SO_PEERCRED``):
  root, and the uids the policy names in ``see_all``, see everything; any other user sees only
  its own uid's execs and counts. The socket's mode (0600 by default: root only) says who may
  connect at all.
* Over TCP (only when asked for) a bearer token is required, as ``Authorization: Bearer <token>``
  or ``?token=<token>`` (all a browser's ``EventSource`` can send); whoever holds it sees
  everything. ``/metrics`` may be left open for a Prometheus scraper (``metrics_public``).
* Requests whose Host header is not one the server answers to are refused (DNS rebinding: a web
  page in a local browser must not read the stream through a name it controls).

The Unix peer's uid is read when hypercorn starts serving a connection and handed to the
application through a context variable: hypercorn gives an ASGI application no way to the
connection's socket, so :func:`install_peer_credentials` wraps its per-connection servers.
"""

from __future__ import annotations

import contextvars
import functools
import hmac
import os
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..redaction import DEFAULT, Redaction
from ._limits import SUBUID, admitted, owner_of

__all__ = ["AccessControl", "AccessPolicy", "Viewer", "install_peer_credentials", "new_token"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The uid of the Unix-socket peer of the connection being served (None: not a Unix socket).
_peer_uid: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "aiobpf_peer_uid", default=None
)

VIEWER_KEY = "aiobpf.viewer"


@attrs.frozen
class AccessPolicy:
    """What the service lets each peer see, and how many streams it may hold open.

    ``token`` is required over TCP (a generated one when None); ``see_all`` names uids that,
    like root, see every user's execs over the Unix socket; ``metrics_public`` serves
    ``/metrics`` over TCP without the token; ``max_clients`` and ``max_clients_per_user`` cap
    the open ``/events`` streams (429 beyond them), so that idle connections cannot pile up
    queues; ``max_connections`` and ``max_connections_per_user`` cap the connections open at
    once, counted as each is accepted, before anything is read from it (beyond them a new one
    is closed at once): in all, and per local user over the Unix socket. Root and ``see_all``
    over the socket count against none of these. A user's subordinate ids (``subordinate_ids``,
    ``/etc/subuid``; None: none) count as that user. ``redaction`` hides secrets in the argv
    every viewer is sent (:data:`aiobpf.redaction.DEFAULT`; ``NONE`` sends them as they are).
    """

    token: str | None = None
    see_all: frozenset[int] = frozenset()
    metrics_public: bool = False
    max_clients: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    max_clients_per_user: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    redaction: Redaction = DEFAULT
    max_connections: int = attrs.field(default=512, validator=attrs.validators.ge(1))
    max_connections_per_user: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    subordinate_ids: str | None = SUBUID

    def sees_all(self, uid: int) -> bool:
        """Whether the Unix peer ``uid`` sees everything: root, the user the service runs as
        (who can read what it serves anyway: a recording it replays, say), and ``see_all``."""
        return uid in (0, os.geteuid()) or uid in self.see_all


@attrs.frozen
class Viewer:
    """Who a request comes from: ``uid`` is the Unix peer's (None over TCP); ``sees_all`` says
    whether it may see every user's execs, or only ``uid``'s."""

    uid: int | None
    sees_all: bool
    user: int | None = None
    """The user whose quotas it counts against: the owner of a subordinate ``uid``
    (``/etc/subuid``), else ``uid``."""

    def may_see(self, uid: int) -> bool:
        return self.sees_all or uid == self.uid

    @property
    def name(self) -> str:
        """Whose quota an open stream counts against."""
        if self.uid is None:
            return "token"
        return f"uid {self.uid if self.user is None else self.user}"

    @property
    def exempt(self) -> bool:
        """Root, or a uid that sees everything, over the socket: not held to quotas."""
        return self.uid is not None and self.sees_all


def viewer_of(request: Request) -> Viewer | None:
    """The request's viewer, as :class:`AccessControl` found it (None: not behind it)."""
    viewer = request.scope.get(VIEWER_KEY)
    return viewer if isinstance(viewer, Viewer) else None


def new_token() -> str:
    """A bearer token: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


class AccessControl:
    """ASGI middleware that finds each request's :class:`Viewer` (or refuses it): from the Unix
    peer's credentials, or from the bearer token over TCP."""

    def __init__(
        self, app: ASGIApp, policy: AccessPolicy, transport: Literal["unix", "tcp"]
    ) -> None:
        if transport == "tcp" and not policy.token:
            raise ValueError("a TCP listener needs a token")
        self._app = app
        self._policy = policy
        self._transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        viewer = self._unix_viewer() if self._transport == "unix" else self._tcp_viewer(scope)
        if viewer is None:
            refusal = JSONResponse(
                {"error": "a bearer token is required (Authorization: Bearer, or ?token=)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await refusal(scope, receive, send)
            return
        scope[VIEWER_KEY] = viewer
        await self._app(scope, receive, send)

    def _unix_viewer(self) -> Viewer | None:
        uid = _peer_uid.get()
        if uid is None:
            return None
        return Viewer(
            uid=uid,
            sees_all=self._policy.sees_all(uid),
            user=owner_of(uid, self._policy.subordinate_ids),
        )

    def _tcp_viewer(self, scope: Scope) -> Viewer | None:
        request = Request(scope)
        given = request.query_params.get("token", "")
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        token = self._policy.token or ""
        if given and hmac.compare_digest(given.encode(), token.encode()):
            return Viewer(uid=None, sees_all=True)
        if self._policy.metrics_public and scope["path"].endswith("/metrics"):
            return Viewer(uid=None, sees_all=True)
        return None


def _peer_uid_of(sock: socket.socket | None) -> int | None:
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return int(uid)


async def _serve_counted(
    uid: int | None, serve: Callable[[], Awaitable[None]], refuse: Callable[[], Awaitable[None]]
) -> None:
    """Serves a connection from the Unix peer ``uid`` (None: not a Unix socket): its uid
    recorded for the application, counted against the serving service's connection caps
    (:mod:`._limits`), or refused at once when over them."""
    _peer_uid.set(uid)
    release = admitted(uid)
    if release is None:
        await refuse()
        return
    try:
        await serve()
    finally:
        release()


@functools.cache
def install_peer_credentials() -> None:
    """Makes hypercorn's per-connection servers (asyncio and, where trio is installed, trio)
    record the Unix peer's uid in the connection's context, which the application's tasks
    inherit. Once per process; other hypercorn servers in it only get a context variable set.
    The service's extra does not bring trio: hypercorn's trio server is patched only where
    trio can be imported (``aiobpf serve`` failed at start without it)."""
    import hypercorn.asyncio.run
    import hypercorn.asyncio.tcp_server

    class AsyncioConnection(hypercorn.asyncio.tcp_server.TCPServer):
        async def run(self) -> None:
            uid = _peer_uid_of(self.writer.get_extra_info("socket"))
            await _serve_counted(uid, super().run, self._refuse)

        async def _refuse(self) -> None:
            self.writer.close()

    # the name the run module looks its per-connection server up by
    hypercorn.asyncio.run.TCPServer = AsyncioConnection  # type: ignore[attr-defined]
    try:
        import hypercorn.trio.run
        import hypercorn.trio.tcp_server
    except ImportError:  # no trio: nothing can serve on it
        return

    class TrioConnection(hypercorn.trio.tcp_server.TCPServer):
        async def run(self) -> None:
            stream = getattr(self.stream, "transport_stream", self.stream)  # under TLS
            uid = _peer_uid_of(getattr(stream, "socket", None))
            await _serve_counted(uid, super().run, self.stream.aclose)

    hypercorn.trio.run.TCPServer = TrioConnection  # type: ignore[attr-defined]
