"""What each BPF program costs: the kernel's run count and run time per program.

The kernel counts them only while someone holds ``BPF_ENABLE_STATS`` (an fd from
``bpf_enable_stats``), and then for every program on the host, at a cost to each run (two
clock reads): so statistics are switched on only on request, and off again when the last
holder lets go. Each program's figures are in its fd's ``/proc/self/fdinfo`` entry
(``run_time_ns``, ``run_cnt``), which every kernel since 5.1 writes.
"""

from __future__ import annotations

import os
import threading

from .libbpf import check, libbpf

__all__ = ["StatsHold", "run_stats"]

_BPF_STATS_RUN_TIME = 0


class StatsHold:
    """Holders of ``BPF_ENABLE_STATS`` in this process, counted: the first switches the
    statistics on, the last off."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._fd: int | None = None

    def acquire(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._fd = check(
                    libbpf().bpf_enable_stats(_BPF_STATS_RUN_TIME), "enabling BPF run statistics"
                )
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._holders > 0


def run_stats(program_fd: int) -> tuple[int, int]:
    """``(run count, run time in ns)`` of the program behind ``program_fd``, from its fdinfo:
    what the kernel counted while statistics were on."""
    runs = run_time = 0
    with open(f"/proc/self/fdinfo/{program_fd}") as info:
        for line in info:
            if line.startswith("run_cnt:"):
                runs = int(line.split()[1])
            elif line.startswith("run_time_ns:"):
                run_time = int(line.split()[1])
    return runs, run_time
