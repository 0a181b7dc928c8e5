"""A known kernel load and leak counters, for testing pipelines and measuring a machine.

:func:`getppid_ring` attaches a program that submits one record per ``getppid()`` call of one
process, numbered in sequence. Calling ``os.getppid()`` N times then produces exactly N records,
so tests can check loss accounting exactly and benchmarks can drive the ring as fast as the
kernel allows. :func:`held_bpf_objects` and :func:`loaded_bpf_ids` tell whether a test left
anything behind, in this process and in the kernel.
"""

from __future__ import annotations

import collections
import ctypes
import os
from typing import Any, Literal

import numpy as np

from ._core.records import record_type
from ._core.validate import MaxLatency, check_reading_mode, ring_pages
from ._kernel.bcc import Program
from ._kernel.libbpf import libbpf
from .programs._text import include_flags, program_text
from .sources import Reader, RingBuffer
from .sources._program import ProgramRing

__all__ = [
    "GetppidRing",
    "getppid_program",
    "getppid_record",
    "getppid_ring",
    "held_bpf_objects",
    "loaded_bpf_ids",
]

_WAKEUP_FLAGS = {"default": 0, "never": 1, "always": 2}  # BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP


def getppid_record(record_size: int = 32) -> np.dtype[np.void]:
    """The record :func:`getppid_ring` submits: ``seq``, ``timestamp_ns``, ``tgid``, ``cpu``."""
    if record_size < 32 or record_size % 8:
        raise ValueError(f"record_size must be a multiple of 8 bytes, >= 32, got {record_size!r}")
    return np.dtype(
        {
            "names": ["seq", "timestamp_ns", "tgid", "cpu"],
            "formats": ["<u8", "<u8", "<u4", "<u4"],
            "offsets": [0, 8, 16, 20],
            "itemsize": record_size,
        }
    )


def getppid_program(
    tgid: int | None = None,
    *,
    ring_size: int = 4096,
    record_size: int = 32,
    wakeup: Literal["default", "never", "always"] = "default",
    output: Literal["ring", "perf"] = "ring",
) -> tuple[str, list[str]]:
    """The C text and compiler flags of the load program, for
    :class:`aiobpf.lowlevel.Program` or BCC.

    ``tgid`` defaults to this process. ``output="perf"`` sends the records to a perf buffer
    (``BPF_PERF_OUTPUT``) instead of the ring, for comparing BCC's perf buffer consumer.
    """
    if output not in ("ring", "perf"):
        raise ValueError(f"output must be 'ring' or 'perf', got {output!r}")
    if wakeup not in _WAKEUP_FLAGS:
        raise ValueError(f"wakeup must be one of {sorted(_WAKEUP_FLAGS)}, got {wakeup!r}")
    getppid_record(record_size)  # validates record_size
    flags = [
        *include_flags(),
        f"-DAIOBPF_RING_PAGES={ring_pages(ring_size)}",
        f"-DAIOBPF_TARGET_TGID={os.getpid() if tgid is None else tgid}",
        f"-DAIOBPF_PAD_BYTES={record_size - 32}",
        f"-DAIOBPF_SUBMIT_FLAGS={_WAKEUP_FLAGS[wakeup]}",
        f"-DAIOBPF_PERF_OUTPUT={int(output == 'perf')}",
    ]
    return program_text("getppid_load"), flags


class GetppidRing(ProgramRing[Any, Program]):
    """The load program's ring source (see :func:`getppid_ring`)."""

    _name = "getppid_ring()"

    def __init__(
        self,
        tgid: int,
        *,
        ring_size: int,
        record_size: int,
        wakeup: Literal["default", "never", "always"],
        max_latency: MaxLatency,
        busy_poll: float,
        reader: Reader,
    ) -> None:
        super().__init__()
        check_reading_mode(max_latency, busy_poll)
        self._record = record_type(getppid_record(record_size))
        self._text, self._flags = getppid_program(
            tgid, ring_size=ring_size, record_size=record_size, wakeup=wakeup
        )
        self._options: dict[str, Any] = {
            "max_latency": max_latency,
            "busy_poll": busy_poll,
            "reader": reader,
        }

    def _compile(self) -> Program:
        return Program.compile(self._text, cflags=self._flags, attach=False)

    def _wrap(self, program: Program) -> RingBuffer[Any]:
        return RingBuffer.from_bcc(
            program.bpf, "events", record=self._record, owned=[program.close], **self._options
        )


def getppid_ring(
    tgid: int,
    *,
    ring_size: int = 256 * 1024,
    record_size: int = 32,
    wakeup: Literal["default", "never", "always"] = "default",
    max_latency: MaxLatency = "auto",
    busy_poll: float = 0.0,
    reader: Reader = "auto",
) -> GetppidRing:
    """A ring source of one record per ``getppid()`` call of process ``tgid``, opened by
    ``async with``.

    ``wakeup`` picks the submit flag: the kernel's default (wake the reader when it had caught
    up), never (the reader must drain on a timer: give ``max_latency``) or on every record.
    """
    return GetppidRing(
        tgid,
        ring_size=ring_size,
        record_size=record_size,
        wakeup=wakeup,
        max_latency=max_latency,
        busy_poll=busy_poll,
        reader=reader,
    )


def held_bpf_objects() -> dict[str, int]:
    """BPF programs, maps, links and perf events this process holds open, by kind (from the
    ``anon_inode:`` targets in ``/proc/self/fd``)."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own fd, closed by now
        if target.startswith("anon_inode:") and ("bpf" in target or "perf_event" in target):
            kinds[target.removeprefix("anon_inode:")] += 1
    return dict(kinds)


def loaded_bpf_ids(
    kind: Literal["prog", "map", "link"] = "prog", *, held_elsewhere: bool = True
) -> set[int]:
    """Ids of the BPF programs (maps, links) loaded in the kernel: the whole machine's listing.

    ``held_elsewhere=False`` leaves out those another live process holds open (found in its
    ``/proc/<pid>/fdinfo``): what remains is this process's and whatever nobody holds, so a leak
    check is not fooled by other BPF users starting and stopping meanwhile.
    """
    next_id = getattr(libbpf(), f"bpf_{kind}_get_next_id")
    ids: set[int] = set()
    current = ctypes.c_uint32(0)
    while next_id(current.value, ctypes.byref(current)) == 0:
        ids.add(current.value)
    return ids if held_elsewhere else ids - _held_by_other_processes(f"{kind}_id:")


def _held_by_other_processes(field: str) -> set[int]:
    ids: set[int] = set()
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    lines = info.read().splitlines()
            except OSError:
                continue
            ids.update(int(line.split()[1]) for line in lines if line.startswith(field))
    return ids
