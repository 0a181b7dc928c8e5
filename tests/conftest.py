"""Shared fixtures: every async test runs on asyncio and on trio; kernel tests need BPF."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from . import kernel


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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
