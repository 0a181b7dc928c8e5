"""Shared fixtures: every async test runs on asyncio (its own loop and uvloop's) and on trio;
kernel tests need BPF."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from aiobpf._defaults import BACKENDS

from . import kernel


def pytest_configure(config: pytest.Config) -> None:
    """Tests stop tools and examples with SIGINT, as Ctrl-C would. A shell that starts the suite
    in the background leaves SIGINT ignored, and an ignored signal stays ignored in every child
    (Python then installs no KeyboardInterrupt handler): give the children the default back."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs BPF (the ``bpf`` fixture) carries the ``kernel`` marker, so
    ``pytest -m "not kernel"`` runs the rest anywhere, without root."""
    for item in items:
        if "bpf" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(params=[pytest.param(backend, id=loop) for loop, backend in BACKENDS.items()])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """asyncio's own loop, uvloop's (the command's default), and trio."""
    backend: tuple[str, dict[str, Any]] = request.param
    return backend


@pytest.fixture
def bpf() -> Iterator[None]:
    """Skips (with the reason) where BPF programs cannot be loaded; CI sets
    AIOBPF_REQUIRE_KERNEL=1 so that there a missing kernel feature fails instead."""
    reason = kernel.unavailable_reason()
    if reason is not None:
        if os.environ.get("AIOBPF_REQUIRE_KERNEL") == "1":
            pytest.fail(f"kernel tests are required here but cannot run: {reason}")
        pytest.skip(reason)
    before = kernel.bpf_objects()
    yield
    after = kernel.bpf_objects()
    assert after == before, f"BPF objects left open by the test: before {before}, after {after}"
