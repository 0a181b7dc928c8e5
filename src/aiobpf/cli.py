"""The ``aiobpf`` command: ready-made tools built on the library.

    aiobpf execsnoop [--uid UID] [--cgroup PATH] [--json] [--max-args N] [--ring-size BYTES]
                     [--duration S]
    aiobpf hello [--trace-pipe] [--duration S]
    aiobpf syscalls [--pid PID] [--interval S] [--top N] [--json] [--duration S]
    aiobpf serve [--socket PATH] [--socket-mode 0600] [--port P [--host H] [--token-file F]]
                 [--publish nats://HOST:PORT [--subject S]]
    aiobpf top-uids [--interval S] [--top N] [--uid UID] [--json] [--duration S]

Every tool runs until Ctrl-C (SIGINT), SIGTERM or ``--duration`` seconds, then prints what it
saw and lost, detaches and exits 0; a problem with the machine (privileges, BCC, headers) is one
line on stderr and exit status 1; bad arguments are a usage message and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import pwd
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import attrs

from ._defaults import BACKENDS, DEFAULT_SOCKET
from ._kernel.cgroups import cgroup_path
from .errors import AiobpfError, SetupError
from .programs._constants import MAX_ARGS

# Each tool imports its own program, sources and numpy when it runs: a tool's time to its
# first event is then its own program's loading, not the import of every other tool's.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .fleet import JetStreamSink
    from .operators._cgroups import CgroupTree
    from .programs._execve_event import ExecveEvent
    from .sources._validate import MaxLatency

__all__ = ["main"]

_CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _latency(text: str) -> MaxLatency:
    if text == "auto":
        return "auto"
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _arg_count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_ARGS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 0 to {MAX_ARGS}, got {text!r}"
        )
    return value


def _ring_size(text: str) -> int:
    from .sources._validate import ring_pages

    value = int(text)
    try:
        ring_pages(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _mode(text: str) -> int:
    value = int(text, 8)
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"must be a file mode in octal (0600), got {text!r}")
    return value


def _uid(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a uid (0 to 4294967295), got {text!r}")
    return value


def _cgroup(text: str) -> CgroupTree:
    from .operators._cgroups import CgroupTree

    try:
        return CgroupTree.of(text)
    except (OSError, SetupError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- stopping -------------------------------------------------------------------------------------


@attrs.define
class _Stop:
    """When a tool's main loop ends: at SIGINT or SIGTERM (a signal task cancels the scope) or
    after ``--duration`` seconds of running. What follows the loop, the tool's summary, runs
    however it ended."""

    duration: float
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)

    def running(self) -> anyio.CancelScope:
        """The main loop's scope, its ``--duration`` counted from now (once attached)."""
        self.scope.deadline = anyio.current_time() + self.duration
        return self.scope


Tool = Callable[[argparse.Namespace, TextIO, _Stop], Coroutine[Any, Any, None]]


async def _run_until_stopped(tool: Tool, args: argparse.Namespace, out: TextIO) -> None:
    stop = _Stop(args.duration)
    failure: AiobpfError | None = None
    async with anyio.create_task_group() as tasks:

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for _ in signals:
                    stop.scope.cancel()

        await tasks.start(on_signals)
        try:
            await tool(args, out, stop)
        except BaseException as exc:
            failure = _only_aiobpf_error(exc)
            if failure is None:
                raise
        finally:
            tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure  # as itself, not wrapped in a task group's ExceptionGroup


def _only_aiobpf_error(exc: BaseException) -> AiobpfError | None:
    """The AiobpfError that ``exc`` is, or that a task group wrapped alone (None otherwise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, AiobpfError) else None


# -- execsnoop -----------------------------------------------------------------------------------


def printable(text: str) -> str:
    """``text`` safe on a terminal: characters that are not printable (C0 and C1 controls, DEL,
    line and paragraph separators, bidirectional overrides, ...) shown as ``\\xNN`` or
    ``\\uNNNN``, and backslashes doubled, so that a file name or an argument cannot move the
    cursor, repaint or reorder the screen of whoever watches (root, usually)."""
    text = text.replace("\\", "\\\\")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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


def _execsnoop_line(event: ExecveEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "type": "exec",
                "time": event.time,
                "uid": event.uid,
                "pid": event.pid,
                "tid": event.tid,
                "ppid": event.ppid,
                "comm": event.comm,
                "syscall": event.syscall,
                "dirfd": event.dirfd,
                "flags": event.flags,
                "filename": event.filename,
                "argv": list(event.argv),
                "filename_truncated": event.filename_truncated,
                "argv_truncated": event.argv_truncated,
                "retval": event.retval,
                "cgroup_id": event.cgroup_id,
                "cgroup": _cgroup_name(event.cgroup_id),
            }
        )
    clock = time.strftime("%H:%M:%S", time.localtime(event.time))
    args = " ".join(printable(arg) for arg in event.argv)
    if event.argv_truncated:
        args += " ..."
    filename = printable(_shown_filename(event)) + ("..." if event.filename_truncated else "")
    return (
        f"{clock:<8} {event.uid:>6} {event.pid:>7} {event.ppid:>7} {event.retval:>4} "
        f"{printable(event.comm):<16} {filename} {args}"
    )


@attrs.define
class _Losses:
    """Tells what a tool's source lost as soon as its count moves, in-band with its output."""

    out: TextIO
    as_json: bool
    what: str = "lost"
    reported: int = 0

    def update(self, total: int | None) -> None:
        """Reports what was lost since the last report (``total``: the source's own count)."""
        if total is None or total <= self.reported:
            return
        count, self.reported = total - self.reported, total
        if self.as_json:
            print(json.dumps({"type": "lost", "count": count}), file=self.out, flush=True)
        else:
            print(f"-- {count} {self.what}", file=self.out, flush=True)


@attrs.define
class _Tally:
    """What execsnoop printed and lost: the summary's two numbers."""

    out: TextIO
    as_json: bool
    losses: _Losses
    seen: int = 0

    def events(self, batch: npt.NDArray[np.void]) -> None:
        from .programs._execve_event import ExecveEvent

        for event in ExecveEvent.decode(batch):
            print(_execsnoop_line(event, self.as_json), file=self.out)
        self.seen += len(batch)
        self.out.flush()

    def summary(self) -> None:
        seen, lost = self.seen, self.losses.reported
        if self.as_json:
            line = json.dumps({"type": "summary", "seen": seen, "lost": lost})
        else:
            line = f"-- {seen} execs seen, {lost} lost"
        print(line, file=self.out, flush=True)


def _preload_execsnoop(args: argparse.Namespace) -> None:
    """The execve program loads while the rest of aiobpf (numpy first) is imported."""
    from ._kernel.objects import preload
    from .programs._text import execve_object

    path, max_entries = execve_object(args.ring_size)
    preload(path, max_entries=max_entries)


async def _execsnoop(args: argparse.Namespace, out: TextIO, stop: _Stop) -> None:
    from .programs._execve import execve_events

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
    tally = _Tally(out, args.json, _Losses(out, args.json))
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
            tally.summary()


# -- top-uids ------------------------------------------------------------------------------------


def _top_table(counts: dict[int, int], top: int) -> str:
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    lines = [time.strftime("%H:%M:%S") + "  execve calls per user since start", ""]
    lines.append(f"{'UID':>10}  {'USER':<16} {'EXECVE':>10}")
    lines += [f"{uid:>10}  {_user_name(uid):<16} {count:>10}" for uid, count in rows]
    return "\n".join(lines)


async def _top_uids(args: argparse.Namespace, out: TextIO, stop: _Stop) -> None:
    from .programs._uid_counts import execve_counts

    in_place = out.isatty() and not args.json
    losses = _Losses(out, args.json, "exec calls not counted (map full)")
    async with execve_counts(interval=args.interval, uids=args.uid) as counts:
        try:
            with stop.running():
                async for reading in counts:
                    if args.json:
                        line = {
                            "type": "counts",
                            "time": reading.time,
                            "counts": {str(u): c for u, c in reading.values.items()},
                        }
                        print(json.dumps(line), file=out, flush=True)
                    else:
                        table = _top_table(reading.values, args.top)
                        print(
                            (_CLEAR if in_place else "") + table + ("" if in_place else "\n"),
                            file=out,
                            flush=True,
                        )
                    losses.update(reading.dropped)
        finally:
            final = counts.read()
            losses.update(final.dropped)
            if args.json:
                totals = {str(uid): count for uid, count in final.values.items()}
                summary = {"type": "summary", "counts": totals, "lost": losses.reported}
                print(json.dumps(summary), file=out, flush=True)
            else:
                print(
                    f"-- {sum(final.values.values())} exec calls counted for "
                    f"{len(final.values)} users, {losses.reported} not counted",
                    file=out,
                    flush=True,
                )


# -- hello ---------------------------------------------------------------------------------------


async def _hello(args: argparse.Namespace, out: TextIO, stop: _Stop) -> None:
    from .programs._hello import hello_world
    from .sources._trace_pipe import trace_pipe

    async with hello_world() as logs:
        seen = 0
        try:
            with stop.running():
                if args.trace_pipe:
                    keep = lambda line: line.message == "Hello World!"  # noqa: E731
                    async with trace_pipe(keep=keep) as pipe:
                        async for line in pipe:
                            seen += 1
                            print(
                                f"{printable(line.task)}-{line.pid} [{line.cpu}] "
                                f"{line.timestamp:.6f}: {printable(line.message)}",
                                file=out,
                                flush=True,
                            )
                else:
                    async for record in logs:
                        seen += 1
                        print(
                            f"{record.level} {printable(record.comm)}-{record.pid} "
                            f"uid={record.uid}: {printable(record.text)}",
                            file=out,
                            flush=True,
                        )
        finally:
            # the trace pipe keeps no count of what it lost; the program's ring does
            lost = "" if args.trace_pipe else f", {logs.stats.dropped or 0} lost"
            print(f"-- {seen} hello lines seen{lost}", file=out, flush=True)


# -- syscalls ------------------------------------------------------------------------------------


async def _syscalls(args: argparse.Namespace, out: TextIO, stop: _Stop) -> None:
    from .programs._dispatch import SyscallDispatch

    in_place = out.isatty() and not args.json
    async with SyscallDispatch(tgids=args.pid or (), default="count") as dispatch:
        previous: dict[str, int] = {}
        try:
            with stop.running():
                deadline = anyio.current_time()
                while True:
                    deadline += args.interval
                    await anyio.sleep_until(deadline)
                    totals = dispatch.fallthrough_counts()
                    window = {name: n - previous.get(name, 0) for name, n in totals.items()}
                    window = {name: n for name, n in window.items() if n}
                    previous = totals
                    if args.json:
                        line = {"type": "counts", "time": time.time(), "counts": window}
                        print(json.dumps(line), file=out, flush=True)
                        continue
                    rows = sorted(window.items(), key=lambda item: (-item[1], item[0]))
                    lines = [
                        f"{time.strftime('%H:%M:%S')}  syscalls in the last {args.interval:g} s",
                        "",
                    ]
                    lines += [f"{'SYSCALL':<24} {'CALLS':>10}"]
                    lines += [f"{name:<24} {count:>10}" for name, count in rows[: args.top]]
                    text = "\n".join(lines)
                    print(
                        (_CLEAR if in_place else "") + text + ("" if in_place else "\n"),
                        file=out,
                        flush=True,
                    )
        finally:
            # counted in an array per syscall: nothing can be lost, so the totals are the tally
            totals = dispatch.fallthrough_counts()
            if args.json:
                print(json.dumps({"type": "summary", "counts": totals}), file=out, flush=True)
            else:
                print(f"-- {sum(totals.values())} syscalls counted", file=out, flush=True)


# -- serve ---------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace, out: TextIO, stop: _Stop) -> None:
    try:
        from .service import AccessPolicy, serve
    except ImportError as exc:
        raise AiobpfError(
            f"aiobpf serve needs the service extra ({exc.name} is missing): "
            "pip install 'aiobpf[service]'"
        ) from exc
    access = AccessPolicy(
        token=_read_token(args.token_file) if args.token_file else None,
        see_all=frozenset(args.see_all or ()),
        metrics_public=args.metrics_without_token,
        max_clients=args.max_clients,
        max_clients_per_user=args.max_clients_per_user,
    )
    async with contextlib.AsyncExitStack() as publishing:
        sink = await publishing.enter_async_context(_sink(args)) if args.publish else None
        shutdown = anyio.Event()
        async with anyio.create_task_group() as server:
            run = functools.partial(
                serve,
                socket_path=args.socket,
                socket_mode=args.socket_mode,
                host=args.host,
                port=args.port,
                access=access,
                allowed_hosts=args.allowed_host or (),
                certfile=args.certfile,
                keyfile=args.keyfile,
                insecure=args.insecure,
                uids=args.uid,
                client_buffer=args.client_buffer,
                max_latency=args.max_latency,
                send_buffer=args.send_buffer,
                stalled_client_timeout=args.stalled_timeout,
                publish_to=sink,
                shutdown=shutdown,
            )
            serving = await server.start(run)
            where = serving.url
            if serving.token is not None and not args.token_file:
                where += f"?token={serving.token}"  # generated: the one place it is told
            elif serving.url.startswith("unix:"):
                where += f" (mode {args.socket_mode:04o})"
            print(f"serving on {where} (Ctrl-C stops)", file=out, flush=True)
            if sink is not None:
                print(f"publishing to {sink.url}, subject {sink.subject}", file=out, flush=True)
            try:
                with stop.running():
                    await anyio.sleep_forever()
            finally:
                stats = serving.hub.stats
                shutdown.set()  # the server shuts down gracefully, then detaches
    print(
        f"-- {stats.received} execs received, {stats.kernel_dropped} lost in the kernel, "
        f"{stats.user_dropped} lost by slow clients",
        file=out,
        flush=True,
    )
    if serving.publisher is not None:  # final: the sink has waited for the engine
        published = serving.publisher.stats
        print(
            f"-- {published.published} execs published to {args.publish}, "
            f"{published.dropped} dropped",
            file=out,
            flush=True,
        )


def _sink(args: argparse.Namespace) -> JetStreamSink:
    from .fleet import JetStreamSink, Node

    node = Node()
    return JetStreamSink(
        args.publish,
        subject=args.subject or node.subject("exec"),
        node=node,
        max_pending=args.publish_buffer,
        policy=args.publish_policy,
    )


def _read_token(path: str) -> str:
    """The token in ``path``, a file only its owner may read (it stands for root's view)."""
    try:
        mode = os.stat(path).st_mode
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise AiobpfError(f"cannot read the token file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise AiobpfError(
            f"the token file {path} is readable by others (mode {mode & 0o777:04o}): chmod 600 it"
        )
    if not token:
        raise AiobpfError(f"the token file {path} is empty")
    return token


# -- the command ---------------------------------------------------------------------------------


class _Version(argparse.Action):
    """``--version``, with the version read from the package's metadata only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from . import _version

        print(f"aiobpf {_version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiobpf", description="Kernel events through eBPF, from async Python."
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="print aiobpf's version and exit"
    )
    parser.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="uvloop",
        help="event loop (default: uvloop, asyncio on uvloop's loop)",
    )
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")

    snoop = tools.add_parser(
        "execsnoop",
        help="one line per execve/execveat: time, uid, pid, ppid, ret, comm, filename, args",
    )
    snoop.add_argument("--uid", type=_uid, action="append", help="only this user (repeatable)")
    snoop.add_argument(
        "--cgroup",
        type=_cgroup,
        action="append",
        metavar="PATH",
        help="only processes in this cgroup v2 or below it: a path under the cgroup2 mount, "
        "or as /proc/PID/cgroup shows it (repeatable)",
    )
    snoop.add_argument(
        "--json",
        action="store_true",
        help='NDJSON: {"type": "exec", ...} per exec, "lost" as drops are seen, "summary" at exit',
    )
    snoop.add_argument(
        "--ring-size",
        type=_ring_size,
        default=1024 * 1024,
        help="bytes of the kernel ring (1 MiB, about 440 events; a power-of-two number of pages)",
    )
    snoop.add_argument(
        "--max-args",
        type=_arg_count,
        default=20,
        help=f"arguments of argv to show (20; at most {MAX_ARGS})",
    )
    snoop.add_argument("--duration", type=_positive, default=math.inf, help="seconds to run")
    reading = snoop.add_mutually_exclusive_group()
    reading.add_argument(
        "--max-latency",
        type=_latency,
        default="auto",
        help="latency budget, seconds: read at most this often (less CPU); "
        "auto (default): 4 ms while 750 execs/s or more come, else at once; 0: at once",
    )
    reading.add_argument(
        "--busy-poll",
        type=_positive,
        default=0.0,
        help="low-latency mode: look at the empty ring this long before sleeping (a busy core)",
    )
    snoop.set_defaults(run=_execsnoop, prepare=_preload_execsnoop)

    hello = tools.add_parser("hello", help='"Hello World!" from a BPF program on every execve')
    hello.add_argument(
        "--trace-pipe",
        action="store_true",
        help="read the shared trace pipe instead of the program's own log ring",
    )
    hello.add_argument("--duration", type=_positive, default=math.inf, help="seconds to run")
    hello.set_defaults(run=_hello)

    calls = tools.add_parser("syscalls", help="top syscalls per interval, counted in the kernel")
    calls.add_argument("--pid", type=_uid, action="append", help="only this process (repeatable)")
    calls.add_argument("--interval", type=_positive, default=2.0, help="seconds per reading (2)")
    calls.add_argument("--top", type=_count, default=10, help="rows to show (10)")
    calls.add_argument(
        "--json",
        action="store_true",
        help='NDJSON: {"time": ..., "counts": {"<name>": n}} per interval',
    )
    calls.add_argument("--duration", type=_positive, default=math.inf, help="seconds to run")
    calls.set_defaults(run=_syscalls)

    web = tools.add_parser(
        "serve", help="HTTP service: SSE event stream, /top, /metrics, a dashboard"
    )
    web.add_argument(
        "--socket",
        default=DEFAULT_SOCKET,
        help=f"Unix socket to listen on, unless --port is given ({DEFAULT_SOCKET})",
    )
    web.add_argument(
        "--socket-mode",
        type=_mode,
        default=0o600,
        help="who may connect to the socket (0600: root; 0666: every local user, each seeing "
        "its own execs)",
    )
    web.add_argument(
        "--see-all",
        type=_uid,
        action="append",
        help="a uid that, like root, sees every user's execs over the socket (repeatable)",
    )
    web.add_argument("--port", type=int, help="listen on TCP instead, with a bearer token")
    web.add_argument("--host", default="127.0.0.1", help="TCP address to bind (127.0.0.1)")
    web.add_argument(
        "--token-file",
        help="file holding the bearer token, mode 0600 (default: a new token, printed at start)",
    )
    web.add_argument(
        "--metrics-without-token",
        action="store_true",
        help="serve /metrics over TCP without the token (for a Prometheus scraper)",
    )
    web.add_argument(
        "--allowed-host",
        action="append",
        help="a Host header name to answer besides --host and the loopback names (repeatable)",
    )
    web.add_argument("--certfile", help="TLS certificate (PEM), with --keyfile")
    web.add_argument("--keyfile", help="TLS private key (PEM), with --certfile")
    web.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS: every user's commands in clear",
    )
    web.add_argument(
        "--max-clients", type=_count, default=64, help="open /events streams at most (64)"
    )
    web.add_argument(
        "--max-clients-per-user",
        type=_count,
        default=8,
        help="open /events streams per user (or per token) at most (8)",
    )
    web.add_argument(
        "--uid",
        type=_uid,
        action="append",
        help="serve only this user's execs (repeatable; in the kernel)",
    )
    web.add_argument(
        "--client-buffer",
        type=_count,
        default=1024,
        help="events queued per client before it loses some (1024)",
    )
    web.add_argument(
        "--max-latency",
        type=_latency,
        default="auto",
        help="latency budget of the kernel source, seconds (less CPU under exec storms); "
        "auto (default): 4 ms while 750 execs/s or more come, else at once",
    )
    web.add_argument(
        "--send-buffer",
        type=_count,
        default=None,
        help="kernel socket buffer per client, bytes (default: the kernel sizes it)",
    )
    web.add_argument(
        "--stalled-timeout",
        type=_positive,
        default=60.0,
        help="disconnect a client that reads nothing for this long, seconds (60)",
    )
    web.add_argument(
        "--publish",
        metavar="URL",
        help="also publish every exec to this NATS JetStream engine (nats://HOST:PORT); "
        "whoever reads its stream sees every user's commands",
    )
    web.add_argument(
        "--subject",
        help="the subject to publish on (aiobpf.<hostname>.exec); the stream AIOBPF, over "
        "aiobpf.>, is made if no stream holds the subject",
    )
    web.add_argument(
        "--publish-buffer",
        type=_count,
        default=65536,
        help="execs kept while the engine is slow or away, then dropped and counted (65536)",
    )
    web.add_argument(
        "--publish-policy",
        choices=["drop_oldest", "drop_newest"],
        default="drop_oldest",
        help="which execs give when the buffer is full (drop_oldest)",
    )
    web.add_argument("--duration", type=_positive, default=math.inf, help="seconds to run")
    web.set_defaults(run=_serve)

    top = tools.add_parser("top-uids", help="execve calls per user, counted in the kernel")
    top.add_argument("--interval", type=_positive, default=2.0, help="seconds between readings (2)")
    top.add_argument("--top", type=_count, default=10, help="rows to show (10)")
    top.add_argument(
        "--uid",
        type=_uid,
        action="append",
        help="count only this user (repeatable; filtered in the kernel)",
    )
    top.add_argument(
        "--json",
        action="store_true",
        help='NDJSON: {"time": ..., "counts": {"<uid>": n}} per interval',
    )
    top.add_argument("--duration", type=_positive, default=math.inf, help="seconds to run")
    top.set_defaults(run=_top_uids)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status."""
    args = _parser().parse_args(argv)
    tool: Tool = args.run
    if prepare := getattr(args, "prepare", None):
        prepare(args)
    try:
        backend, options = BACKENDS[args.backend]
        anyio.run(
            _run_until_stopped, tool, args, sys.stdout, backend=backend, backend_options=options
        )
    except KeyboardInterrupt:
        return 0  # Ctrl-C before the tool could catch it: every source was closed on the way out
    except AiobpfError as exc:
        print(f"aiobpf {args.tool}: {exc}", file=sys.stderr)
        return 1
    return 0


def main_exit() -> None:
    """Entry point of the installed ``aiobpf`` script."""
    sys.exit(main())
