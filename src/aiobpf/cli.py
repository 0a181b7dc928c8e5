"""The ``aiobpf`` command: ready-made tools built on the library.

    aiobpf execsnoop [--uid UID] [--json] [--duration S]
    aiobpf hello [--trace-pipe] [--duration S]
    aiobpf syscalls [--pid PID] [--interval S] [--top N] [--json] [--duration S]
    aiobpf serve [--host 127.0.0.1] [--port 8000] [--uid UID] [--client-buffer N]
    aiobpf top-uids [--interval S] [--top N] [--uid UID] [--json] [--duration S]

Every tool runs until Ctrl-C or ``--duration`` seconds, then detaches and exits 0; a problem with
the machine (privileges, BCC, headers) is one line on stderr and exit status 1; bad arguments are a
usage message and exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pwd
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TextIO

import anyio

from .counts import execve_counts
from .dispatch import SyscallDispatch
from .errors import AiobpfError
from .events import ExecveEvent
from .execve import execve_events
from .hello import hello_world
from .tracepipe import trace_pipe

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


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _uid(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a uid (0 to 4294967295), got {text!r}")
    return value


# -- execsnoop -----------------------------------------------------------------------------------


def _execsnoop_line(event: ExecveEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {
                "time": time.time(),
                "uid": event.uid,
                "pid": event.pid,
                "ppid": event.ppid,
                "comm": event.comm,
                "filename": event.filename,
                "retval": event.retval,
            }
        )
    clock = time.strftime("%H:%M:%S")
    return (
        f"{clock:<8} {event.uid:>6} {event.pid:>7} {event.ppid:>7} {event.retval:>4} "
        f"{event.comm:<16} {event.filename}"
    )


async def _execsnoop(args: argparse.Namespace, out: TextIO) -> None:
    source = execve_events(max_latency=args.max_latency, busy_poll=args.busy_poll)
    if args.uid:
        source.push_down("uid", frozenset(args.uid))  # filtered in the kernel
    async with source as events:
        if not args.json:  # printed once attached: from here on, every exec is seen
            print(
                f"{'TIME':<8} {'UID':>6} {'PID':>7} {'PPID':>7} {'RET':>4} {'COMM':<16} FILENAME",
                file=out,
                flush=True,
            )
        with anyio.move_on_after(args.duration):
            async for event in events:
                print(_execsnoop_line(event, args.json), file=out, flush=True)
        stats = events.stats
    if not args.json:
        print(f"-- {stats.received} execs seen, {stats.dropped} lost (ring full)", file=out)


# -- top-uids ------------------------------------------------------------------------------------


def _top_table(counts: dict[int, int], top: int) -> str:
    rows = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    lines = [time.strftime("%H:%M:%S") + "  execve calls per user since start", ""]
    lines.append(f"{'UID':>10}  {'USER':<16} {'EXECVE':>10}")
    lines += [f"{uid:>10}  {_user_name(uid):<16} {count:>10}" for uid, count in rows]
    return "\n".join(lines)


async def _top_uids(args: argparse.Namespace, out: TextIO) -> None:
    in_place = out.isatty() and not args.json
    async with await execve_counts(interval=args.interval, uids=args.uid) as counts:
        with anyio.move_on_after(args.duration):
            async for reading in counts:
                if args.json:
                    line = {
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


# -- hello ---------------------------------------------------------------------------------------


async def _hello(args: argparse.Namespace, out: TextIO) -> None:
    async with await hello_world() as logs, anyio.create_task_group() as tasks:
        tasks.cancel_scope.deadline = anyio.current_time() + args.duration
        if args.trace_pipe:
            async with trace_pipe(keep=lambda line: line.message == "Hello World!") as pipe:
                async for line in pipe:
                    print(
                        f"{line.task}-{line.pid} [{line.cpu}] {line.timestamp:.6f}: {line.message}",
                        file=out,
                        flush=True,
                    )
        else:
            async for record in logs:
                print(
                    f"{record.level} {record.comm}-{record.pid} uid={record.uid}: {record.text}",
                    file=out,
                    flush=True,
                )


# -- syscalls ------------------------------------------------------------------------------------


async def _syscalls(args: argparse.Namespace, out: TextIO) -> None:
    in_place = out.isatty() and not args.json
    async with SyscallDispatch(tgids=args.pid or (), default="count") as dispatch:
        previous: dict[str, int] = {}
        with anyio.move_on_after(args.duration):
            deadline = anyio.current_time()
            while True:
                deadline += args.interval
                await anyio.sleep_until(deadline)
                totals = dispatch.fallthrough_counts()
                window = {name: n - previous.get(name, 0) for name, n in totals.items()}
                window = {name: n for name, n in window.items() if n}
                previous = totals
                if args.json:
                    print(json.dumps({"time": time.time(), "counts": window}), file=out, flush=True)
                    continue
                rows = sorted(window.items(), key=lambda item: (-item[1], item[0]))[: args.top]
                lines = [
                    f"{time.strftime('%H:%M:%S')}  syscalls in the last {args.interval:g} s",
                    "",
                ]
                lines += [f"{'SYSCALL':<24} {'CALLS':>10}"]
                lines += [f"{name:<24} {count:>10}" for name, count in rows]
                text = "\n".join(lines)
                print(
                    (_CLEAR if in_place else "") + text + ("" if in_place else "\n"),
                    file=out,
                    flush=True,
                )


# -- serve ---------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    try:
        from .service import serve
    except ImportError as exc:
        raise AiobpfError(
            f"aiobpf serve needs the service extra ({exc.name} is missing): "
            "pip install 'aiobpf[service]'"
        ) from exc
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()
                    return

        tasks.start_soon(on_signals)
        async with anyio.create_task_group() as server:
            run = functools.partial(
                serve,
                args.host,
                args.port,
                uids=args.uid,
                client_buffer=args.client_buffer,
                max_latency=args.max_latency,
                send_buffer=args.send_buffer,
                stalled_client_timeout=args.stalled_timeout,
                shutdown=stop,
            )
            await server.start(run)
            print(
                f"serving on http://{args.host}:{args.port}/ (Ctrl-C stops)", file=out, flush=True
            )
            with anyio.move_on_after(args.duration):
                await stop.wait()
            stop.set()  # the server shuts down gracefully, then detaches
        tasks.cancel_scope.cancel()


# -- the command ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiobpf", description="Kernel events through eBPF, from async Python."
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop"
    )
    tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")

    snoop = tools.add_parser(
        "execsnoop", help="one line per execve: time, uid, pid, ppid, ret, comm, filename"
    )
    snoop.add_argument("--uid", type=_uid, action="append", help="only this user (repeatable)")
    snoop.add_argument("--json", action="store_true", help="NDJSON, one object per exec")
    snoop.add_argument("--duration", type=_positive, default=math.inf, help="seconds to run")
    reading = snoop.add_mutually_exclusive_group()
    reading.add_argument(
        "--max-latency",
        type=_positive,
        default=0.0,
        help="latency budget, seconds: read at most this often (less CPU)",
    )
    reading.add_argument(
        "--busy-poll",
        type=_positive,
        default=0.0,
        help="low-latency mode: look at the empty ring this long before sleeping (a busy core)",
    )
    snoop.set_defaults(run=_execsnoop)

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
    web.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    web.add_argument("--port", type=int, default=8000, help="port (8000)")
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
        type=_positive,
        default=0.0,
        help="latency budget of the kernel source, seconds (less CPU under exec storms)",
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
    run: Callable[[argparse.Namespace, TextIO], Coroutine[Any, Any, None]] = args.run
    try:
        anyio.run(run, args, sys.stdout, backend=args.backend)
    except KeyboardInterrupt:
        return 0  # Ctrl-C: every source was closed on the way out
    except AiobpfError as exc:
        print(f"aiobpf {args.tool}: {exc}", file=sys.stderr)
        return 1
    return 0


def main_exit() -> None:
    """Entry point of the installed ``aiobpf`` script."""
    sys.exit(main())
