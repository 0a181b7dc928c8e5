"""The pieces aiobpf's sources are built from, for programs of your own: a BCC program that
aiobpf owns, the two ring readers, the record types that describe a ring's payload, and cgroup
v2 ids and paths (what ``bpf_get_current_cgroup_id()`` returns, and the cgroup it names).

Most code needs none of this: :meth:`aiobpf.RingBuffer.from_bcc` and :class:`aiobpf.MapPoller`
read a ``bcc.BPF`` object of yours directly.
"""

from __future__ import annotations

from ._core.records import RecordType, record_type, structure_for
from ._kernel.bcc import BccRingConsumer, Program
from ._kernel.cgroups import cgroup_id, cgroup_of, cgroup_path, cgroup_root
from ._kernel.ring_protocol import RingReader
from .programs import EXECVE_RECORD, LOG_RECORD, SYSCALL_RECORD

__all__ = [
    "EXECVE_RECORD",
    "LOG_RECORD",
    "SYSCALL_RECORD",
    "BccRingConsumer",
    "Program",
    "RecordType",
    "RingReader",
    "cgroup_id",
    "cgroup_of",
    "cgroup_path",
    "cgroup_root",
    "record_type",
    "structure_for",
]
