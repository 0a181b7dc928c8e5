/* Process lifecycle: every process from fork to exit, one record for each fork, exec and exit.
 *
 * On the scheduler's raw tracepoints, which hand over the tasks themselves:
 * - sched_process_fork(parent, child): a new process. A new thread (child->pid != child->tgid)
 *   is not one and is left out.
 * - sched_process_exec(task, old_pid, bprm): the process runs a new program; the record carries
 *   its ancestors' tgids (real_parent upwards, nearest first, AIOBPF_PROCESS_DEPTH at most),
 *   read from the kernel at that moment: /proc would race a short-lived parent.
 * - sched_process_exit(task): a thread ends. A process ends with its last thread: do_exit
 *   decrements signal->live before this tracepoint, so the thread that finds it at 0 is the
 *   last, and its exit_code (the wait status: the code in bits 8-15, or the signal in bits 0-6
 *   and the core-dump flag 0x80) is the process's. One exit record per process, whichever
 *   thread is last: the leader may end first.
 *
 * Following a tree: when user space turns tracking on (process_config[0] & TRACK), only the
 * processes in `tracked` are reported; a fork of a tracked process adds the child (a full set
 * is counted in process_counts' third slot, not silent), an exit removes it. A process that
 * double-forks or is reparented to init stays followed: membership goes by the fork, not the
 * parent it has later.
 *
 * Loss accounting as every aiobpf ring: produced and dropped per CPU in events_counts.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

struct process_event {
    u64 timestamp_ns;
    u64 start_ns; /* the process's start (its leader's start_time, CLOCK_MONOTONIC) */
    u64 cgroup_id;
    u32 kind;
    u32 pid;
    u32 tid;
    u32 ppid;
    u32 uid;
    u32 gid;
    s32 exit_code;
    u32 depth;
    u32 ancestors[AIOBPF_PROCESS_DEPTH];
    char comm[AIOBPF_COMM_SIZE];
    char parent_comm[AIOBPF_COMM_SIZE];
    char filename[AIOBPF_FILENAME_SIZE];
};

/* keeps the struct in the object's BTF, where only a local uses it */
const struct process_event *unused_process_event __attribute__((unused));

/* resized by user space before loading; counts: [produced, dropped, tracked set full] */
AIOBPF_RING(events, 1 << 20, 3);

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, AIOBPF_TRACKED_CAPACITY);
    __type(key, u32);
    __type(value, u8);
} tracked SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, AIOBPF_FILTER_CAPACITY);
    __type(key, u32);
    __type(value, u8);
} filter_uids SEC(".maps");

/* [0]: AIOBPF_PROCESS_TRACK, AIOBPF_PROCESS_QUIET, AIOBPF_FILTER_UID, and a bit per kind
 * not wanted (AIOBPF_PROCESS_SKIP_FORK, AIOBPF_PROCESS_SKIP_EXEC, AIOBPF_PROCESS_SKIP_EXIT) */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u32);
} process_config SEC(".maps");

static __always_inline void count(u32 slot)
{
    aiobpf_count(bpf_map_lookup_elem(&events_counts, &slot));
}

static __always_inline u32 process_flags(void)
{
    u32 zero = 0;
    u32 *word = bpf_map_lookup_elem(&process_config, &zero);
    return word ? *word : 0;
}

/* Whether a record of ``skip``'s kind for a process of ``tgid`` run by ``uid`` is reported
 * under ``flags``. */
static __always_inline bool wanted(u32 flags, u32 skip, u32 tgid, u32 uid)
{
    if (flags & (AIOBPF_PROCESS_QUIET | skip))
        return false; /* following a tree for the execve object, or a kind not wanted */
    if ((flags & AIOBPF_PROCESS_TRACK) && !bpf_map_lookup_elem(&tracked, &tgid))
        return false;
    if ((flags & AIOBPF_FILTER_UID) && !bpf_map_lookup_elem(&filter_uids, &uid))
        return false;
    return true;
}

/* A record reserved and its common fields filled; NULL (counted lost) when the ring is full. */
static __always_inline struct process_event *reserve(u32 kind, struct task_struct *task)
{
    count(AIOBPF_PRODUCED);
    struct process_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
    if (!ev) {
        count(AIOBPF_DROPPED);
        return NULL;
    }
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->start_ns = BPF_CORE_READ(task, group_leader, start_time);
    ev->cgroup_id = bpf_get_current_cgroup_id();
    ev->kind = kind;
    ev->pid = BPF_CORE_READ(task, tgid);
    ev->tid = BPF_CORE_READ(task, pid);
    ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
    ev->uid = BPF_CORE_READ(task, real_cred, uid.val);
    ev->gid = BPF_CORE_READ(task, real_cred, gid.val);
    ev->exit_code = 0;
    ev->depth = 0;
    BPF_CORE_READ_STR_INTO(&ev->comm, task, comm);
    ev->parent_comm[0] = 0;
    ev->filename[0] = 0;
    return ev;
}

SEC("raw_tp/sched_process_fork")
int BPF_PROG(process_fork, struct task_struct *parent, struct task_struct *child)
{
    u32 tgid = BPF_CORE_READ(child, tgid);
    if (BPF_CORE_READ(child, pid) != tgid)
        return 0; /* a thread, not a process */
    u32 flags = process_flags();
    u32 parent_tgid = BPF_CORE_READ(parent, tgid);
    u32 uid = BPF_CORE_READ(child, real_cred, uid.val);
    if ((flags & AIOBPF_PROCESS_TRACK) && bpf_map_lookup_elem(&tracked, &parent_tgid)) {
        u8 yes = 1;
        if (bpf_map_update_elem(&tracked, &tgid, &yes, BPF_NOEXIST) != 0)
            count(AIOBPF_TRACKED_FULL);
    }
    if (!wanted(flags, AIOBPF_PROCESS_SKIP_FORK, tgid, uid))
        return 0;
    struct process_event *ev = reserve(AIOBPF_PROCESS_FORK, child);
    if (!ev)
        return 0;
    ev->ppid = parent_tgid;
    BPF_CORE_READ_STR_INTO(&ev->parent_comm, parent, comm);
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
    u32 tgid = BPF_CORE_READ(task, tgid);
    if (!wanted(process_flags(), AIOBPF_PROCESS_SKIP_EXEC, tgid,
                BPF_CORE_READ(task, real_cred, uid.val)))
        return 0;
    struct process_event *ev = reserve(AIOBPF_PROCESS_EXEC, task);
    if (!ev)
        return 0;
    bpf_probe_read_kernel_str(&ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
    struct task_struct *up = BPF_CORE_READ(task, real_parent);
    u32 depth = 0;
    for (int level = 0; level < AIOBPF_PROCESS_DEPTH; level++) {
        if (!up)
            break;
        u32 ancestor = BPF_CORE_READ(up, tgid);
        if (ancestor == 0)
            break; /* past init: the idle task */
        ev->ancestors[level] = ancestor;
        depth = level + 1;
        up = BPF_CORE_READ(up, real_parent);
    }
    ev->depth = depth;
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *task)
{
    if (BPF_CORE_READ(task, signal, live.counter) != 0)
        return 0; /* other threads of the process live on */
    u32 tgid = BPF_CORE_READ(task, tgid);
    u32 flags = process_flags();
    bool report =
        wanted(flags, AIOBPF_PROCESS_SKIP_EXIT, tgid, BPF_CORE_READ(task, real_cred, uid.val));
    if (flags & AIOBPF_PROCESS_TRACK)
        bpf_map_delete_elem(&tracked, &tgid);
    if (!report)
        return 0;
    struct process_event *ev = reserve(AIOBPF_PROCESS_EXIT, task);
    if (!ev)
        return 0;
    ev->exit_code = BPF_CORE_READ(task, exit_code);
    bpf_ringbuf_submit(ev, 0);
    return 0;
}
