"""Who publishes: the node's name and boot, in every message, so that a fleet's streams can be
told apart and a restarted node's numbering is not mistaken for a repeat."""

from __future__ import annotations

import re
import socket

import attrs

from .._kernel.boot import boot_id

__all__ = ["Node", "subject_token"]


def subject_token(name: str) -> str:
    """``name`` as one token of a NATS subject: dots, spaces, ``*`` and ``>`` would split or
    widen a subject, so each becomes ``_``."""
    token = re.sub(r"[.\s*>]", "_", name)
    if not token:
        raise ValueError("a subject token cannot be empty")
    return token


@attrs.frozen
class Node:
    """A publishing node: ``name`` (the host name by default; two processes standing for two
    nodes give their own) and ``boot_id`` (the kernel's, new at every boot)."""

    name: str = attrs.field(factory=socket.gethostname)
    boot_id: str = attrs.field(factory=boot_id)

    def __attrs_post_init__(self) -> None:
        if not self.name:
            raise ValueError("a node needs a name")

    def subject(self, kind: str) -> str:
        """The node's subject for ``kind`` of events: ``aiobpf.<node>.<kind>``."""
        return f"aiobpf.{subject_token(self.name)}.{subject_token(kind)}"
