/* exec events: every execve and execveat, paired entry/exit as execsnoop does.
 *
 * On sys_enter_execve / sys_enter_execveat the program records who is executing what (the
 * syscall, dirfd and flags, filename, argv, ids, parent, cgroup) in the calling task's own
 * storage; on the syscall's return it completes that record with the result and the new comm,
 * and submits it to the ring. Failed execs are reported with their negative errno.
 *
 * Pairing follows the kernel's own paths, not the syscall names:
 * - a successful execveat returns through sys_exit_execve, a failed one through
 *   sys_exit_execveat: both exits look the record up the same way;
 * - a thread other than the leader that execs successfully takes the leader's pid on the way
 *   (de_thread), so it returns under another thread id than it entered with; its task_struct,
 *   and the record stored on it, stay the same.
 *
 * Nothing is lost silently: a record the kernel has no memory to keep is counted as produced and
 * dropped at once, like a record the ring has no room for.
 *
 * A CO-RE object: compiled once by clang against the kernel's BTF (vmlinux.h), loaded by libbpf,
 * which relocates the task_struct reads for the running kernel. User space sizes the ring
 * (``events``'s max_entries) before loading, and writes how many arguments of argv to keep
 * (``execve_config``) before attaching.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

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

AIOBPF_RING(events, 1 << 20, 2); /* resized by user space before loading */

/* In-flight execs, in the exec'ing task's own storage: an entry lives as long as its task
 * and costs nothing to anyone else. A fixed-size table keyed by thread let a local user who held
 * processes mid-exec (ptrace's exec stop) fill it, and every other exec on the machine was then
 * dropped. The storage also follows the task through de_thread(): a thread other than the
 * leader that execs keeps its task_struct, and so its record, under the leader's id. */
struct pending_exec {
    u32 live;
    u32 unused;
    struct execve_event ev;
};
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct pending_exec);
} execve_pending SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct execve_event);
} execve_scratch SEC(".maps");

/* AIOBPF_ARGS_SIZE zero bytes to clear a record's argv with: too large a memset for BPF code. */
struct zero_args {
    char bytes[AIOBPF_ARGS_SIZE];
};
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct zero_args);
} zero_args SEC(".maps");

/* [0]: how many arguments of argv to keep (at most AIOBPF_MAX_ARGS). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u32);
} execve_config SEC(".maps");

/* Filters pushed down from user space (aiobpf.filter_uid / filter_pid / filter_comm /
 * filter_cgroup): a flag word says which sets are in force, each set is a hash of allowed
 * values. User space changes them while the program runs. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u32);
} filter_config SEC(".maps");

#define FILTER_SET(name, key_type)                                                              \
    struct {                                                                                    \
        __uint(type, BPF_MAP_TYPE_HASH);                                                        \
        __uint(max_entries, AIOBPF_FILTER_CAPACITY);                                            \
        __type(key, key_type);                                                                  \
        __type(value, u8);                                                                      \
    } name SEC(".maps")

/* The processes filter_descendants follows: the process object's tracked set, whose fd user
 * space gives this object before loading it (bpf_map__reuse_fd); otherwise an empty set that
 * takes no memory and is never looked at. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __uint(max_entries, AIOBPF_TRACKED_CAPACITY);
    __type(key, u32);
    __type(value, u8);
} tracked SEC(".maps");

FILTER_SET(filter_uids, u32);
FILTER_SET(filter_pids, u32);
FILTER_SET(filter_comms, struct comm_key);
FILTER_SET(filter_cgroups, u64);

static __always_inline u32 config_word(void *map)
{
    u32 zero = 0;
    u32 *word = bpf_map_lookup_elem(map, &zero);
    return word ? *word : 0;
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
        if (bpf_map_lookup_elem(&filter_cgroups, &id))
            return true;
    }
    return false;
}

static __always_inline void count(u32 slot)
{
    aiobpf_count(bpf_map_lookup_elem(&events_counts, &slot));
}

static __always_inline void count_lost(void)
{
    count(AIOBPF_PRODUCED);
    count(AIOBPF_DROPPED);
}

/* Whether the user string at ``text`` ends at index ``at`` (a read that filled its buffer
 * took the whole string only when the byte it replaced with NUL was the NUL). */
static __always_inline bool ends_at(const char *text, u32 at)
{
    char c = 1;
    bpf_probe_read_user(&c, 1, text + at);
    return c == 0;
}

/* Reads argv into a record, one argument per bpf_loop() turn: the verifier checks the loop's
 * body once, whatever the number of turns (an unrolled or bounded loop of 64 turns is too much
 * for it). */
struct args_reader {
    struct execve_event *ev;
    const char *const *argv;
    u32 offset;
    u32 max_args;
    u16 argc;
};

static long read_arg(u32 index, void *data)
{
    struct args_reader *reader = data;
    struct execve_event *ev = reader->ev;
    const char *arg = NULL;
    if (bpf_probe_read_user(&arg, sizeof(arg), &reader->argv[index]) < 0 || !arg)
        return 1; /* the end of argv */
    if (index >= reader->max_args) { /* one more than the source keeps */
        ev->truncated |= AIOBPF_TRUNCATED_ARGS;
        return 1;
    }
    u32 offset = reader->offset;
    if (offset > AIOBPF_ARGS_SIZE - AIOBPF_ARG_SIZE) { /* no room left for a whole argument */
        ev->truncated |= AIOBPF_TRUNCATED_ARGS;
        return 1;
    }
    long length = bpf_probe_read_user_str(&ev->args[offset], AIOBPF_ARG_SIZE, arg);
    if (length <= 0)
        return 1;
    if (length == AIOBPF_ARG_SIZE && !ends_at(arg, AIOBPF_ARG_SIZE - 1))
        ev->truncated |= AIOBPF_TRUNCATED_ARGS;
    /* Both written so that the verifier sees the same state at every turn and checks the body
     * a few times, not once per turn (four times less work, the better part of loading): the
     * mask keeps the offset's known range fixed (the sum is at most AIOBPF_ARGS_SIZE, so it
     * changes nothing), and argc follows the turn's index instead of counting up. */
    reader->offset = (offset + length) & (2 * AIOBPF_ARGS_SIZE - 1);
    reader->argc = index + 1;
    return 0;
}

static __always_inline void read_args(struct execve_event *ev, const char *const *argv)
{
    u32 max_args = config_word(&execve_config);
    if (max_args > AIOBPF_MAX_ARGS)
        max_args = AIOBPF_MAX_ARGS;
    struct args_reader reader = {.ev = ev, .argv = argv, .max_args = max_args};
    bpf_loop(max_args + 1, read_arg, &reader, 0); /* the turn after the last: any more? */
    ev->argc = reader.argc;
    ev->args_size = reader.offset;
}

static __always_inline int on_enter(u8 syscall, s32 dirfd, u32 flags, const char *filename,
                                    const char *const *argv)
{
    u32 zero = 0;
    struct execve_event *ev = bpf_map_lookup_elem(&execve_scratch, &zero);
    if (!ev)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    u32 tgid = pid_tgid >> 32;
    u32 tid = (u32)pid_tgid;
    u32 uid = (u32)uid_gid;
    u32 filter = config_word(&filter_config);
    if ((filter & AIOBPF_FILTER_UID) && !bpf_map_lookup_elem(&filter_uids, &uid))
        return 0;
    if ((filter & AIOBPF_FILTER_PID) && !bpf_map_lookup_elem(&filter_pids, &tgid))
        return 0;
    if ((filter & AIOBPF_FILTER_CGROUP) && !in_allowed_cgroup())
        return 0;
    if ((filter & AIOBPF_FILTER_DESCENDANTS) && !bpf_map_lookup_elem(&tracked, &tgid))
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
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    ev->ppid = BPF_CORE_READ(task, real_parent, tgid);

    __builtin_memset(ev->comm, 0, sizeof(ev->comm));
    __builtin_memcpy(ev->message, "hello world", 12);
    /* The scratch record is reused per CPU and bpf_probe_read_user_str() stops at the string's
     * end: without clearing, a short string would carry the tail of a longer earlier one. */
    __builtin_memset(ev->filename, 0, sizeof(ev->filename));
    struct zero_args *zeros = bpf_map_lookup_elem(&zero_args, &zero);
    if (zeros)
        bpf_probe_read_kernel(ev->args, sizeof(ev->args), zeros);
    long length = bpf_probe_read_user_str(ev->filename, sizeof(ev->filename), filename);
    if (length < 0)
        ev->filename[0] = 0;
    else if (length == sizeof(ev->filename) && !ends_at(filename, sizeof(ev->filename) - 1))
        ev->truncated |= AIOBPF_TRUNCATED_FILENAME;
    read_args(ev, argv);
    struct pending_exec *pending = bpf_task_storage_get(
        &execve_pending, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!pending) {
        count_lost(); /* no memory to follow it: counted, not silent */
        return 0;
    }
    bpf_probe_read_kernel(&pending->ev, sizeof(pending->ev), ev);
    pending->live = 1;
    return 0;
}

static __always_inline int on_exit(long ret)
{
    struct task_struct *task = bpf_get_current_task_btf();
    struct pending_exec *pending = bpf_task_storage_get(&execve_pending, task, 0, 0);
    if (!pending || !pending->live)
        return 0; /* filtered out at entry, or entered before the program was attached */
    pending->live = 0;
    if (config_word(&filter_config) & AIOBPF_FILTER_COMM) {
        struct comm_key key = {};
        bpf_get_current_comm(key.comm, sizeof(key.comm)); /* the comm after the exec */
        if (!bpf_map_lookup_elem(&filter_comms, &key)) {
            bpf_task_storage_delete(&execve_pending, task);
            return 0;
        }
    }
    count(AIOBPF_PRODUCED);
    struct execve_event *ev = bpf_ringbuf_reserve(&events, sizeof(struct execve_event), 0);
    if (!ev) {
        count(AIOBPF_DROPPED);
        bpf_task_storage_delete(&execve_pending, task);
        return 0;
    }
    bpf_probe_read_kernel(ev, sizeof(*ev), &pending->ev); /* too large for an inlined memcpy */
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->retval = ret;
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    bpf_ringbuf_submit(ev, 0);
    bpf_task_storage_delete(&execve_pending, task); /* memory only while an exec is in flight */
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int sys_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
    return on_enter(AIOBPF_SYSCALL_EXECVE, -100 /* AT_FDCWD */, 0, (const char *)ctx->args[0],
                    (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int sys_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
    return on_enter(AIOBPF_SYSCALL_EXECVEAT, (s32)ctx->args[0], (u32)ctx->args[4],
                    (const char *)ctx->args[1], (const char *const *)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_execve")
int sys_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
    return on_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int sys_exit_execveat(struct trace_event_raw_sys_exit *ctx)
{
    return on_exit(ctx->ret);
}
