/* Hello world on every exec, written twice:
 *
 *  - the classic way, bpf_trace_printk onto the machine-wide trace pipe;
 *  - a structured log channel: a typed record into this program's own ring buffer, so its lines
 *    arrive unmixed with anyone else's, with the process that triggered them (what aya-log does).
 */
#include "aiobpf.h"

#define AIOBPF_LOG_INFO 2

struct log_record {
    u64 timestamp_ns;
    u32 pid;
    u32 uid;
    u32 level;
    char comm[AIOBPF_COMM_SIZE];
    char text[64];
};

BPF_RINGBUF_OUTPUT(logs, 16);
BPF_PERCPU_ARRAY(logs_counts, u64, 2);

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    bpf_trace_printk("Hello World!\n");

    u32 slot = AIOBPF_PRODUCED;
    aiobpf_count(logs_counts.lookup(&slot));
    struct log_record *record = logs.ringbuf_reserve(sizeof(struct log_record));
    if (!record) {
        slot = AIOBPF_DROPPED;
        aiobpf_count(logs_counts.lookup(&slot));
        return 0;
    }
    record->timestamp_ns = bpf_ktime_get_ns();
    record->pid = bpf_get_current_pid_tgid() >> 32;
    record->uid = (u32)bpf_get_current_uid_gid();
    record->level = AIOBPF_LOG_INFO;
    bpf_get_current_comm(record->comm, sizeof(record->comm));
    __builtin_memset(record->text, 0, sizeof(record->text));
    __builtin_memcpy(record->text, "Hello World!", 13);
    logs.ringbuf_submit(record, 0);
    return 0;
}
