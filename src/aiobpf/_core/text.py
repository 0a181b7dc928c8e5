"""C strings the kernel wrote, as text."""

from __future__ import annotations

__all__ = ["c_string", "c_strings"]


def c_string(raw: bytes) -> str:
    """A C string field: up to its first NUL (what follows is not part of it), as UTF-8 with
    bytes that are not UTF-8 replaced (U+FFFD)."""
    return raw.partition(b"\0")[0].decode("utf-8", errors="replace")


#: The texts of fields seen lately, by their bytes: a batch's names repeat (the same commands
#: and paths run again and again), and a dictionary look-up costs a third of a decode.
_SEEN: dict[bytes, str] = {}

#: Past this many texts the cache starts again: it holds what repeats now, bounded whatever
#: the kernel sends (each key is a field of at most a few hundred bytes).
_SEEN_MOST = 4096


def c_strings(raws: list[bytes]) -> list[str]:
    """:func:`c_string` of each, texts seen lately looked up rather than decoded again."""
    seen = _SEEN
    if len(seen) > _SEEN_MOST:
        seen.clear()
    texts = []
    for raw in raws:
        text = seen.get(raw)
        if text is None:
            text = seen[raw] = c_string(raw)
        texts.append(text)
    return texts
