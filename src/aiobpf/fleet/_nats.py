"""The NATS client (nats-py), imported when first needed and used on asyncio only.

nats-py is the maintained Python client of NATS and speaks asyncio only; aiobpf uses it rather
than a protocol of its own, and says so clearly (:class:`aiobpf.AsyncioOnlyError`) when it is
called under trio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import anyio

from ..errors import AsyncioOnlyError, NatsMissingError, StreamEngineError

__all__ = ["close_quietly", "connect", "nats_module", "require_asyncio"]

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


async def connect(
    url: str,
    *,
    name: str,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_error: Callable[[Exception], Awaitable[None]] | None = None,
) -> Any:
    """A client connected to ``url``, which reconnects on its own for as long as it lives;
    :class:`aiobpf.StreamEngineError` if the first connection fails."""
    nats = nats_module()
    client = nats.NATS()

    async def quiet(_exc: Exception) -> None:  # nats-py logs every failed attempt otherwise
        pass

    try:
        with anyio.fail_after(connect_timeout):
            await client.connect(
                servers=[url],
                name=name,
                connect_timeout=2,
                reconnect_time_wait=RECONNECT_WAIT,
                max_reconnect_attempts=-1,
                error_cb=on_error or quiet,
                disconnected_cb=on_disconnect,
            )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with anyio.CancelScope(shield=True):
            await close_quietly(client)
        raise StreamEngineError(
            f"cannot reach the stream engine at {url}: {exc or type(exc).__name__}"
        ) from exc
    return client


async def close_quietly(client: Any) -> None:
    """Closes ``client``; a connection the engine already dropped has nothing left to close."""
    try:
        await client.close()
    except (OSError, nats_module().errors.Error):
        pass
