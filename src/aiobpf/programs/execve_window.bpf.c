/* Exec calls (execve and execveat) counted in the kernel by uid or by comm, for windows
 * drained from user space.
 *
 * The counterpart of window_count over exec events: instead of an event per exec through the
 * ring, one hash entry per key, incremented when the call returns (the comm is then the new
 * program's, as in the events) and taken out by user space once per window. A successful
 * execveat returns through sys_exit_execve, a failed one through sys_exit_execveat: each call
 * is counted once. A key the full map has no room for is counted in window_counts_dropped.
 *
 * Built twice into CO-RE objects (see execve.bpf.c): execve_window_uid.bpf.o counts by uid,
 * execve_window_comm.bpf.o (-DAIOBPF_KEY_COMM) by comm.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

#ifdef AIOBPF_KEY_COMM
typedef struct comm_key window_key;
#else
typedef u32 window_key;
#endif

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, window_key);
    __type(value, u64);
} window_counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} window_counts_dropped SEC(".maps");

static __always_inline int count_exec(void)
{
#ifdef AIOBPF_KEY_COMM
    window_key key = {};
    bpf_get_current_comm(key.comm, sizeof(key.comm));
#else
    window_key key = (u32)bpf_get_current_uid_gid();
#endif
    u64 *count = bpf_map_lookup_elem(&window_counts, &key);
    if (!count) { /* a new key: put a zero in (another CPU may have raced us to it) */
        u64 initial = 0;
        bpf_map_update_elem(&window_counts, &key, &initial, BPF_NOEXIST);
        count = bpf_map_lookup_elem(&window_counts, &key);
    }
    if (count) {
        __sync_fetch_and_add(count, 1);
    } else {
        u32 zero = 0;
        aiobpf_count(bpf_map_lookup_elem(&window_counts_dropped, &zero));
    }
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int sys_exit_execve(void *ctx)
{
    return count_exec();
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int sys_exit_execveat(void *ctx)
{
    return count_exec();
}
