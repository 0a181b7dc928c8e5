// A program as a user writes one: its own record struct, parameters, a ring, a map, globals.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct origin {
    __u32 uid;
    char tag[8];
};

struct exec_record {
    __u32 pid;
    struct origin origin;
    char comm[16];
    __u16 sizes[3];
    __u64 serial;
};

// keeps struct exec_record in BTF even if only locals used it
struct exec_record *unused_exec_record __attribute__((unused));

const volatile __u32 target_uid = 0;
const volatile char tag[8] = "none";
const volatile __s16 offset = 0;
__u64 seen = 0;
__u64 limit_hits = 7;

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} records SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} records_counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, __u32);
    __type(value, __u64);
} per_pid SEC(".maps");

// the same records on a perf buffer, for kernels before rings (sized by libbpf: one per CPU)
struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, sizeof(__u32));
} perf_records SEC(".maps");

static void count(__u32 slot)
{
    __u64 *value = bpf_map_lookup_elem(&records_counts, &slot);
    if (value)
        *value += 1;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(void *ctx)
{
    __u32 uid = bpf_get_current_uid_gid();
    if (uid != target_uid)
        return 0;
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    __u64 one = 1, *calls = bpf_map_lookup_elem(&per_pid, &pid);
    if (calls)
        __sync_fetch_and_add(calls, 1);
    else
        bpf_map_update_elem(&per_pid, &pid, &one, BPF_ANY);
    __u64 serial = __sync_fetch_and_add(&seen, 1);
    count(0);
    struct exec_record *record = bpf_ringbuf_reserve(&records, sizeof(*record), 0);
    if (!record) {
        count(1);
        return 0;
    }
    record->pid = pid;
    record->origin.uid = uid;
    for (int i = 0; i < sizeof(record->origin.tag); i++)
        record->origin.tag[i] = tag[i];
    bpf_get_current_comm(record->comm, sizeof(record->comm));
    record->sizes[0] = 1 + offset;
    record->sizes[1] = 2 + offset;
    record->sizes[2] = 3 + offset;
    record->serial = serial;
    bpf_perf_event_output(ctx, &perf_records, BPF_F_CURRENT_CPU, record, sizeof(*record));
    bpf_ringbuf_submit(record, 0);
    return 0;
}

// attached by a call: counts getppid() in the process given
__u64 getppid_calls = 0;

SEC("uprobe")
int on_getppid(void *ctx)
{
    __sync_fetch_and_add(&getppid_calls, 1);
    return 0;
}
