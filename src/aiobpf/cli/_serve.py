"""``aiobpf serve``: the HTTP service (an SSE stream of execs and exits, /top, /metrics, a
dashboard), optionally publishing every exec and exit to a NATS JetStream engine."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import anyio

from .._defaults import DEFAULT_SOCKET
from ..errors import AiobpfError
from . import _options as option
from ._running import Stop

if TYPE_CHECKING:
    from ..fleet import JetStreamSink

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    try:
        from ..service import AccessPolicy, serve
    except ImportError as exc:
        raise AiobpfError(
            f"aiobpf serve needs the service extra ({exc.name} is missing): "
            "pip install 'aiobpf[service]'"
        ) from exc
    access = AccessPolicy(
        token=_read_token(args.token_file) if args.token_file else None,
        see_all=frozenset(args.see_all or ()),
        metrics_public=args.metrics_without_token,
        max_clients=args.max_clients,
        max_clients_per_user=args.max_clients_per_user,
        redaction=option.redaction_of(args),
        max_connections=args.max_connections,
        max_connections_per_user=args.max_connections_per_user,
    )
    async with contextlib.AsyncExitStack() as held:
        sink = await held.enter_async_context(_sink(args)) if args.publish else None
        shutdown = anyio.Event()
        async with anyio.create_task_group() as server:
            run = functools.partial(
                serve,
                socket_path=args.socket,
                socket_mode=args.socket_mode,
                host=args.host,
                port=args.port,
                access=access,
                allowed_hosts=args.allowed_host or (),
                certfile=args.certfile,
                keyfile=args.keyfile,
                insecure=args.insecure,
                uids=args.uid,
                client_buffer=args.client_buffer,
                max_latency=args.max_latency,
                send_buffer=args.send_buffer,
                stalled_client_timeout=args.stalled_timeout,
                program_stats=args.program_stats,
                publish_to=sink,
                replay=args.replay,
                replay_speed=args.replay_speed,
                exits=not args.no_exits,
                shutdown=shutdown,
            )
            serving = await server.start(run)
            where = serving.url
            token_file = None
            if serving.token is not None and not args.token_file:
                # generated: told in a file only root reads, never in output (a journal or a
                # container's log keeps whatever a service prints)
                token_file = held.enter_context(_token_file(serving.token, serving.url))
                where += f" (token in {token_file}, readable by root only)"
            elif serving.url.startswith("unix:"):
                where += f" (mode {args.socket_mode:04o})"
            print(f"serving on {where} (Ctrl-C stops)", file=out, flush=True)
            if sink is not None:
                exits = f", exits to {sink.subjects['exit']}" if sink.subjects else ""
                print(
                    f"publishing to {sink.engine.shown}, subject {sink.subject}{exits}",
                    file=out,
                    flush=True,
                )
            try:
                with stop.running():
                    await anyio.sleep_forever()
            finally:
                stats = serving.hub.stats
                shutdown.set()  # the server shuts down gracefully, then detaches
    exits = (
        ""
        if stats.exits_received is None
        else f", {stats.exits_received} exits received, {stats.exits_dropped} lost in the kernel"
    )
    print(
        f"-- {stats.received} execs received, {stats.kernel_dropped} lost in the kernel{exits}, "
        f"{stats.user_dropped} lost by slow clients",
        file=out,
        flush=True,
    )
    if serving.publisher is not None:  # final: the sink has waited for the engine
        published = serving.publisher.stats
        print(
            f"-- {published.published} events published to "
            f"{serving.publisher.sink.engine.shown}, {published.dropped} dropped",
            file=out,
            flush=True,
        )


def _sink(args: argparse.Namespace) -> JetStreamSink:
    """The sink --publish names; credentials in its URL are refused (argv is every local
    user's to read, in /proc), and so is plain nats:// beyond this machine without
    --publish-insecure."""
    import urllib.parse

    from ..fleet import JetStreamSink, Node

    for server in args.publish.split(","):
        if urllib.parse.urlsplit(server.strip()).password is not None:
            raise AiobpfError(
                "a password in --publish is visible to every local user (ps, /proc): put the "
                "credentials in a file only root reads, --publish-credentials FILE"
            )

    node = Node()
    exits = (
        None
        if args.no_exits or args.replay
        else {"exit": args.exit_subject or node.subject("exit")}
    )
    return JetStreamSink(
        args.publish,
        credentials=args.publish_credentials,
        tls_ca=args.publish_ca,
        insecure=args.publish_insecure,
        subject=args.subject or node.subject("exec"),
        node=node,
        max_pending=args.publish_buffer,
        policy=args.publish_policy,
        redaction=option.redaction_of(args),
        subjects=exits,
    )


@contextlib.contextmanager
def _token_file(token: str, url: str) -> Iterator[Path]:
    """``token`` in ``/run/aiobpf/serve-<port>.token`` (mode 0600, in root's directory),
    removed when serving ends; one left by a service that died is replaced."""
    directory = _token_directory()
    port = url.rstrip("/").rsplit(":", 1)[1]
    path = directory / f"serve-{port}.token"
    try:
        directory.mkdir(mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise AiobpfError(f"cannot write the generated token to {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


def _token_directory() -> Path:
    """Root's: /run/aiobpf. Another user's (serving a replay): its runtime directory's
    aiobpf-<uid>, mode 0700."""
    if os.geteuid() == 0:
        return Path(DEFAULT_SOCKET).parent
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(runtime) / f"aiobpf-{os.geteuid()}"


def _replay_speed(text: str) -> float | None:
    if text == "max":
        return None
    return option.positive(text)


def _engine_urls(text: str) -> str:
    from ..fleet import Engine

    try:
        Engine.of(text, insecure=True)  # the form here; whether it may be in clear, later
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _read_token(path: str) -> str:
    """The token in ``path``, a file only its owner may read (it stands for root's view)."""
    try:
        mode = os.stat(path).st_mode
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise AiobpfError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise AiobpfError(
            f"the token file {path} is readable by others (mode {mode & 0o777:04o}): chmod 600 it"
        )
    if not token:
        raise AiobpfError(f"the token file {path} is empty")
    return token


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web = tools.add_parser(
        "serve", help="HTTP service: SSE event stream, /top, /metrics, a dashboard"
    )
    web.add_argument(
        "--socket",
        default=DEFAULT_SOCKET,
        help=f"Unix socket to listen on, unless --port is given ({DEFAULT_SOCKET})",
    )
    web.add_argument(
        "--socket-mode",
        type=option.file_mode,
        default=0o600,
        help="who may connect to the socket (0600: root; 0666: every local user, each seeing "
        "its own execs)",
    )
    web.add_argument(
        "--see-all",
        type=option.uid,
        action="append",
        help="a uid that, like root, sees every user's execs over the socket (repeatable)",
    )
    web.add_argument("--port", type=int, help="listen on TCP instead, with a bearer token")
    web.add_argument("--host", default="127.0.0.1", help="TCP address to bind (127.0.0.1)")
    web.add_argument(
        "--token-file",
        help="file holding the bearer token, mode 0600 (default: a new token, printed at start)",
    )
    web.add_argument(
        "--metrics-without-token",
        action="store_true",
        help="serve /metrics over TCP without the token (for a Prometheus scraper)",
    )
    web.add_argument(
        "--allowed-host",
        action="append",
        help="a Host header name to answer besides --host and the loopback names (repeatable)",
    )
    web.add_argument("--certfile", help="TLS certificate (PEM), with --keyfile")
    web.add_argument("--keyfile", help="TLS private key (PEM), with --certfile")
    web.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS: every user's commands in clear",
    )
    web.add_argument(
        "--max-clients", type=option.count, default=64, help="open /events streams at most (64)"
    )
    web.add_argument(
        "--max-clients-per-user",
        type=option.count,
        default=8,
        help="open /events streams per user (or per token) at most (8)",
    )
    web.add_argument(
        "--max-connections",
        type=option.count,
        default=512,
        help="connections open at once, counted before any request is read (512); a new one "
        "beyond it is closed",
    )
    web.add_argument(
        "--max-connections-per-user",
        type=option.count,
        default=32,
        help="connections one local user may hold open over the socket (32; its /etc/subuid "
        "ids count as that user; root and --see-all are not counted)",
    )
    web.add_argument(
        "--uid",
        type=option.uid,
        action="append",
        help="serve only this user's execs (repeatable; in the kernel)",
    )
    web.add_argument(
        "--client-buffer",
        type=option.count,
        default=1024,
        help="events queued per client before it loses some (1024)",
    )
    web.add_argument(
        "--max-latency",
        type=option.latency,
        default="auto",
        help="latency budget of the kernel source, seconds (less CPU under exec storms); "
        "auto (default): 4 ms while 750 execs/s or more come, else at once",
    )
    web.add_argument(
        "--send-buffer",
        type=option.count,
        default=None,
        help="kernel socket buffer per client, bytes (default: the kernel sizes it)",
    )
    web.add_argument(
        "--program-stats",
        action="store_true",
        help="/metrics counts what the service's BPF programs cost the kernel "
        "(aiobpf_program_runs_total, aiobpf_program_run_seconds_total); turns the kernel's run "
        "statistics on for every program on the host while it serves",
    )
    web.add_argument(
        "--stalled-timeout",
        type=option.positive,
        default=60.0,
        help="disconnect a client that reads nothing for this long, seconds (60)",
    )
    web.add_argument(
        "--publish",
        metavar="URL",
        type=_engine_urls,
        help="also publish every exec and exit to this NATS JetStream engine (nats://HOST:PORT, "
        "or several of a cluster, comma-separated); whoever reads its stream sees every user's "
        "commands",
    )
    web.add_argument(
        "--publish-credentials",
        metavar="FILE",
        help="the engine's credentials, in a file only root reads (mode 0600): a token, "
        "user:password, or a NATS .creds file",
    )
    web.add_argument(
        "--publish-ca",
        metavar="FILE",
        help="the authority that signed the engine's TLS certificates (with tls:// URLs)",
    )
    web.add_argument(
        "--publish-insecure",
        action="store_true",
        help="allow plain nats:// to an engine beyond this machine: every user's commands in clear",
    )
    web.add_argument(
        "--subject",
        help="the subject to publish execs on (aiobpf.<hostname>.exec); the stream AIOBPF, "
        "over aiobpf.>, is made if no stream holds the subject",
    )
    web.add_argument(
        "--exit-subject",
        help="the subject to publish exits on (aiobpf.<hostname>.exit), in the same stream",
    )
    web.add_argument(
        "--no-exits",
        action="store_true",
        help="read no process exits: the stream, /top, the dashboard and the engine get execs only",
    )
    web.add_argument(
        "--publish-buffer",
        type=option.count,
        default=65536,
        help="events kept while the engine is slow or away, then dropped and counted (65536)",
    )
    web.add_argument(
        "--publish-policy",
        choices=["drop_oldest", "drop_newest"],
        default="drop_oldest",
        help="which events give when the buffer is full (drop_oldest)",
    )
    web.add_argument(
        "--replay",
        metavar="FILE",
        help="serve this recording (execsnoop --json) instead of the kernel's events: no root "
        "needed (give --socket in a directory of yours, or --port); it plays from when the "
        "first client subscribes to /events",
    )
    web.add_argument(
        "--replay-speed",
        type=_replay_speed,
        default=1.0,
        help="how fast the recording plays: 1 its recorded pace, 10 ten times faster, max at once",
    )
    option.add_redaction(web)
    option.add_duration(web)
    web.set_defaults(run=run)
