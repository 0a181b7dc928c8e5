/* run queue latency: how long each task waited to run once it was runnable, as a log2
 * histogram of microseconds kept in the kernel (BCC's and libbpf-tools' runqlat).
 *
 * A task becomes runnable when it is woken (sched_wakeup, sched_wakeup_new) or preempted while
 * still running (sched_switch with its state TASK_RUNNING); it runs at the sched_switch that
 * switches to it. Raw tracepoints, whose task pointers are read with CO-RE (tp_btf needs BPF
 * trampolines, which this kernel refuses). An enqueue time the full table had no room for is
 * counted in latency_dropped, not lost silently.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "aiobpf.h"
#include "aiobpf_log2.h"

char LICENSE[] SEC("license") = "GPL";

#define TASK_RUNNING 0
#define SLOTS 64

const volatile u32 target_tgid = 0; /* 0: every process */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, u32);
    __type(value, u64);
} enqueued SEC(".maps");

AIOBPF_HISTOGRAM(latency, SLOTS);

/* the task's state field was renamed in 5.14 */
struct task_struct___old {
    long state;
} __attribute__((preserve_access_index));

static __always_inline long task_state(struct task_struct *task)
{
    if (bpf_core_field_exists(task->__state))
        return BPF_CORE_READ(task, __state);
    return BPF_CORE_READ((struct task_struct___old *)task, state);
}

static __always_inline int enqueue(struct task_struct *task)
{
    u32 pid = BPF_CORE_READ(task, pid);
    if (!pid)
        return 0; /* the idle task */
    if (target_tgid && BPF_CORE_READ(task, tgid) != target_tgid)
        return 0;
    u64 now = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&enqueued, &pid, &now, BPF_ANY) < 0) {
        u32 zero = 0;
        aiobpf_count(bpf_map_lookup_elem(&latency_dropped, &zero));
    }
    return 0;
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(on_wakeup, struct task_struct *task)
{
    return enqueue(task);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(on_wakeup_new, struct task_struct *task)
{
    return enqueue(task);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
    if (task_state(prev) == TASK_RUNNING)
        enqueue(prev);
    u32 pid = BPF_CORE_READ(next, pid);
    u64 *since = bpf_map_lookup_elem(&enqueued, &pid);
    if (!since)
        return 0;
    s64 waited = bpf_ktime_get_ns() - *since;
    bpf_map_delete_elem(&enqueued, &pid);
    if (waited < 0)
        return 0;
    AIOBPF_HIST_ADD(latency, SLOTS, waited);
    return 0;
}
