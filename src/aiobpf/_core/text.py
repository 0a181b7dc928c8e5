"""C strings the kernel wrote, as text."""

from __future__ import annotations

__all__ = ["c_string"]


def c_string(raw: bytes) -> str:
    """A C string field: up to its first NUL (what follows is not part of it), as UTF-8 with
    bytes that are not UTF-8 replaced (U+FFFD)."""
    return raw.partition(b"\0")[0].decode("utf-8", errors="replace")
