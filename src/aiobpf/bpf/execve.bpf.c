/* execve events: the seed's ring buffer example, paired entry/exit as execsnoop does.
 *
 * On sys_enter_execve the program records who is executing what (filename, ids, parent) in a
 * map keyed by tgid; on sys_exit_execve it completes that record with the result and the new
 * comm, and submits it to the ring. Failed execs are reported with their negative errno.
 *
 * Compiled with -DAIOBPF_TASK_REAL_PARENT=<off> -DAIOBPF_TASK_TGID=<off>: offsets of
 * task_struct members read from the running kernel's BTF, because the headers BCC compiles
 * against may belong to another kernel version.
 */
#include "aiobpf.h"

#define FILENAME_SIZE 256

struct execve_event {
    u64 timestamp_ns;
    u32 pid;
    u32 tid;
    u32 ppid;
    u32 uid;
    u32 gid;
    s32 retval;
    char comm[16];
    char message[12];
    char filename[FILENAME_SIZE];
};

BPF_RINGBUF_OUTPUT(events, AIOBPF_RING_PAGES);
BPF_PERCPU_ARRAY(events_counts, u64, 2);
BPF_TABLE("lru_hash", u32, struct execve_event, execve_pending, 10240);
BPF_PERCPU_ARRAY(execve_scratch, struct execve_event, 1);

/* Filters pushed down from user space (aiobpf.filter_uid / filter_pid / filter_comm): a flag
 * word says which sets are in force, each set is a hash of allowed values. User space changes
 * them while the program runs. */
#define FILTER_UID 1
#define FILTER_PID 2
#define FILTER_COMM 4
struct comm_key {
    char comm[16];
};
BPF_ARRAY(filter_config, u32, 1);
BPF_HASH(filter_uids, u32, u8, 1024);
BPF_HASH(filter_pids, u32, u8, 1024);
BPF_HASH(filter_comms, struct comm_key, u8, 1024);

static __always_inline u32 filter_flags(void)
{
    u32 zero = 0;
    u32 *flags = filter_config.lookup(&zero);
    return flags ? *flags : 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    u32 zero = 0;
    struct execve_event *ev = execve_scratch.lookup(&zero);
    if (!ev)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    u32 tgid = pid_tgid >> 32;
    u32 uid = (u32)uid_gid;
    u32 flags = filter_flags();
    if ((flags & FILTER_UID) && !filter_uids.lookup(&uid))
        return 0;
    if ((flags & FILTER_PID) && !filter_pids.lookup(&tgid))
        return 0;
    ev->timestamp_ns = 0;
    ev->pid = tgid;
    ev->tid = (u32)pid_tgid;
    ev->uid = (u32)uid_gid;
    ev->gid = uid_gid >> 32;
    ev->retval = 0;

    char *task = (char *)bpf_get_current_task();
    char *parent = NULL;
    u32 ppid = 0;
    bpf_probe_read_kernel(&parent, sizeof(parent), task + AIOBPF_TASK_REAL_PARENT);
    if (parent)
        bpf_probe_read_kernel(&ppid, sizeof(ppid), parent + AIOBPF_TASK_TGID);
    ev->ppid = ppid;

    __builtin_memset(ev->comm, 0, sizeof(ev->comm));
    __builtin_memcpy(ev->message, "hello world", 12);
    /* The scratch record is reused per CPU and bpf_probe_read_user_str() stops at the string's
     * end: without clearing, a short filename would carry the tail of a longer earlier one. */
    __builtin_memset(ev->filename, 0, sizeof(ev->filename));
    if (bpf_probe_read_user_str(ev->filename, sizeof(ev->filename), args->filename) < 0)
        ev->filename[0] = 0;
    execve_pending.update(&tgid, ev);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct execve_event *pending = execve_pending.lookup(&tgid);
    if (!pending)
        return 0;
    if (filter_flags() & FILTER_COMM) {
        struct comm_key key = {};
        bpf_get_current_comm(key.comm, sizeof(key.comm)); /* the comm after the exec */
        if (!filter_comms.lookup(&key)) {
            execve_pending.delete(&tgid);
            return 0;
        }
    }
    u32 slot = AIOBPF_PRODUCED;
    aiobpf_count(events_counts.lookup(&slot));
    struct execve_event *ev = events.ringbuf_reserve(sizeof(struct execve_event));
    if (!ev) {
        slot = AIOBPF_DROPPED;
        aiobpf_count(events_counts.lookup(&slot));
        execve_pending.delete(&tgid);
        return 0;
    }
    __builtin_memcpy(ev, pending, sizeof(*ev));
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->retval = args->ret;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    events.ringbuf_submit(ev, 0);
    execve_pending.delete(&tgid);
    return 0;
}
