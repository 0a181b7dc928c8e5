"""``aiobpf execsnoop``: one line per execve and execveat, as BCC's and libbpf-tools'
execsnoop print them, or :mod:`aiobpf.schema` records with ``--json``."""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
import time
from typing import TYPE_CHECKING, TextIO

import attrs

from .._kernel.cgroups import cgroup_path
from ..errors import SetupError
from ..programs._constants import MAX_ARGS
from ..redaction import Redaction
from ..schema import exec_record, summary_record
from . import _options as option
from ._running import Costs, Losses, Stop
from ._text import printable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..programs import ExecveEvent, ExecveEvents

__all__ = ["add_parser"]


def _shown_filename(event: ExecveEvent) -> str:
    """The path as the caller named it; an execveat path relative to a directory fd, or the fd
    itself (``AT_EMPTY_PATH``, as fexecve does), shows the fd."""
    if event.syscall == "execveat" and not event.filename.startswith("/"):
        if not event.filename:
            return f"<fd {event.dirfd}>"
        if event.dirfd != _AT_FDCWD:
            return f"<fd {event.dirfd}>/{event.filename}"
    return event.filename


_AT_FDCWD = -100


@functools.lru_cache(maxsize=4096)
def _cgroup_name(cgroup: int) -> str | None:
    """The path of a cgroup id, looked up once per id (a walk of the cgroup tree)."""
    try:
        return cgroup_path(cgroup)
    except SetupError:  # no cgroup2 mount: ids name nothing
        return None


def _shown_arg(arg: str) -> str:
    """An argument as a shell would need it: quoted when it holds a space or is empty (``a
    value`` read as two arguments), its unprintable characters escaped."""
    shown = printable(arg)
    return shlex.quote(shown) if not shown or any(c.isspace() for c in shown) else shown


def _execsnoop_line(event: ExecveEvent, as_json: bool, redaction: Redaction) -> str:
    if as_json:
        record = exec_record(event, redaction=redaction, cgroup=_cgroup_name(event.cgroup_id))
        return json.dumps(record)
    clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    args = " ".join(_shown_arg(arg) for arg in redaction.argv(event.argv))
    if event.argv_truncated:
        args += " ..."
    filename = printable(_shown_filename(event)) + ("..." if event.filename_truncated else "")
    return (
        f"{clock:<8} {event.uid:>6} {event.pid:>7} {event.ppid:>7} {event.retval:>4} "
        f"{printable(event.comm):<16} {filename} {args}"
    )


@attrs.define
class _Tally:
    """What execsnoop printed and lost: the summary's two numbers."""

    out: TextIO
    as_json: bool
    losses: Losses
    redaction: Redaction
    costs: Costs
    seen: int = 0

    def events(self, batch: npt.NDArray[np.void]) -> None:
        from ..programs import ExecveEvent

        for event in ExecveEvent.decode(batch):
            print(_execsnoop_line(event, self.as_json, self.redaction), file=self.out)
        self.seen += len(batch)
        self.out.flush()

    def summary(self) -> None:
        seen, lost = self.seen, self.losses.reported
        if self.as_json:
            line = json.dumps(summary_record(seen, lost, **self.costs.fields()))
        else:
            line = f"-- {seen} execs seen, {lost} lost{self.costs.text(seen + lost)}"
        print(line, file=self.out, flush=True)


def preload(args: argparse.Namespace) -> None:
    """The execve program loads while the rest of aiobpf (numpy first) is imported."""
    from .._kernel.objects import preload
    from ..programs._text import execve_object

    path, max_entries = execve_object(args.ring_size)
    preload(path, max_entries=max_entries)


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> None:
    from ..programs import execve_events

    source = execve_events(
        ring_size=args.ring_size,
        max_latency=args.max_latency,
        busy_poll=args.busy_poll,
        max_args=args.max_args,
    )
    if args.uid:
        source.push_down("uid", frozenset(args.uid))  # filtered in the kernel
    if args.cgroup:
        cgroups = frozenset().union(*(tree.ids for tree in args.cgroup))
        source.push_down("cgroup", cgroups)  # so is this, cgroups below them included
    costs = Costs(args.program_stats)
    tally = _Tally(out, args.json, Losses(out, args.json), option.redaction_of(args), costs)
    with costs.measuring():
        await _trace(source, args, out, stop, tally)


async def _trace(
    source: ExecveEvents, args: argparse.Namespace, out: TextIO, stop: Stop, tally: _Tally
) -> None:
    async with source as events:
        # said once attached: from here on, every exec is seen
        if args.json:
            print("aiobpf execsnoop: tracing execve and execveat", file=sys.stderr, flush=True)
        else:
            print(
                f"{'TIME':<8} {'UID':>6} {'PID':>7} {'PPID':>7} {'RET':>4} {'COMM':<16} "
                "FILENAME ARGS",
                file=out,
                flush=True,
            )
        try:
            with stop.running():
                async for batch in events.batches():
                    tally.events(batch)
                    tally.losses.update(events.stats.dropped)
            # what the kernel delivered before the stop is shown too
            tally.events(events.ring.drain())
            tally.losses.update(events.stats.dropped)
        finally:
            tally.costs.take(events)
            tally.summary()


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    snoop = tools.add_parser(
        "execsnoop",
        help="one line per execve/execveat: time, uid, pid, ppid, ret, comm, filename, args",
    )
    snoop.add_argument(
        "--uid", type=option.uid, action="append", help="only this user (repeatable)"
    )
    snoop.add_argument(
        "--cgroup",
        type=option.cgroup,
        action="append",
        metavar="PATH",
        help="only processes in this cgroup v2 or below it: a path under the cgroup2 mount, "
        "or as /proc/PID/cgroup shows it (repeatable)",
    )
    option.add_json(snoop, '"exec" records, "lost" as drops are seen, "summary" at exit')
    snoop.add_argument(
        "--ring-size",
        type=option.ring_size,
        default=1024 * 1024,
        help="bytes of the kernel ring (1 MiB, about 440 events; a power-of-two number of pages)",
    )
    snoop.add_argument(
        "--max-args",
        type=option.arg_count,
        default=20,
        help=f"arguments of argv to show (20; at most {MAX_ARGS})",
    )
    option.add_redaction(snoop)
    option.add_duration(snoop)
    option.add_program_stats(snoop)
    reading = snoop.add_mutually_exclusive_group()
    option.add_max_latency(reading)
    reading.add_argument(
        "--busy-poll",
        type=option.positive,
        default=0.0,
        help="low-latency mode: look at the empty ring this long before sleeping (a busy core)",
    )
    snoop.set_defaults(run=run, prepare=preload)
