"""aiobpf inside your own async web service: copy this file and grow it.

    sudo .venv/bin/python examples/service.py [--socket PATH | --port 8000] [--alert-comm NAME]

aiobpf's routes (/events, /top, /stats, /metrics and the dashboard) are mounted under /aiobpf/,
next to a route of this service, GET /uids/{uid}, which like aiobpf's own shows a user only what
it may see. A task of the service subscribes to the same hub as the HTTP clients and prints a
line whenever a watched program runs. It listens on a root-only Unix socket, or with --port on
TCP with the token in --token-file (a file only its owner reads: a token printed would stay in
every log); the execve programs attach once, at start-up; SIGINT or SIGTERM stop the service
with everything detached.
"""

from __future__ import annotations

import argparse
import functools
import signal
from pathlib import Path

import anyio
import anyio.abc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from aiobpf import ExecveEvent
from aiobpf.service import (
    DEFAULT_SOCKET,
    AccessPolicy,
    EventHub,
    create_app,
    serve,
    viewer_of,
)


def application(hub: EventHub) -> Starlette:
    async def execs_of(request: Request) -> JSONResponse:
        uid = request.path_params["uid"]
        viewer = viewer_of(request)  # who asks: aiobpf's access control says
        if viewer is None or not viewer.may_see(uid):
            return JSONResponse({"error": "not yours to see"}, status_code=403)
        return JSONResponse({"uid": uid, "execve": hub.top().get(uid, 0)})

    return Starlette(
        routes=[Route("/uids/{uid:int}", execs_of), Mount("/aiobpf", app=create_app(hub))]
    )


async def alert_on(
    hub: EventHub, comm: str, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    # execs only (a hub also hands out exits); the kernel passes this comm through for us
    with hub.subscribe(comm=comm, kinds={"exec"}) as watched:
        task_status.started()  # subscribed: from here on, every exec of it is seen
        async for event in watched.receive:
            if isinstance(event, ExecveEvent):  # always, with kinds={"exec"}: for the types
                print(f"alert: uid {event.uid} ran {event.filename} (pid {event.pid})", flush=True)


async def main(
    socket_path: str, port: int | None, token: str | None, alert_comms: list[str]
) -> None:
    access = AccessPolicy(token=token)  # None: a new one, in serving.token
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        listen = functools.partial(
            serve, socket_path=socket_path, port=port, access=access, app=application
        )
        serving = await tasks.start(functools.partial(listen, shutdown=stop))
        async with anyio.create_task_group() as watchers:
            for comm in alert_comms:
                await watchers.start(alert_on, serving.hub, comm)
            print(f"serving on {serving.url} (Ctrl-C stops)", flush=True)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            watchers.cancel_scope.cancel()
        stop.set()  # the server finishes its requests, then the programs detach


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="aiobpf embedded in a Starlette service")
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="Unix socket to listen on")
    parser.add_argument("--port", type=int, help="listen on TCP 127.0.0.1 instead, with a token")
    parser.add_argument("--token-file", help="the token TCP clients present (mode 0600)")
    parser.add_argument("--alert-comm", action="append", default=[], help="watch this program")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    anyio.run(main, args.socket, args.port, token, args.alert_comm, backend=args.backend)
