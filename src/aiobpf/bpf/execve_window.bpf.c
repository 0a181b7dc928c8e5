/* execve calls counted in the kernel by uid or by comm, for windows drained from user space.
 *
 * The counterpart of window_count over execve events: instead of an event per exec through the
 * ring, one hash entry per key, incremented at sys_exit_execve (the comm is then the new
 * program's, as in the events) and taken out by user space once per window.
 * Compiled with -DAIOBPF_KEY_COMM to count by comm, by uid otherwise.
 */
struct comm_key {
    char comm[16];
};

#ifdef AIOBPF_KEY_COMM
BPF_HASH(window_counts, struct comm_key, u64, 10240);
#else
BPF_HASH(window_counts, u32, u64, 10240);
#endif

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
#ifdef AIOBPF_KEY_COMM
    struct comm_key key = {};
    bpf_get_current_comm(key.comm, sizeof(key.comm));
#else
    u32 key = (u32)bpf_get_current_uid_gid();
#endif
    window_counts.atomic_increment(key);
    return 0;
}
