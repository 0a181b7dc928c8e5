/* Hello world on every exec, written twice:
 *
 *  - the classic way, bpf_printk (bpf_trace_printk) onto the machine-wide trace pipe;
 *  - a structured log channel: a typed record into this program's own ring buffer, so its lines
 *    arrive unmixed with anyone else's, with the process that triggered them (what aya-log does).
 *
 * A CO-RE object, prebuilt at set-up and loaded by libbpf (see execve.bpf.c).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "aiobpf.h"

#define AIOBPF_LOG_INFO 2

char LICENSE[] SEC("license") = "GPL";

struct log_record {
    u64 timestamp_ns;
    u32 pid;
    u32 uid;
    u32 level;
    char comm[AIOBPF_COMM_SIZE];
    char text[64];
};

AIOBPF_RING(logs, 16 * 4096, 2);

static __always_inline void count(u32 slot)
{
    aiobpf_count(bpf_map_lookup_elem(&logs_counts, &slot));
}

SEC("tracepoint/syscalls/sys_enter_execve")
int hello(void *ctx)
{
    bpf_printk("Hello World!\n");

    count(AIOBPF_PRODUCED);
    struct log_record *record = bpf_ringbuf_reserve(&logs, sizeof(struct log_record), 0);
    if (!record) {
        count(AIOBPF_DROPPED);
        return 0;
    }
    record->timestamp_ns = bpf_ktime_get_ns();
    record->pid = bpf_get_current_pid_tgid() >> 32;
    record->uid = (u32)bpf_get_current_uid_gid();
    record->level = AIOBPF_LOG_INFO;
    bpf_get_current_comm(record->comm, sizeof(record->comm));
    __builtin_memset(record->text, 0, sizeof(record->text));
    __builtin_memcpy(record->text, "Hello World!", 13);
    bpf_ringbuf_submit(record, 0);
    return 0;
}
