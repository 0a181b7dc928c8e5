/* Exec calls per uid (execve and execveat), kept in a kernel hash map uid -> count.
 *
 * Counted at the calls' entry, by the caller's uid. A uid the full map has no room for is not
 * lost silently: counts_dropped (per CPU) counts those calls.
 *
 * With -DAIOBPF_UID_FILTER, only the uids present in uid_filter are counted: the filter is a
 * map, so user space can change it while the program runs.
 */
#include "aiobpf.h"

BPF_HASH(counts, u32, u64, 10240);
BPF_PERCPU_ARRAY(counts_dropped, u64, 1);
#ifdef AIOBPF_UID_FILTER
BPF_HASH(uid_filter, u32, u8, AIOBPF_FILTER_CAPACITY);
#endif

static __always_inline int count_exec(void)
{
    u32 uid = (u32)bpf_get_current_uid_gid();
#ifdef AIOBPF_UID_FILTER
    if (!uid_filter.lookup(&uid))
        return 0;
#endif
    u64 zero = 0;
    u64 *count = counts.lookup_or_try_init(&uid, &zero);
    if (count) {
        __sync_fetch_and_add(count, 1);
    } else {
        u32 slot = 0;
        aiobpf_count(counts_dropped.lookup(&slot));
    }
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return count_exec();
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return count_exec();
}
