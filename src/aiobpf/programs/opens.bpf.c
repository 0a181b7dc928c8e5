/* open events: every open, openat and openat2, paired entry/exit as opensnoop does.
 *
 * On entry the program keeps the call's path pointer, flags and mode in the calling task's own
 * storage (nobody can fill a table of opens in flight); on the return it reads the path the
 * caller gave and submits one record with the result: a file descriptor, or a negative errno.
 * A CO-RE object loaded by aiobpf.load(): its parameters (const volatile, set before the load)
 * filter in the kernel. ``open`` exists on x86-64 only: its two programs are left out where the
 * kernel has no such tracepoint.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

#define OPEN_PATH_SIZE 256

enum open_syscall { SYSCALL_OPEN = 0, SYSCALL_OPENAT = 1, SYSCALL_OPENAT2 = 2 };

struct open_event {
    u64 timestamp_ns;
    u64 flags;
    u64 mode;
    u32 pid;
    u32 tid;
    u32 uid;
    s32 result;
    s32 dirfd;
    u8 syscall;
    u8 unused[3];
    char comm[AIOBPF_COMM_SIZE];
    char path[OPEN_PATH_SIZE];
};
struct open_event *unused_open_event __attribute__((unused));

/* Parameters: -1 (all ones) means no filter. */
const volatile u32 target_uid = (u32)-1;
const volatile u32 target_pid = (u32)-1;
const volatile u8 failed_only = 0;

AIOBPF_RING(events, 1 << 20, 2);

struct pending_open {
    u64 path;
    u64 flags;
    u64 mode;
    s32 dirfd;
    u8 syscall;
    u8 live;
};
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct pending_open);
} opens_pending SEC(".maps");

static __always_inline void count(u32 slot)
{
    aiobpf_count(bpf_map_lookup_elem(&events_counts, &slot));
}

static __always_inline int enter(u8 syscall, s32 dirfd, u64 path, u64 flags, u64 mode)
{
    u64 id = bpf_get_current_pid_tgid();
    if (target_pid != (u32)-1 && (id >> 32) != target_pid)
        return 0;
    if (target_uid != (u32)-1 && (u32)bpf_get_current_uid_gid() != target_uid)
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    struct pending_open *pending =
        bpf_task_storage_get(&opens_pending, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!pending) {
        count(AIOBPF_PRODUCED); /* no memory to keep it: produced and dropped at once */
        count(AIOBPF_DROPPED);
        return 0;
    }
    pending->path = path;
    pending->flags = flags;
    pending->mode = mode;
    pending->dirfd = dirfd;
    pending->syscall = syscall;
    pending->live = 1;
    return 0;
}

static __always_inline int leave(long result)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct pending_open *pending = bpf_task_storage_get(&opens_pending, task, 0, 0);
    if (!pending || !pending->live)
        return 0;
    pending->live = 0;
    if (failed_only && result >= 0)
        return 0;
    count(AIOBPF_PRODUCED);
    struct open_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
    if (!ev) {
        count(AIOBPF_DROPPED);
        return 0;
    }
    u64 id = bpf_get_current_pid_tgid();
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->flags = pending->flags;
    ev->mode = pending->mode;
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    ev->uid = (u32)bpf_get_current_uid_gid();
    ev->result = result;
    ev->dirfd = pending->dirfd;
    ev->syscall = pending->syscall;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    if (bpf_probe_read_user_str(ev->path, sizeof(ev->path), (const void *)pending->path) < 0)
        ev->path[0] = 0;
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

/* openat2's struct open_how, as the caller passed it */
struct user_open_how {
    u64 flags;
    u64 mode;
    u64 resolve;
};

SEC("tracepoint/syscalls/sys_enter_open")
int on_open_enter(struct trace_event_raw_sys_enter *ctx)
{
    return enter(SYSCALL_OPEN, -100 /* AT_FDCWD */, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_open")
int on_open_exit(struct trace_event_raw_sys_exit *ctx)
{
    return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat_enter(struct trace_event_raw_sys_enter *ctx)
{
    return enter(SYSCALL_OPENAT, (s32)ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int on_openat_exit(struct trace_event_raw_sys_exit *ctx)
{
    return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int on_openat2_enter(struct trace_event_raw_sys_enter *ctx)
{
    struct user_open_how how = {};
    bpf_probe_read_user(&how, sizeof(how), (const void *)ctx->args[2]);
    return enter(SYSCALL_OPENAT2, (s32)ctx->args[0], ctx->args[1], how.flags, how.mode);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int on_openat2_exit(struct trace_event_raw_sys_exit *ctx)
{
    return leave(ctx->ret);
}
