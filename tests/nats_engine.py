"""The real NATS server the fleet tests publish to (see benchmarks/_nats_server.py)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from benchmarks._nats_server import NatsServer

__all__ = ["NatsServer", "nats_server_or_skip"]


def nats_server_or_skip(directory: Path, options: Sequence[str] = ()) -> NatsServer:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed: scripts/setup.sh test installs it")
    server = NatsServer(directory, options)
    server.start()
    return server
