"""The pieces aiobpf's sources are built from, for programs of your own: a BCC program that
aiobpf owns, the two ring readers, and the record types that describe a ring's payload.

Most code needs none of this: :meth:`aiobpf.RingBuffer.from_bcc` and :class:`aiobpf.MapPoller`
read a ``bcc.BPF`` object of yours directly.
"""

from __future__ import annotations

from ._kernel.bcc import BccRingConsumer, Program
from ._kernel.ring_protocol import RingReader
from .programs import EXECVE_RECORD, LOG_RECORD, SYSCALL_RECORD
from .sources._records import RecordType, record_type, structure_for

__all__ = [
    "EXECVE_RECORD",
    "LOG_RECORD",
    "SYSCALL_RECORD",
    "BccRingConsumer",
    "Program",
    "RecordType",
    "RingReader",
    "record_type",
    "structure_for",
]
