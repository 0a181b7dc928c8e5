"""What a source's BPF programs cost the kernel, on request: :func:`enable_program_stats`
switches the kernel's run statistics on (for every program on the host, so only while held),
and every program source's ``program_costs()`` reads its programs' figures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import attrs

from .._kernel.run_stats import StatsHold, run_stats

__all__ = ["ProgramCost", "costs_of", "enable_program_stats", "program_stats_enabled"]

_hold = StatsHold()


@attrs.frozen
class ProgramCost:
    """A program's runs and the time they took in the kernel, counted while statistics were
    on (:func:`enable_program_stats`)."""

    runs: int
    run_time_ns: int

    @property
    def ns_per_run(self) -> float | None:
        return self.run_time_ns / self.runs if self.runs else None

    def ns_per_event(self, events: int) -> float | None:
        """The time per event the source produced (a program may run several times per
        event, or run without producing one)."""
        return self.run_time_ns / events if events else None

    def __add__(self, other: ProgramCost) -> ProgramCost:
        return ProgramCost(self.runs + other.runs, self.run_time_ns + other.run_time_ns)


@contextlib.contextmanager
def enable_program_stats() -> Iterator[None]:
    """Has the kernel count every BPF program's runs and run time while the block runs
    (``BPF_ENABLE_STATS``; nested and concurrent holders share one switch). It costs every
    program on the host two clock reads per run, so it is off unless asked for. Raises
    :class:`aiobpf.MapError` (an OSError) where the kernel refuses (no CAP_SYS_ADMIN)."""
    _hold.acquire()
    try:
        yield
    finally:
        _hold.release()


def program_stats_enabled() -> bool:
    """Whether this process holds the statistics on (another process may too)."""
    return _hold.held


def costs_of(program_fds: Mapping[str, int]) -> dict[str, ProgramCost]:
    """Each program's cost, by name, from its fd."""
    return {name: ProgramCost(*run_stats(fd)) for name, fd in program_fds.items()}
