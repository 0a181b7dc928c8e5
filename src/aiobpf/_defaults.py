"""Defaults the library and the ``aiobpf`` command share, kept where importing them is cheap."""

from __future__ import annotations

from typing import Any

__all__ = ["BACKENDS", "DEFAULT_SOCKET"]

#: Where ``aiobpf serve`` listens when no port is given.
DEFAULT_SOCKET = "/run/aiobpf/aiobpf.sock"

#: The event loops by name (the command's ``--backend``, the tests' and the benchmarks' loops,
#: in this order), as anyio's backend and its options. uvloop is the command's default: a
#: wake-up costs it about a quarter less CPU than asyncio's own loop, most of what a read costs
#: at a thousand events a second (benchmarks/RESULTS.md, "What a wake-up costs").
BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}
