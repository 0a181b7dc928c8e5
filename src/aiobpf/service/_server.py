"""Serving the application: the listener, hypercorn on asyncio or trio, and shutdown.

Who can connect is decided here, before anything is attached:

* by default a Unix socket (``/run/aiobpf/aiobpf.sock``, mode 0600: root only; a wider mode,
  such as 0666, lets local users in, each seeing its own execs, see
  :class:`aiobpf.service.AccessPolicy`);
* TCP only when a port is given, and then with a bearer token; beyond the loopback addresses
  only with TLS (a certificate and key), or with ``insecure=True`` said out loud.

An address or socket already in use is a :class:`~aiobpf.ListenError` before the programs are
compiled or attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, cast

import anyio
import anyio.abc
import attrs
import sniffio
from prometheus_client.registry import Collector
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .._core.validate import MaxLatency
from .._defaults import DEFAULT_SOCKET
from ..errors import InsecureListenerError, ListenError
from ..fleet import JetStreamSink
from ..sources import enable_program_stats
from ._access import AccessControl, AccessPolicy, install_peer_credentials, new_token
from ._app import create_app
from ._hub import EventHub
from ._limits import ConnectionLimits, connection_limits
from ._metrics import ProgramCostMetrics
from ._publish import HubPublisher

__all__ = ["DEFAULT_SOCKET", "Serving", "serve"]

_log = logging.getLogger(__name__)


@attrs.frozen
class Serving:
    """A running service, as :func:`serve` reports it once it listens: the ``hub``, the
    ``url`` it answers on (``unix:<path>`` for the Unix socket) and, over TCP, the ``token``
    clients must send."""

    hub: EventHub
    url: str
    token: str | None
    publisher: HubPublisher | None = None
    """What publishes the events to a stream engine (``publish_to``), and its counts."""


async def serve(
    *,
    socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
    socket_mode: int = 0o600,
    host: str = "127.0.0.1",
    port: int | None = None,
    access: AccessPolicy | None = None,
    allowed_hosts: Iterable[str] = (),
    certfile: str | None = None,
    keyfile: str | None = None,
    insecure: bool = False,
    uids: Iterable[int] | None = None,
    client_buffer: int = 1024,
    max_latency: MaxLatency = "auto",
    replay: str | os.PathLike[str] | None = None,
    replay_speed: float | None = 1.0,
    send_buffer: int | None = None,
    stalled_client_timeout: float = 60.0,
    app: Callable[[EventHub], Any] | None = None,
    collectors: Iterable[Collector] = (),
    program_stats: bool = False,
    publish_to: JetStreamSink | None = None,
    exits: bool = True,
    shutdown: anyio.Event | None = None,
    task_status: anyio.abc.TaskStatus[Serving] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves ``app(hub)`` (aiobpf's own application by default) until ``shutdown`` is set, or
    forever, then detaches everything. Stopping (``shutdown``, or a cancel) ends the event
    streams first: clients see them end, and the server need not wait for their connections.

    Listens on the Unix socket ``socket_path`` (created with ``socket_mode``), or, when
    ``port`` is given, on TCP ``host:port`` with the bearer token of ``access`` (a new one
    when it has none, reported in :class:`Serving`). ``access`` also says which uids besides
    root see everything over the socket, whether ``/metrics`` is open over TCP, and how many
    event streams may be open. Over TCP, a Host header other than ``host``, the loopback names
    and ``allowed_hosts`` is refused (DNS rebinding); a ``host`` beyond the loopback needs
    ``certfile`` and ``keyfile`` (TLS) unless ``insecure``.

    Started with ``task_group.start(serve, ...)``, it reports a :class:`Serving` once the
    programs are attached and the socket listens (connections made from then on wait in its
    backlog).

    ``replay``: serve a recording (:func:`aiobpf.replay`) instead of the kernel's events,
    with no privileges needed: it plays, at ``replay_speed``, from when the first client
    subscribes to ``/events`` (see :class:`EventHub`).

    ``collectors`` are Prometheus collectors of your own (a :class:`StreamMetrics` of any
    pipeline, say) that ``/metrics`` serves beside aiobpf's, behind the same access control.

    ``program_stats``: the kernel counts every BPF program's runs and run time while the
    service runs (:func:`aiobpf.enable_program_stats`, host-wide), and ``/metrics`` carries
    its programs' (:class:`ProgramCostMetrics`).

    ``exits``: processes' ends are served too (SSE ``exit`` events, exits and failures per
    uid on ``/top`` and ``/metrics``, the dashboard), from a program of their own.

    ``publish_to``, a :class:`aiobpf.fleet.JetStreamSink` the caller entered, receives every
    exec the service sees, and every exit where the sink has a subject for "exit" items
    (asyncio only); ``/metrics`` counts what became of them (``aiobpf_publish_*``); whoever
    may read the engine's stream sees every user's commands.

    ``max_latency`` is the kernel source's latency budget (see :meth:`aiobpf.RingBuffer.from_bcc`):
    a service on every node can trade a few milliseconds of latency for far less CPU under exec
    storms.

    What a slow client may hold: ``client_buffer`` events in its queue, then what the kernel
    keeps for its connection: ``send_buffer`` bytes (``SO_SNDBUF``; None lets the kernel size
    it), after which its events are dropped and counted. A TCP client that takes nothing at all
    for ``stalled_client_timeout`` seconds is disconnected (``TCP_USER_TIMEOUT``), which also
    bounds how long a shutdown waits for it: hypercorn's trio server cannot interrupt a send to
    a client that does not read.

    Raises :class:`~aiobpf.ListenError` when it cannot listen (before attaching anything),
    :class:`~aiobpf.InsecureListenerError` for a non-loopback ``host`` without TLS, and what
    :meth:`aiobpf.lowlevel.Program.compile` raises.
    """
    from hypercorn.config import Config

    policy = access or AccessPolicy()
    transport: Literal["unix", "tcp"] = "unix" if port is None else "tcp"
    tls = certfile is not None and keyfile is not None
    if transport == "tcp":
        if not (tls or insecure or _is_loopback(host)):
            raise InsecureListenerError(
                f"{host} is reachable beyond this machine: give a certificate and key (TLS), "
                "or say insecure=True (--insecure) to send every user's commands in clear"
            )
        if policy.token is None:
            policy = attrs.evolve(policy, token=new_token())
    install_peer_credentials()
    config = Config()
    config.accesslog = None
    if tls:
        config.certfile, config.keyfile = certfile, keyfile
    stop = shutdown if shutdown is not None else anyio.Event()
    user_timeout_ms = max(1, round(stalled_client_timeout * 1000))
    with contextlib.ExitStack() as listening:
        if transport == "unix":
            listener = listening.enter_context(
                _unix_listener(Path(socket_path), socket_mode, config.backlog, send_buffer)
            )
            url = f"unix:{socket_path}"
        else:
            assert port is not None
            listener = listening.enter_context(
                _tcp_listener(host, port, config.backlog, send_buffer, user_timeout_ms)
            )
            bound_port = listener.getsockname()[1]
            scheme = "https" if tls else "http"
            url = f"{scheme}://{_url_host(host)}:{bound_port}/"
        publisher = HubPublisher(publish_to) if publish_to is not None else None  # checks it
        if publisher is not None:
            collectors = [*collectors, publisher]
        hub_of = functools.partial(
            EventHub,
            uids=uids,
            client_buffer=client_buffer,
            max_latency=max_latency,
            replay=replay,
            replay_speed=replay_speed,
            exits=exits,
        )
        if program_stats:
            listening.enter_context(enable_program_stats())
        limits = ConnectionLimits(
            policy.max_connections,
            policy.max_connections_per_user,
            exempt=policy.sees_all if transport == "unix" else _nobody,
            subuid=policy.subordinate_ids,
        )  # fmt: skip
        collectors = [*collectors, limits]
        async with hub_of() as hub:
            if program_stats:
                collectors = [*collectors, ProgramCostMetrics(hub.kernel_sources)]
            application: Any = (
                app(hub) if app is not None else create_app(hub, policy, collectors=collectors)
            )
            application = AccessControl(application, policy, transport)
            if transport == "tcp":
                names = {host, "localhost", "127.0.0.1", "::1", *allowed_hosts}
                if not _is_loopback(host):
                    names |= {socket.gethostname(), socket.getfqdn()}
                application = TrustedHostMiddleware(application, allowed_hosts=_host_forms(names))
            stopping = anyio.Event()  # hypercorn's trigger: set on a stop, and on a cancel
            on_trio = sniffio.current_async_library() == "trio"
            if on_trio:
                from hypercorn.trio import serve as hypercorn_serve

                timed_out: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
            else:
                from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]

                timed_out = _timed_out_clients_are_not_loop_errors()
            # hypercorn's connection tasks inherit it (see install_peer_credentials)
            counting = connection_limits.set(limits)
            with timed_out, contextlib.ExitStack() as counted:
                counted.callback(connection_limits.reset, counting)
                # hypercorn takes ownership of the descriptor it is given: a duplicate of ours
                config.bind = [f"fd://{os.dup(listener.fileno())}"]
                async with anyio.create_task_group() as tasks:
                    # Starlette is an ASGI app; hypercorn's annotation spells ASGI out more
                    # narrowly
                    run = functools.partial(
                        hypercorn_serve,
                        cast(Any, application),
                        config,
                        shutdown_trigger=stopping.wait,
                    )
                    if on_trio:  # trio's server ends cleanly on a cancel
                        tasks.start_soon(run)
                    else:
                        tasks.start_soon(_until_triggered, run)
                    if publisher is not None:
                        tasks.start_soon(publisher.run, hub)
                    task_status.started(
                        Serving(hub=hub, url=url, token=policy.token, publisher=publisher)
                    )
                    try:
                        await stop.wait()
                    finally:
                        # every subscription ends, the publisher's too (what its queue holds
                        # still goes out), and event streams with their connections
                        hub.finish()
                        stopping.set()


async def _until_triggered(run: Callable[[], Awaitable[None]]) -> None:
    """Runs hypercorn's asyncio server until its shutdown trigger, a cancel of the service
    included. Cancelled, it stops too, but a cancel that comes again while it waits for its
    connections to end (anyio delivers one on every loop iteration until the task ends) makes it
    raise ``InvalidStateError`` (hypercorn#184): the service then exited with that error."""
    with anyio.CancelScope(shield=True):
        await run()


def _nobody(_uid: int) -> bool:
    return False


def _host_forms(names: Iterable[str]) -> list[str]:
    """The names as a Host header carries them: an IPv6 address in brackets (``[::1]``), which
    is how Starlette compares it (the bare form alone answered 400 to every request)."""
    forms = set()
    for name in names:
        forms.add(name)
        try:
            if ipaddress.ip_address(name.strip("[]")).version == 6:
                forms.add(f"[{name.strip('[]')}]")
        except ValueError:
            pass  # a name, not an address
    return sorted(forms)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


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


@contextlib.contextmanager
def _tcp_listener(
    host: str, port: int, backlog: int, send_buffer: int | None, user_timeout_ms: int
) -> Iterator[socket.socket]:
    """A socket listening before the server starts, so that being started means listening.
    Accepted connections inherit its options: no Nagle delay, the send buffer, the timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
        if send_buffer is not None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        _listen(listener, (host.strip("[]"), port), backlog, f"{_url_host(host)}:{port}")
        yield listener


@contextlib.contextmanager
def _unix_listener(
    path: Path, mode: int, backlog: int, send_buffer: int | None
) -> Iterator[socket.socket]:
    """A Unix socket at ``path`` with ``mode`` (never wider while it is created), removed on
    the way out. A socket file nobody answers on (left by a process that died) is replaced; one
    that answers is in use."""
    _socket_directory(path.parent)
    _remove_stale_socket(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        if send_buffer is not None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        umask = os.umask(0o777 & ~mode)
        try:
            _listen(listener, str(path), backlog, str(path))
        finally:
            os.umask(umask)
        try:
            os.chmod(path, mode)
            yield listener
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _socket_directory(directory: Path) -> None:
    """Makes the default socket's directory (``/run/aiobpf``, one level, under a ``/run``
    that exists); any other directory must exist already. Run as root, creating whatever
    path an argument names would make directories (owned by root) wherever a typo points."""
    if directory == Path(DEFAULT_SOCKET).parent:
        try:
            directory.mkdir(mode=0o755, exist_ok=True)
        except OSError as exc:
            raise ListenError(f"cannot create {directory} for the socket: {exc.strerror}") from exc
    elif not directory.is_dir():
        raise ListenError(
            f"cannot listen on {directory}/...: {directory} is not a directory that exists "
            "(aiobpf creates only the default socket's directory)"
        )


def _remove_stale_socket(path: Path) -> None:
    try:
        if not stat.S_ISSOCK(path.stat().st_mode):
            raise ListenError(f"{path} exists and is not a socket")
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()  # nobody listens: left behind by a process that is gone
            return
    raise ListenError(f"{path} is in use: another aiobpf serve (or program) listens on it")


def _listen(listener: socket.socket, address: Any, backlog: int, shown: str) -> None:
    try:
        listener.bind(address)
        listener.listen(backlog)
    except OSError as exc:
        reason = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ListenError(f"cannot listen on {shown}: {reason}") from exc
