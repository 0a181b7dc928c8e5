"""Text a terminal shows safely, and names shown for ids."""

from __future__ import annotations

import pwd

__all__ = ["CLEAR", "printable", "user_name"]

CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def printable(text: str) -> str:
    """``text`` safe on a terminal: characters that are not printable (C0 and C1 controls, DEL,
    line and paragraph separators, bidirectional overrides, ...) shown as ``\\xNN`` or
    ``\\uNNNN``, and backslashes doubled, so that a file name or an argument cannot move the
    cursor, repaint or reorder the screen of whoever watches (root, usually)."""
    text = text.replace("\\", "\\\\")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
