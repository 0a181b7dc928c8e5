/* Exec calls (execve and execveat) counted in the kernel by uid or by comm, for windows
 * drained from user space.
 *
 * The counterpart of window_count over exec events: instead of an event per exec through the
 * ring, one hash entry per key, incremented when the call returns (the comm is then the new
 * program's, as in the events) and taken out by user space once per window. A successful
 * execveat returns through sys_exit_execve, a failed one through sys_exit_execveat: each call
 * is counted once. A key the full map has no room for is counted in window_counts_dropped.
 * Compiled with -DAIOBPF_KEY_COMM to count by comm, by uid otherwise.
 */
#include "aiobpf.h"

#ifdef AIOBPF_KEY_COMM
BPF_HASH(window_counts, struct comm_key, u64, 10240);
#else
BPF_HASH(window_counts, u32, u64, 10240);
#endif
BPF_PERCPU_ARRAY(window_counts_dropped, u64, 1);

static __always_inline int count_exec(void)
{
#ifdef AIOBPF_KEY_COMM
    struct comm_key key = {};
    bpf_get_current_comm(key.comm, sizeof(key.comm));
#else
    u32 key = (u32)bpf_get_current_uid_gid();
#endif
    u64 zero = 0;
    u64 *count = window_counts.lookup_or_try_init(&key, &zero);
    if (count) {
        __sync_fetch_and_add(count, 1);
    } else {
        u32 slot = 0;
        aiobpf_count(window_counts_dropped.lookup(&slot));
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    return count_exec();
}

TRACEPOINT_PROBE(syscalls, sys_exit_execveat)
{
    return count_exec();
}
