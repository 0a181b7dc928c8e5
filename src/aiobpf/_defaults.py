"""Defaults the library and the ``aiobpf`` command share, kept where importing them is cheap."""

from __future__ import annotations

__all__ = ["DEFAULT_SOCKET"]

#: Where ``aiobpf serve`` listens when no port is given.
DEFAULT_SOCKET = "/run/aiobpf/aiobpf.sock"
