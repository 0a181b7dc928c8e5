"""The ``aiobpf`` command: ready-made tools built on the library.

    aiobpf execsnoop [--uid UID] [--cgroup PATH] [--json] [--max-args N] [--ring-size BYTES]
                     [--duration S]
    aiobpf exitsnoop [--uid UID] [--failed] [--json] [--duration S]
    aiobpf run [--json] [-o FILE] -- CMD [ARGS...]
    aiobpf hello [--trace-pipe] [--duration S]
    aiobpf syscalls [--pid PID] [--interval S] [--top N] [--json] [--duration S]
    aiobpf serve [--socket PATH] [--socket-mode 0600] [--port P [--host H] [--token-file F]]
                 [--publish nats://HOST:PORT [--subject S]]
    aiobpf top-uids [--interval S] [--top N] [--uid UID] [--json] [--duration S]
    aiobpf doctor [--json]

Every tool runs until Ctrl-C (SIGINT), SIGTERM or ``--duration`` seconds, then prints what it
saw and lost, detaches and exits 0; a problem with the machine (privileges, BCC, headers) is one
line on stderr and exit status 1; bad arguments are a usage message and exit status 2.

A module per tool (``_execsnoop``, ...), each adding its parser; the options they share are
``_options``'s, how they run and stop ``_running``'s.
"""

from __future__ import annotations

from ._main import main, main_exit

__all__ = ["main", "main_exit"]
