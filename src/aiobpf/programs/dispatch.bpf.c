/* Syscall dispatch by opcode through a tail-call table, managed from user space.
 *
 * `dispatch` runs on the raw tracepoint sys_enter (every syscall of the machine). It decides
 * first whether the calling task is in scope (tid / tgid / uid / comm sets, all of those that
 * are enabled must match), then tail-calls through `handlers`, a program array indexed by the
 * syscall number. A tail call never returns; when the slot is empty it fails and execution
 * continues after it: that fall-through is the default action (count per syscall, emit, or
 * nothing), changeable at run time like every map here.
 *
 * Built-in handlers: handle_emit (an event into the ring), handle_count (a per-syscall counter),
 * handle_ignore (counted as ignored, nothing else). They name no hook (SEC("raw_tp")): they are
 * loaded, never attached, and run only from the table. Users' handlers, compiled apart by BCC
 * as raw tracepoint programs, go in the same table.
 *
 * 32-bit (ia32) syscalls on x86-64 number the calls differently (11 is execve there, munmap
 * here): they are not dispatched, only counted (AIOBPF_STAT_COMPAT), rather than mislabelled. A task
 * is in such a call when its thread_info has TS_COMPAT, as the kernel's in_ia32_syscall() asks.
 *
 * A CO-RE object (see execve.bpf.c): libbpf relocates the pt_regs and thread_info reads for the
 * running kernel. User space sizes the ring and the tid/tgid bitmaps (pid_max / 64 words)
 * before loading.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

#define TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h */

/* The sixth syscall argument: libbpf's PT_REGS_PARM*_CORE_SYSCALL stop at five. */
#if defined(__TARGET_ARCH_x86)
#define SYSCALL_ARG6(regs) BPF_CORE_READ(regs, r9)
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_ARG6(regs) BPF_CORE_READ(regs, regs[5])
#else
#error "dispatch.bpf.c reads syscall arguments on x86-64 and arm64 only"
#endif

struct syscall_event {
    u64 timestamp_ns;
    u64 args[6];
    u32 pid;
    u32 tid;
    u32 uid;
    u32 nr;
    char comm[AIOBPF_COMM_SIZE];
};

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, AIOBPF_MAX_SYSCALLS);
    __type(key, u32);
    __type(value, u32);
} handlers SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* resized by user space before loading */
} events SEC(".maps");

#define PERCPU_COUNTS(name, entries)                                                               \
    struct {                                                                                       \
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                                   \
        __uint(max_entries, entries);                                                              \
        __type(key, u32);                                                                          \
        __type(value, u64);                                                                        \
    } name SEC(".maps")

PERCPU_COUNTS(events_counts, 2);
PERCPU_COUNTS(syscall_counts, AIOBPF_MAX_SYSCALLS);
PERCPU_COUNTS(fallthrough_counts, AIOBPF_MAX_SYSCALLS);
PERCPU_COUNTS(dispatch_counts, 4);

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2); /* [0] scope flags, [1] default action */
    __type(key, u32);
    __type(value, u32);
} dispatch_config SEC(".maps");

/* tid and tgid sets are bitmaps indexed by id (one u64 word per 64 ids, sized by user space to
 * cover pid_max): an array lookup the verifier inlines, where a hash lookup would add tens of
 * nanoseconds to every syscall of the machine. */
#define ID_BITMAP(name)                                                                            \
    struct {                                                                                       \
        __uint(type, BPF_MAP_TYPE_ARRAY);                                                          \
        __uint(max_entries, 1);                                                                    \
        __type(key, u32);                                                                          \
        __type(value, u64);                                                                        \
    } name SEC(".maps")

ID_BITMAP(scope_tids);
ID_BITMAP(scope_tgids);

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, AIOBPF_FILTER_CAPACITY);
    __type(key, u32);
    __type(value, u8);
} scope_uids SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, AIOBPF_FILTER_CAPACITY);
    __type(key, struct comm_key);
    __type(value, u8);
} scope_comms SEC(".maps");

static __always_inline void bump(void *counts, u32 slot)
{
    aiobpf_count(bpf_map_lookup_elem(counts, &slot));
}

static __always_inline u32 config_value(u32 index)
{
    u32 *value = bpf_map_lookup_elem(&dispatch_config, &index);
    return value ? *value : 0;
}

static __always_inline int has_id(void *bitmap, u32 id)
{
    u32 index = id >> 6;
    u64 *word = bpf_map_lookup_elem(bitmap, &index);
    return word && (*word >> (id & 63)) & 1;
}

static __always_inline int in_scope(void)
{
    u32 flags = config_value(0);
    if (!flags)
        return 1;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if ((flags & AIOBPF_SCOPE_TID) && !has_id(&scope_tids, (u32)pid_tgid))
        return 0;
    if ((flags & AIOBPF_SCOPE_TGID) && !has_id(&scope_tgids, pid_tgid >> 32))
        return 0;
    if (flags & AIOBPF_SCOPE_UID) {
        u32 uid = (u32)bpf_get_current_uid_gid();
        if (!bpf_map_lookup_elem(&scope_uids, &uid))
            return 0;
    }
    if (flags & AIOBPF_SCOPE_COMM) {
        struct comm_key key = {};
        bpf_get_current_comm(key.comm, sizeof(key.comm));
        if (!bpf_map_lookup_elem(&scope_comms, &key))
            return 0;
    }
    return 1;
}

static __always_inline int emit(struct bpf_raw_tracepoint_args *ctx, u32 nr)
{
    bump(&events_counts, AIOBPF_PRODUCED);
    struct syscall_event *ev = bpf_ringbuf_reserve(&events, sizeof(struct syscall_event), 0);
    if (!ev) {
        bump(&events_counts, AIOBPF_DROPPED);
        return 0;
    }
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    ev->args[0] = PT_REGS_PARM1_CORE_SYSCALL(regs);
    ev->args[1] = PT_REGS_PARM2_CORE_SYSCALL(regs);
    ev->args[2] = PT_REGS_PARM3_CORE_SYSCALL(regs);
    ev->args[3] = PT_REGS_PARM4_CORE_SYSCALL(regs);
    ev->args[4] = PT_REGS_PARM5_CORE_SYSCALL(regs);
    ev->args[5] = SYSCALL_ARG6(regs);
    u64 pid_tgid = bpf_get_current_pid_tgid();
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->pid = pid_tgid >> 32;
    ev->tid = (u32)pid_tgid;
    ev->uid = (u32)bpf_get_current_uid_gid();
    ev->nr = nr;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

static __always_inline int in_compat_syscall(void)
{
#if defined(__TARGET_ARCH_x86)
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    return BPF_CORE_READ(task, thread_info.status) & TS_COMPAT;
#else
    return 0;
#endif
}

SEC("raw_tp/sys_enter")
int dispatch(struct bpf_raw_tracepoint_args *ctx)
{
    if (!in_scope())
        return 0;
    if (in_compat_syscall()) {
        bump(&dispatch_counts, AIOBPF_STAT_COMPAT);
        return 0;
    }
    bump(&dispatch_counts, AIOBPF_STAT_IN_SCOPE);
    u32 nr = (u32)ctx->args[1];
    bpf_tail_call(ctx, &handlers, nr);
    /* Only reached when the slot is empty (or nr is out of range): the default action. */
    bump(&dispatch_counts, AIOBPF_STAT_FELL_THROUGH);
    u32 action = config_value(1);
    if (action == AIOBPF_DEFAULT_COUNT)
        bump(&fallthrough_counts, nr);
    else if (action == AIOBPF_DEFAULT_EMIT)
        emit(ctx, nr);
    return 0;
}

SEC("raw_tp")
int handle_emit(struct bpf_raw_tracepoint_args *ctx)
{
    return emit(ctx, (u32)ctx->args[1]);
}

SEC("raw_tp")
int handle_count(struct bpf_raw_tracepoint_args *ctx)
{
    bump(&syscall_counts, (u32)ctx->args[1]);
    return 0;
}

SEC("raw_tp")
int handle_ignore(struct bpf_raw_tracepoint_args *ctx)
{
    bump(&dispatch_counts, AIOBPF_STAT_IGNORED);
    return 0;
}
