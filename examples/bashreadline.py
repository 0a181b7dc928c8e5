"""Every line typed into bash, from a uretprobe on its readline() (BCC's classic bashreadline):
your own BPF C, attached to a user-space function, as an async source of typed records.

    sudo .venv/bin/python examples/bashreadline.py [--bash /bin/bash] [--json]

Uprobes need no kprobes: they work on kernels built without them. The record type comes from
the C struct (no hand-written dtype); ``line`` and ``comm`` arrive as text.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio

import aiobpf

PROGRAM = r"""
#include <uapi/linux/ptrace.h>

struct line_event {
    u32 pid;
    u32 uid;
    char comm[16];
    char line[80];
};

BPF_RINGBUF_OUTPUT(lines, 16);
BPF_PERCPU_ARRAY(lines_counts, u64, 2);   /* [produced, dropped]: aiobpf reports them */

int on_readline_return(struct pt_regs *ctx)
{
    const char *line = (const char *)PT_REGS_RC(ctx);
    if (!line)
        return 0;   /* end of input */
    u32 slot = 0;
    u64 *count = lines_counts.lookup(&slot);
    if (count)
        *count += 1;
    struct line_event *event = lines.ringbuf_reserve(sizeof(struct line_event));
    if (!event) {
        slot = 1;
        count = lines_counts.lookup(&slot);
        if (count)
            *count += 1;
        return 0;
    }
    event->pid = bpf_get_current_pid_tgid() >> 32;
    event->uid = bpf_get_current_uid_gid();
    bpf_get_current_comm(&event->comm, sizeof(event->comm));
    bpf_probe_read_user_str(&event->line, sizeof(event->line), line);
    lines.ringbuf_submit(event, 0);
    return 0;
}
"""


@contextlib.asynccontextmanager
async def bash_lines(bash: str = "/bin/bash") -> AsyncIterator[aiobpf.RingBuffer[Any]]:
    """The lines read by every bash running ``bash`` from now on, as records with ``pid``,
    ``uid``, ``comm`` and ``line``. A bash already waiting in readline() when this starts is
    seen from its next line on (a return probe catches calls entered after it is attached)."""
    async with aiobpf.compile_bcc(PROGRAM) as program:
        await program.attach_uprobe("on_readline_return", bash, "readline", retprobe=True)
        async with program.ring("lines") as ring:
            yield ring


async def main(bash: str, as_json: bool) -> None:
    async with bash_lines(bash) as lines:
        if not as_json:
            print(f"{'PID':>7} {'UID':>6} {'COMM':16} LINE", flush=True)
        else:
            print(json.dumps({"type": "ready"}), flush=True)
        try:
            async for event in lines:
                if as_json:
                    fields = {"pid": event.pid, "uid": event.uid, "comm": event.comm}
                    print(json.dumps({"type": "line", **fields, "line": event.line}), flush=True)
                else:
                    print(f"{event.pid:>7} {event.uid:>6} {event.comm:16} {event.line}", flush=True)
        finally:
            stats = lines.stats
            if as_json:
                print(
                    json.dumps(
                        {"type": "stats", "received": stats.received, "dropped": stats.dropped}
                    )
                )
            else:
                print(f"{stats.received} lines, {stats.dropped} dropped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bash", default="/bin/bash", help="the bash binary to probe")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the probe is detached on the way out
        anyio.run(main, args.bash, args.json)
