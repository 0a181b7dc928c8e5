"""Reading the ring buffer of your own BCC program with aiobpf: a record per exec.

sudo .venv/bin/python examples/ring_from_bcc.py

``aiobpf.compile_bcc()`` has the shape of ``aiobpf.load()`` for CO-RE objects: entering compiles
(off the event loop) and attaches, ``program.ring()`` opens a source, leaving detaches. The
record type comes from the C struct the program writes (char arrays as text); declare one with
``record=`` (a numpy dtype or a ctypes.Structure) only where BCC cannot see the struct.
"""

from __future__ import annotations

import anyio

import aiobpf

PROGRAM = r"""
#include <linux/sched.h>

struct data_t {
    u32 pid;
    u32 uid;
    char command[16];
    char message[12];
};

BPF_RINGBUF_OUTPUT(events, 1);
BPF_PERCPU_ARRAY(events_counts, u64, 2);   /* [produced, dropped]: aiobpf reports them */

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    u32 slot = 0;
    u64 *count = events_counts.lookup(&slot);
    if (count) *count += 1;
    struct data_t *data = events.ringbuf_reserve(sizeof(struct data_t));
    if (!data) {
        slot = 1;
        count = events_counts.lookup(&slot);
        if (count) *count += 1;
        return 0;
    }
    data->pid = bpf_get_current_pid_tgid() >> 32;
    data->uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    bpf_get_current_comm(&data->command, sizeof(data->command));
    __builtin_memcpy(data->message, "hello world", 12);
    events.ringbuf_submit(data, 0);
    return 0;
}
"""


async def main() -> None:
    async with aiobpf.compile_bcc(PROGRAM) as program, program.ring("events") as ring:
        print("tracing execs for 5 s", flush=True)
        with anyio.move_on_after(5):
            async for data in ring:
                print(f"pid={data.pid} uid={data.uid} comm={data.command} msg={data.message}")
        print(ring.stats)


if __name__ == "__main__":
    anyio.run(main)
