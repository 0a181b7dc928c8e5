"""Argument checks: each message names the argument, what is expected, and the value given."""

from __future__ import annotations

import mmap

__all__ = ["ring_pages"]


def ring_pages(ring_size: int) -> int:
    """Pages for a ring of ``ring_size`` bytes; ValueError unless a power-of-two page count."""
    page = mmap.PAGESIZE
    if (
        not isinstance(ring_size, int)
        or ring_size < page
        or ring_size % page
        or (ring_size // page) & (ring_size // page - 1)
    ):
        raise ValueError(
            f"ring_size must be a power of two number of bytes, at least one page ({page}), "
            f"got {ring_size!r}"
        )
    return ring_size // page
