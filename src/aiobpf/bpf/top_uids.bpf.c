/* The seed's example 2: a hash map uid -> number of execve calls, kept in the kernel.
 *
 * With -DAIOBPF_UID_FILTER, only the uids present in uid_filter are counted: the filter is a
 * map, so user space can change it while the program runs.
 */
BPF_HASH(counts, u32, u64, 10240);
#ifdef AIOBPF_UID_FILTER
BPF_HASH(uid_filter, u32, u8, 1024);
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    u32 uid = (u32)bpf_get_current_uid_gid();
#ifdef AIOBPF_UID_FILTER
    if (!uid_filter.lookup(&uid))
        return 0;
#endif
    counts.atomic_increment(uid);
    return 0;
}
