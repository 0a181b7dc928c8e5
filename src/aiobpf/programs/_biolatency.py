"""``block_io_latency()``: how long block I/O takes on the device, from issue to completion,
as log2 histograms of microseconds kept in the kernel (programs/biolatency.bpf.c), read every
interval: BCC's and libbpf-tools' biolatency, built on :func:`aiobpf.load`."""

from __future__ import annotations

import os
from pathlib import Path

from ..operators import Histogram
from ..sources import LoadedMap, Mode, load
from ._text import prebuilt_path

__all__ = ["block_io_latency"]

_MINORBITS = 20  # the kernel's dev_t: major above 20 bits of minor


def disk_number(disk: str) -> int:
    """The kernel's dev_t of block device ``disk`` (``"sda"``, ``"loop0"``, ``"/dev/vda"``), from
    ``/sys/block``; ValueError naming the disks there when it is not one."""
    name = os.path.basename(disk)
    try:
        major, minor = (Path("/sys/block") / name / "dev").read_text().split(":")
    except (OSError, ValueError):
        known = ", ".join(sorted(os.listdir("/sys/block"))) or "none"
        raise ValueError(f"no disk {disk!r} in /sys/block (the disks: {known})") from None
    return (int(major) << _MINORBITS) | int(minor)


def block_io_latency(
    *, interval: float = 1.0, disk: str | None = None, mode: Mode = "delta"
) -> LoadedMap[Histogram]:
    """A :class:`aiobpf.operators.Histogram` of block I/O latency on the device (issue to
    completion, microseconds, log2 slots) every ``interval`` seconds: that interval's
    (``mode="delta"``) or since the start (``"snapshot"``); ``disk`` (``"sda"``) filters in the
    kernel. ``stats`` ``dropped`` counts I/Os the kernel's table had no room to time."""
    params = {}
    if disk is not None:
        params = {"target_dev": disk_number(disk), "filter_dev": 1}
    program = load(prebuilt_path("biolatency"), params=params)

    return LoadedMap(
        program,
        "latency",
        name="block_io_latency()",
        convert=Histogram.from_reading,
        interval=interval,
        mode=mode,
    )
