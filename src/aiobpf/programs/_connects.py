"""``connect_events()``: every TCP connect attempt (programs/connects.bpf.c) as typed events,
from the ``sock:inet_sock_set_state`` tracepoint, built on :func:`aiobpf.load`; its filters are
the object's parameters."""

from __future__ import annotations

import ipaddress
from typing import Literal

import attrs
import numpy as np
import numpy.typing as npt

from .._core.clock import wall_time
from .._core.records import RecordType
from .._core.text import c_string
from .._core.validate import MaxLatency, check_reading_mode
from ..sources import LoadedRing, load
from . import _constants as C
from ._filters import id_params
from ._text import prebuilt_path

__all__ = ["CONNECT_RECORD", "ConnectEvent", "connect_events"]

#: Layout of ``struct connect_event`` in ``programs/connects.bpf.c`` (C alignment).
CONNECT_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("uid", "<u4"),
        ("family", "<u2"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("unused", "<u2"),
        ("saddr", "S16"),
        ("daddr", "S16"),
        ("comm", f"S{C.COMM_SIZE}"),
    ],
    align=True,
)
_INET6 = 10


@attrs.frozen
class ConnectEvent:
    """A TCP connect attempt by ``pid``/``tid``/``uid``/``comm``: from ``saddr`` to
    ``daddr``:``dport``, over IPv4 or IPv6 (``ip``). ``sport`` is 0 unless the socket was
    bound first: the kernel picks the source port just after the attempt. Whether it succeeds
    comes later, in softirq context: this is the attempt, as tcpconnect reports it."""

    time: float
    timestamp_ns: int
    pid: int
    tid: int
    uid: int
    comm: str
    ip: Literal[4, 6]
    saddr: str
    sport: int
    daddr: str
    dport: int


def _address(raw: bytes, ip: int) -> str:
    packed = raw.ljust(16, b"\0")
    return str(ipaddress.IPv6Address(packed) if ip == 6 else ipaddress.IPv4Address(packed[:4]))


def decode(batch: npt.NDArray[np.void]) -> list[ConnectEvent]:
    """The events of a batch of :data:`CONNECT_RECORD` records."""
    events = []
    for row in batch.tolist():
        ip: Literal[4, 6] = 6 if row[4] == _INET6 else 4
        events.append(
            ConnectEvent(
                time=wall_time(row[0]),
                timestamp_ns=row[0],
                pid=row[1],
                tid=row[2],
                uid=row[3],
                ip=ip,
                sport=row[5],
                dport=row[6],
                saddr=_address(row[8], ip),
                daddr=_address(row[9], ip),
                comm=c_string(row[10]),
            )
        )
    return events


CONNECT_EVENTS: RecordType[ConnectEvent] = RecordType(dtype=CONNECT_RECORD, decode=decode)


def connect_events(
    *,
    uid: int | None = None,
    pid: int | None = None,
    port: int | None = None,
    max_latency: MaxLatency = "auto",
) -> LoadedRing[ConnectEvent]:
    """Every TCP connect attempt on the machine from now on, as :class:`ConnectEvent`;
    ``uid``, ``pid`` and ``port`` (the destination's) filter in the kernel. Opened with
    ``async with``; ``stats`` as for every ring. No kprobes: the ``sock:inet_sock_set_state``
    tracepoint (a socket going from CLOSE to SYN_SENT)."""
    check_reading_mode(max_latency, 0.0)
    params = id_params(uid=uid, pid=pid)
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 1 << 16:
            raise ValueError(f"a port is a whole number from 1 to 65535, got {port!r}")
        params["target_port"] = port
    program = load(prebuilt_path("connects"), params=params)
    return LoadedRing(
        program,
        "events",
        record=CONNECT_EVENTS,
        name="connect_events()",
        max_latency=max_latency,
    )
