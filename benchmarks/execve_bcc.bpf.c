/* BCC's way, for the benchmark's baseline: aiobpf's execve program as BCC compiles it (BCC's
 * macros and map methods), consumed by BCC's ring buffer callback. aiobpf ships the same
 * program as a CO-RE object (src/aiobpf/programs/execve.bpf.c).
 *
 * exec events: every execve and execveat, paired entry/exit as execsnoop does.
 *
 * On sys_enter_execve / sys_enter_execveat the program records who is executing what (the
 * syscall, dirfd and flags, filename, argv, ids, parent) in a map keyed by the calling thread;
 * on the syscall's return it completes that record with the result and the new comm, and
 * submits it to the ring. Failed execs are reported with their negative errno.
 *
 * Pairing follows the kernel's own paths, not the syscall names:
 * - a successful execveat returns through sys_exit_execve, a failed one through
 *   sys_exit_execveat: both exits look the record up the same way;
 * - a thread other than the leader that execs successfully takes the leader's pid on the way
 *   (de_thread), so it returns under another thread id than it entered with. sched_process_exec
 *   reports both ids (old_pid, pid): the pending record moves to the new id there.
 *
 * Nothing is lost silently: a record the pending map has no room for is counted as produced and
 * dropped at once, like a record the ring has no room for.
 *
 * Compiled with -DAIOBPF_TASK_REAL_PARENT=<off> -DAIOBPF_TASK_TGID=<off>: offsets of
 * task_struct members read from the running kernel's BTF, because the headers BCC compiles
 * against may belong to another kernel version; -DAIOBPF_ARGS_KEPT=<n>: how many arguments of
 * argv to keep.
 */
#include "aiobpf.h"

struct execve_event {
    u64 timestamp_ns;
    u64 cgroup_id;
    u32 pid;
    u32 tid;
    u32 ppid;
    u32 uid;
    u32 gid;
    s32 retval;
    s32 dirfd;
    u32 flags;
    u8 syscall;
    u8 truncated;
    u16 argc;
    u32 args_size;
    char comm[AIOBPF_COMM_SIZE];
    char message[12];
    char filename[AIOBPF_FILENAME_SIZE];
    char args[AIOBPF_ARGS_SIZE];
};

BPF_RINGBUF_OUTPUT(events, AIOBPF_RING_PAGES);
BPF_PERCPU_ARRAY(events_counts, u64, 2);
/* In-flight execs. Not preallocated: a record is large, and few execs are in flight at once. */
BPF_F_TABLE("hash", u32, struct execve_event, execve_pending, 10240, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(execve_scratch, struct execve_event, 1);
/* AIOBPF_ARGS_SIZE zero bytes to clear a record's argv with: too large a memset for BPF code. */
struct zero_args {
    char bytes[AIOBPF_ARGS_SIZE];
};
BPF_ARRAY(zero_args, struct zero_args, 1);

/* Filters pushed down from user space (aiobpf.filter_uid / filter_pid / filter_comm /
 * filter_cgroup): a flag word says which sets are in force, each set is a hash of allowed
 * values. User space changes them while the program runs. */
BPF_ARRAY(filter_config, u32, 1);
BPF_HASH(filter_uids, u32, u8, AIOBPF_FILTER_CAPACITY);
BPF_HASH(filter_pids, u32, u8, AIOBPF_FILTER_CAPACITY);
BPF_HASH(filter_comms, struct comm_key, u8, AIOBPF_FILTER_CAPACITY);
BPF_HASH(filter_cgroups, u64, u8, AIOBPF_FILTER_CAPACITY);

static __always_inline u32 filter_flags(void)
{
    u32 zero = 0;
    u32 *flags = filter_config.lookup(&zero);
    return flags ? *flags : 0;
}

/* Whether the current task is in one of the allowed cgroups or below one: a container's or a
 * pod's cgroup often has cgroups of its own under it. The task's ancestors are its cgroup v2
 * ids at each level from the root (level 0) down; past the task's own level the helper
 * returns 0. */
static __always_inline bool in_allowed_cgroup(void)
{
    for (int level = 0; level < AIOBPF_CGROUP_DEPTH; level++) {
        u64 id = bpf_get_current_ancestor_cgroup_id(level);
        if (id == 0)
            return false;
        if (filter_cgroups.lookup(&id))
            return true;
    }
    return false;
}

static __always_inline void count_lost(void)
{
    u32 slot = AIOBPF_PRODUCED;
    aiobpf_count(events_counts.lookup(&slot));
    slot = AIOBPF_DROPPED;
    aiobpf_count(events_counts.lookup(&slot));
}

/* Moves ``value`` (or nothing) to ``key``; a move the map has no room for is counted lost. */
static __always_inline void put_pending(u32 key, struct execve_event *value)
{
    if (!value)
        execve_pending.delete(&key);
    else if (execve_pending.update(&key, value) != 0)
        count_lost();
}

/* Whether the user string at ``text`` ends at index ``at`` (a read that filled its buffer
 * took the whole string only when the byte it replaced with NUL was the NUL). */
static __always_inline bool ends_at(const char *text, u32 at)
{
    char c = 1;
    bpf_probe_read_user(&c, 1, text + at);
    return c == 0;
}

static __always_inline void read_args(struct execve_event *ev, const char *const *argv)
{
    u32 offset = 0;
    u16 argc = 0;
    for (int i = 0; i < AIOBPF_ARGS_KEPT; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) < 0 || !arg)
            goto done;
        if (offset > AIOBPF_ARGS_SIZE - AIOBPF_ARG_SIZE) { /* no room left for a whole argument */
            ev->truncated |= AIOBPF_TRUNCATED_ARGS;
            goto done;
        }
        long length = bpf_probe_read_user_str(&ev->args[offset], AIOBPF_ARG_SIZE, arg);
        if (length <= 0)
            goto done;
        if (length == AIOBPF_ARG_SIZE && !ends_at(arg, AIOBPF_ARG_SIZE - 1))
            ev->truncated |= AIOBPF_TRUNCATED_ARGS;
        offset += length;
        argc++;
    }
    {
        const char *more = NULL;
        if (bpf_probe_read_user(&more, sizeof(more), &argv[AIOBPF_ARGS_KEPT]) == 0 && more)
            ev->truncated |= AIOBPF_TRUNCATED_ARGS;
    }
done:
    ev->argc = argc;
    ev->args_size = offset;
}

static __always_inline int on_enter(u8 syscall, s32 dirfd, u32 flags, const char *filename,
                                    const char *const *argv)
{
    u32 zero = 0;
    struct execve_event *ev = execve_scratch.lookup(&zero);
    if (!ev)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    u32 tgid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    u32 uid = (u32)uid_gid;
    u32 filter = filter_flags();
    if ((filter & AIOBPF_FILTER_UID) && !filter_uids.lookup(&uid))
        return 0;
    if ((filter & AIOBPF_FILTER_PID) && !filter_pids.lookup(&tgid))
        return 0;
    if ((filter & AIOBPF_FILTER_CGROUP) && !in_allowed_cgroup())
        return 0;
    ev->timestamp_ns = 0;
    /* exec does not move a task to another cgroup: its cgroup at entry is the event's */
    ev->cgroup_id = bpf_get_current_cgroup_id();
    ev->pid = tgid;
    ev->tid = tid;
    ev->uid = uid;
    ev->gid = uid_gid >> 32;
    ev->retval = 0;
    ev->dirfd = dirfd;
    ev->flags = flags;
    ev->syscall = syscall;
    ev->truncated = 0;

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
     * end: without clearing, a short string would carry the tail of a longer earlier one. */
    __builtin_memset(ev->filename, 0, sizeof(ev->filename));
    struct zero_args *zeros = zero_args.lookup(&zero);
    if (zeros)
        bpf_probe_read_kernel(ev->args, sizeof(ev->args), zeros);
    long length = bpf_probe_read_user_str(ev->filename, sizeof(ev->filename), filename);
    if (length < 0)
        ev->filename[0] = 0;
    else if (length == sizeof(ev->filename) && !ends_at(filename, sizeof(ev->filename) - 1))
        ev->truncated |= AIOBPF_TRUNCATED_FILENAME;
    read_args(ev, argv);
    if (execve_pending.update(&tid, ev) != 0)
        count_lost(); /* no room to follow it: counted, not silent */
    return 0;
}

static __always_inline int on_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct execve_event *pending = execve_pending.lookup(&tid);
    if (!pending)
        return 0; /* filtered out at entry, or entered before the program was attached */
    if (filter_flags() & AIOBPF_FILTER_COMM) {
        struct comm_key key = {};
        bpf_get_current_comm(key.comm, sizeof(key.comm)); /* the comm after the exec */
        if (!filter_comms.lookup(&key)) {
            execve_pending.delete(&tid);
            return 0;
        }
    }
    u32 slot = AIOBPF_PRODUCED;
    aiobpf_count(events_counts.lookup(&slot));
    struct execve_event *ev = events.ringbuf_reserve(sizeof(struct execve_event));
    if (!ev) {
        slot = AIOBPF_DROPPED;
        aiobpf_count(events_counts.lookup(&slot));
        execve_pending.delete(&tid);
        return 0;
    }
    bpf_probe_read_kernel(ev, sizeof(*ev), pending); /* too large for an inlined memcpy */
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->retval = ret;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    events.ringbuf_submit(ev, 0);
    execve_pending.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return on_enter(AIOBPF_SYSCALL_EXECVE, -100 /* AT_FDCWD */, 0, args->filename, args->argv);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return on_enter(AIOBPF_SYSCALL_EXECVEAT, (s32)args->fd, (u32)args->flags, args->filename,
                    args->argv);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 old_tid = args->old_pid;
    u32 tid = args->pid;
    if (old_tid == tid)
        return 0;
    /* A thread other than the leader exec'd: de_thread() swapped its id with the leader's, so
     * it returns from the syscall as ``tid`` and the old leader (killed, perhaps in an exec of
     * its own) as ``old_tid``. Their pending records swap keys the same way. The scratch
     * record holds one while the other moves: programs do not nest on a CPU. */
    u32 zero = 0;
    struct execve_event *scratch = execve_scratch.lookup(&zero);
    if (!scratch)
        return 0;
    struct execve_event *mine = execve_pending.lookup(&old_tid);
    struct execve_event *leader = execve_pending.lookup(&tid);
    if (leader)
        bpf_probe_read_kernel(scratch, sizeof(*scratch), leader);
    else if (!mine)
        return 0;
    put_pending(tid, mine);
    put_pending(old_tid, leader ? scratch : NULL);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    return on_exit(args->ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    return on_exit(args->ret);
}
