"""A live exec event service: aiobpf embedded in an async web service.

One :class:`EventHub` attaches the kernel sources once (``execve_events`` and the per-uid
counting map) and fans events out to subscribers, each behind its own bounded queue: a slow
client loses events (counted, and told with an SSE ``lost`` event), never blocks the others or
the kernel reader. :func:`create_app` serves it over HTTP (Starlette); :func:`serve` runs it
with hypercorn on asyncio or trio, by default on a root-only Unix socket.

What each client sees is decided by :mod:`aiobpf.service.access`: over the Unix socket the
kernel says who connected, and a user other than root sees only its own execs; over TCP a bearer
token is required.

The parts: :mod:`.hub` (the kernel sources and subscribers), :mod:`.access` (who may see what),
:mod:`.app` (the routes), :mod:`.server` (listening and serving).
"""

from __future__ import annotations

from .access import AccessControl, AccessPolicy, Viewer
from .app import create_app
from .hub import EventHub, Subscriber
from .server import DEFAULT_SOCKET, Serving, serve

__all__ = [
    "DEFAULT_SOCKET",
    "AccessControl",
    "AccessPolicy",
    "EventHub",
    "Serving",
    "Subscriber",
    "Viewer",
    "create_app",
    "serve",
]
