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
 * handle_ignore (counted as ignored, nothing else). User handlers are compiled in with them.
 *
 * 32-bit (ia32) syscalls on x86-64 number the calls differently (11 is execve there, munmap
 * here): they are not dispatched, only counted (AIOBPF_STAT_COMPAT), rather than mislabelled. A task
 * is in such a call when its thread_info has TS_COMPAT, as the kernel's in_ia32_syscall() asks.
 *
 * Compiled with -DAIOBPF_RING_PAGES, -DAIOBPF_PID_WORDS (pid_max / 64),
 * -DAIOBPF_REGS_{DI,SI,DX,R10,R8,R9} (offsets in struct pt_regs of the syscall argument
 * registers) and on x86-64 -DAIOBPF_THREAD_STATUS (offset of thread_info.status in
 * task_struct), read from the running kernel's BTF.
 */
#include "aiobpf.h"

#define TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h */

struct syscall_event {
    u64 timestamp_ns;
    u64 args[6];
    u32 pid;
    u32 tid;
    u32 uid;
    u32 nr;
    char comm[AIOBPF_COMM_SIZE];
};

BPF_PROG_ARRAY(handlers, AIOBPF_MAX_SYSCALLS);
BPF_RINGBUF_OUTPUT(events, AIOBPF_RING_PAGES);
BPF_PERCPU_ARRAY(events_counts, u64, 2);
BPF_PERCPU_ARRAY(syscall_counts, u64, AIOBPF_MAX_SYSCALLS);
BPF_PERCPU_ARRAY(fallthrough_counts, u64, AIOBPF_MAX_SYSCALLS);
BPF_PERCPU_ARRAY(dispatch_counts, u64, 4);
BPF_ARRAY(config, u32, 2); /* [0] scope flags, [1] default action */
/* tid and tgid sets are bitmaps indexed by id (AIOBPF_PID_WORDS u64 words cover pid_max): an
 * array lookup the verifier inlines, where a hash lookup would add tens of nanoseconds to every
 * syscall of the machine. */
BPF_ARRAY(scope_tids, u64, AIOBPF_PID_WORDS);
BPF_ARRAY(scope_tgids, u64, AIOBPF_PID_WORDS);
BPF_HASH(scope_uids, u32, u8, AIOBPF_FILTER_CAPACITY);
BPF_HASH(scope_comms, struct comm_key, u8, AIOBPF_FILTER_CAPACITY);

static __always_inline void bump(u64 *slot)
{
    if (slot)
        *slot += 1;
}

static __always_inline u32 config_value(u32 index)
{
    u32 *value = config.lookup(&index);
    return value ? *value : 0;
}

static __always_inline int has_id(u64 *word, u32 id)
{
    return word && (*word >> (id & 63)) & 1;
}

static __always_inline int in_scope(void)
{
    u32 flags = config_value(0);
    if (!flags)
        return 1;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (flags & AIOBPF_SCOPE_TID) {
        u32 tid = (u32)pid_tgid;
        u32 index = tid >> 6;
        if (!has_id(scope_tids.lookup(&index), tid))
            return 0;
    }
    if (flags & AIOBPF_SCOPE_TGID) {
        u32 tgid = pid_tgid >> 32;
        u32 index = tgid >> 6;
        if (!has_id(scope_tgids.lookup(&index), tgid))
            return 0;
    }
    if (flags & AIOBPF_SCOPE_UID) {
        u32 uid = (u32)bpf_get_current_uid_gid();
        if (!scope_uids.lookup(&uid))
            return 0;
    }
    if (flags & AIOBPF_SCOPE_COMM) {
        struct comm_key key = {};
        bpf_get_current_comm(key.comm, sizeof(key.comm));
        if (!scope_comms.lookup(&key))
            return 0;
    }
    return 1;
}

static __always_inline int emit(struct bpf_raw_tracepoint_args *ctx, u32 nr)
{
    u32 slot = AIOBPF_PRODUCED;
    bump(events_counts.lookup(&slot));
    struct syscall_event *ev = events.ringbuf_reserve(sizeof(struct syscall_event));
    if (!ev) {
        slot = AIOBPF_DROPPED;
        bump(events_counts.lookup(&slot));
        return 0;
    }
    char *regs = (char *)ctx->args[0];
    bpf_probe_read_kernel(&ev->args[0], 8, regs + AIOBPF_REGS_DI);
    bpf_probe_read_kernel(&ev->args[1], 8, regs + AIOBPF_REGS_SI);
    bpf_probe_read_kernel(&ev->args[2], 8, regs + AIOBPF_REGS_DX);
    bpf_probe_read_kernel(&ev->args[3], 8, regs + AIOBPF_REGS_R10);
    bpf_probe_read_kernel(&ev->args[4], 8, regs + AIOBPF_REGS_R8);
    bpf_probe_read_kernel(&ev->args[5], 8, regs + AIOBPF_REGS_R9);
    u64 pid_tgid = bpf_get_current_pid_tgid();
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->pid = pid_tgid >> 32;
    ev->tid = (u32)pid_tgid;
    ev->uid = (u32)bpf_get_current_uid_gid();
    ev->nr = nr;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    events.ringbuf_submit(ev, 0);
    return 0;
}

static __always_inline int in_compat_syscall(void)
{
#ifdef AIOBPF_THREAD_STATUS
    char *task = (char *)bpf_get_current_task();
    u32 status = 0;
    bpf_probe_read_kernel(&status, sizeof(status), task + AIOBPF_THREAD_STATUS);
    return status & TS_COMPAT;
#else
    return 0;
#endif
}

int dispatch(struct bpf_raw_tracepoint_args *ctx)
{
    if (!in_scope())
        return 0;
    u32 slot = AIOBPF_STAT_COMPAT;
    if (in_compat_syscall()) {
        bump(dispatch_counts.lookup(&slot));
        return 0;
    }
    slot = AIOBPF_STAT_IN_SCOPE;
    bump(dispatch_counts.lookup(&slot));
    u32 nr = (u32)ctx->args[1];
    handlers.call(ctx, nr);
    /* Only reached when the slot is empty (or nr is out of range): the default action. */
    slot = AIOBPF_STAT_FELL_THROUGH;
    bump(dispatch_counts.lookup(&slot));
    u32 action = config_value(1);
    if (action == AIOBPF_DEFAULT_COUNT)
        bump(fallthrough_counts.lookup(&nr));
    else if (action == AIOBPF_DEFAULT_EMIT)
        emit(ctx, nr);
    return 0;
}

int handle_emit(struct bpf_raw_tracepoint_args *ctx)
{
    return emit(ctx, (u32)ctx->args[1]);
}

int handle_count(struct bpf_raw_tracepoint_args *ctx)
{
    u32 nr = (u32)ctx->args[1];
    bump(syscall_counts.lookup(&nr));
    return 0;
}

int handle_ignore(struct bpf_raw_tracepoint_args *ctx)
{
    u32 slot = AIOBPF_STAT_IGNORED;
    bump(dispatch_counts.lookup(&slot));
    return 0;
}

/* AIOBPF_USER_HANDLERS */
