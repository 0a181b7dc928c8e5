"""``run_queue_latency()``: how long tasks wait to run once runnable, as log2 histograms of
microseconds kept in the kernel (programs/runqlat.bpf.c), read every interval: BCC's and
libbpf-tools' runqlat, built on :func:`aiobpf.load`."""

from __future__ import annotations

from .._core.validate import check_id
from ..operators import Histogram
from ..sources import LoadedMap, Mode, load
from ._text import prebuilt_path

__all__ = ["run_queue_latency"]


def run_queue_latency(
    *, interval: float = 1.0, pid: int | None = None, mode: Mode = "delta"
) -> LoadedMap[Histogram]:
    """A :class:`aiobpf.operators.Histogram` of run queue latency (microseconds, log2 slots)
    every ``interval`` seconds: that interval's (``mode="delta"``) or since the start
    (``"snapshot"``); ``pid`` (a process: all its threads) filters in the kernel. ``stats``
    ``dropped`` counts waits the kernel's table had no room to time."""
    params = {}
    if pid is not None:
        number = check_id("pid", pid)
        if number == 0:
            raise ValueError("pid 0 is the idle task, which never waits to run")
        params["target_tgid"] = number
    program = load(prebuilt_path("runqlat"), params=params)

    return LoadedMap(
        program,
        "latency",
        name="run_queue_latency()",
        convert=Histogram.from_reading,
        interval=interval,
        mode=mode,
    )
