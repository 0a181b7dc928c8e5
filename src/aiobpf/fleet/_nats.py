"""The NATS client (nats-py), imported when first needed and used on asyncio only.

nats-py is the maintained Python client of NATS and speaks asyncio only; aiobpf uses it rather
than a protocol of its own, and says so clearly (:class:`aiobpf.AsyncioOnlyError`) when it is
called under trio.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import anyio
import attrs

from ..errors import AsyncioOnlyError, InsecureEngineError, NatsMissingError, StreamEngineError

__all__ = [
    "ELECTION_TIMEOUT",
    "RETRY_WAIT",
    "Engine",
    "close_quietly",
    "connect",
    "nats_module",
    "require_asyncio",
    "through_elections",
]

#: How long a call is tried again while a cluster elects its leaders (a node just went, or the
#: cluster just started): time-outs and 503s meanwhile; every RETRY_WAIT seconds.
ELECTION_TIMEOUT = 30.0
RETRY_WAIT = 0.25

#: How long the first connection may take before the engine counts as unreachable (nats-py
#: itself would try forever).
CONNECT_TIMEOUT = 5.0

#: Between two attempts to reconnect, once connected: nats-py retries forever at this pace.
RECONNECT_WAIT = 0.25


def nats_module() -> ModuleType:
    try:
        import nats
        import nats.errors
        import nats.js.errors
    except ImportError as exc:
        raise NatsMissingError(
            "the NATS client is not installed: pip install 'aiobpf[nats]' (nats-py)"
        ) from exc
    return nats


def require_asyncio(what: str) -> None:
    """Raises :class:`aiobpf.AsyncioOnlyError` unless an asyncio loop runs this task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise AsyncioOnlyError(
            f"{what} runs on asyncio only: nats-py, the NATS client it is built on, has no "
            "trio support. Run this part under anyio's asyncio backend (another process may "
            "run the rest on trio)"
        ) from None


_SCHEMES = {"nats": False, "tls": True, "ws": False, "wss": True}  # scheme: encrypted


@attrs.frozen
class Engine:
    """Where a stream engine is and how to reach it: its ``servers`` (one URL or several, of
    one cluster: nats-py tries the others, and those the cluster announces, when one goes),
    ``credentials`` (a file only its owner reads: a token, ``user:password``, or a NATS
    ``.creds`` file; never in a URL, which ``ps`` shows every local user), ``tls_ca`` (the
    authority that signed the servers' certificates; ``tls://`` alone trusts the system's).

    :meth:`of` checks everything at the call: a malformed URL list is a :class:`ValueError`;
    plain ``nats://`` to a server beyond this machine, whose every message carries every
    user's commands in clear, is :class:`aiobpf.InsecureEngineError` unless ``insecure``."""

    servers: tuple[str, ...]
    credentials: Path | None = None
    tls_ca: Path | None = None

    @classmethod
    def of(
        cls,
        url: str | Sequence[str],
        *,
        credentials: str | os.PathLike[str] | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        insecure: bool = False,
    ) -> Engine:
        servers = tuple(part.strip() for part in (url.split(",") if isinstance(url, str) else url))
        if not servers or not all(servers):
            raise ValueError(f"engine URLs must be nats://HOST:PORT, comma-separated; got {url!r}")
        for server in servers:
            parsed = urllib.parse.urlsplit(server)
            if parsed.scheme not in _SCHEMES or not parsed.hostname:
                raise ValueError(
                    f"an engine URL must be nats://HOST:PORT (or tls://, ws://, wss://); got "
                    f"{_shown(server)!r}"
                )
            encrypted = _SCHEMES[parsed.scheme] or tls_ca is not None
            if not (encrypted or insecure or _is_loopback(parsed.hostname)):
                raise InsecureEngineError(
                    f"{_shown(server)} is beyond this machine and nats:// is in clear: use "
                    "tls:// (with tls_ca=, --publish-ca, for a private authority), or say "
                    "insecure=True (--publish-insecure) to send every user's commands in clear"
                )
        return cls(
            servers,
            Path(credentials) if credentials is not None else None,
            Path(tls_ca) if tls_ca is not None else None,
        )

    @property
    def shown(self) -> str:
        """The servers as messages and output name them: any password in a URL hidden."""
        return ",".join(_shown(server) for server in self.servers)

    def options(self) -> dict[str, Any]:
        """nats-py's connect options for the credentials and TLS."""
        options: dict[str, Any] = {}
        if self.tls_ca is not None:
            options["tls"] = ssl.create_default_context(cafile=str(self.tls_ca))
        if self.credentials is None:
            return options
        path = self.credentials
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip() if path.suffix != ".creds" else ""
        except OSError as exc:
            raise StreamEngineError(f"cannot read the credentials {path}: {exc.strerror}") from exc
        if mode & 0o077:
            raise StreamEngineError(
                f"the credentials {path} are readable by others (mode {mode & 0o777:04o}): "
                "chmod 600 it"
            )
        if path.suffix == ".creds":
            options["user_credentials"] = str(path)
        elif ":" in text:
            options["user"], options["password"] = text.split(":", 1)
        elif text:
            options["token"] = text
        else:
            raise StreamEngineError(f"the credentials file {path} is empty")
        return options


def _shown(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None and parsed.username is None:
        return url
    host = parsed.hostname or ""
    if parsed.port is not None:
        host += f":{parsed.port}"
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"***@{host}"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def connect(
    engine: Engine,
    *,
    name: str,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> Any:
    """A client connected to ``engine``, which reconnects on its own (to any of its servers)
    for as long as it lives; :class:`aiobpf.StreamEngineError` if the first connection fails
    (naming the servers, their passwords hidden)."""
    nats = nats_module()
    options = engine.options()
    client = nats.NATS()

    async def quiet(_exc: Exception) -> None:  # nats-py logs every failed attempt otherwise
        pass

    try:
        with anyio.fail_after(connect_timeout):
            await client.connect(
                servers=list(engine.servers),
                name=name,
                connect_timeout=2,
                reconnect_time_wait=RECONNECT_WAIT,
                max_reconnect_attempts=-1,
                error_cb=on_error or quiet,
                disconnected_cb=on_disconnect,
                **options,
            )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with anyio.CancelScope(shield=True):
            await close_quietly(client)
        reason = _shown(str(exc)) if str(exc) else type(exc).__name__
        raise StreamEngineError(
            f"cannot reach the stream engine at {engine.shown}: {reason}"
        ) from exc
    return client


async def close_quietly(client: Any) -> None:
    """Closes ``client``; a connection the engine already dropped has nothing left to close."""
    try:
        await client.close()
    except (OSError, nats_module().errors.Error):
        pass


T = TypeVar("T")


async def through_elections(
    call: Callable[[], Awaitable[T]], on_retry: Callable[[], None] | None = None
) -> T:
    """``call()``, tried again while the engine elects its leaders: a JetStream call then times
    out or answers 503 for a while (a cluster that just started, or just lost a node). Other
    errors come at once (a server with no JetStream has no responder at all); the last
    time-out after ELECTION_TIMEOUT."""
    nats = nats_module()
    give_up = anyio.current_time() + ELECTION_TIMEOUT
    while True:
        try:
            return await call()
        except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
            if anyio.current_time() >= give_up:
                raise
            if on_retry is not None:
                on_retry()
            await anyio.sleep(RETRY_WAIT)  # a backoff between tries, not synchronisation
