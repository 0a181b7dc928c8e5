/* Exec calls per uid (execve and execveat), kept in a kernel hash map uid -> count.
 *
 * Counted at the calls' entry, by the caller's uid. A uid the full map has no room for is not
 * lost silently: counts_dropped (per CPU) counts those calls.
 *
 * While counts_config[0] is 1, only the uids present in uid_filter are counted: both are maps,
 * so user space can change them while the program runs.
 *
 * A CO-RE object, prebuilt at set-up and loaded by libbpf (see execve.bpf.c).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} counts_dropped SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u32);
} counts_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, AIOBPF_FILTER_CAPACITY);
    __type(key, u32);
    __type(value, u8);
} uid_filter SEC(".maps");

static __always_inline int count_exec(void)
{
    u32 uid = (u32)bpf_get_current_uid_gid();
    u32 zero = 0;
    u32 *filtered = bpf_map_lookup_elem(&counts_config, &zero);
    if (filtered && *filtered && !bpf_map_lookup_elem(&uid_filter, &uid))
        return 0;
    u64 *count = bpf_map_lookup_elem(&counts, &uid);
    if (!count) { /* a new uid: put a zero in (another CPU may have raced us to it) */
        u64 initial = 0;
        bpf_map_update_elem(&counts, &uid, &initial, BPF_NOEXIST);
        count = bpf_map_lookup_elem(&counts, &uid);
    }
    if (count) {
        __sync_fetch_and_add(count, 1);
    } else {
        aiobpf_count(bpf_map_lookup_elem(&counts_dropped, &zero));
    }
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int sys_enter_execve(void *ctx)
{
    return count_exec();
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int sys_enter_execveat(void *ctx)
{
    return count_exec();
}
