"""A live exec event service: aiobpf embedded in an async web service.

One :class:`EventHub` attaches the kernel sources once (``execve_events`` and the per-uid
counting map) and fans events out to subscribers, each behind its own bounded queue: a slow
client loses events (counted, and told with an SSE ``lost`` event), never blocks the others or
the kernel reader. :func:`create_app` serves it over HTTP (Starlette); :func:`serve` runs it
with hypercorn on asyncio or trio, by default on a root-only Unix socket.

What each client sees is decided by an :class:`AccessPolicy`: over the Unix socket the kernel
says who connected, and a user other than root sees only its own execs; over TCP a bearer token
is required. A route of your own asks :func:`viewer_of` who is asking.

The parts: ``_hub.py`` (the kernel sources and subscribers), ``_access.py`` (who may see
what), ``_app.py`` (the routes), ``_server.py`` (listening and serving).
"""

from __future__ import annotations

from ._access import AccessControl, AccessPolicy, Viewer, viewer_of
from ._app import create_app
from ._hub import EventHub, HubStats, Subscriber
from ._metrics import ProgramCostMetrics, StreamMetrics
from ._server import DEFAULT_SOCKET, Serving, serve

__all__ = [
    "DEFAULT_SOCKET",
    "AccessControl",
    "AccessPolicy",
    "EventHub",
    "HubStats",
    "ProgramCostMetrics",
    "Serving",
    "StreamMetrics",
    "Subscriber",
    "Viewer",
    "create_app",
    "serve",
    "viewer_of",
]
