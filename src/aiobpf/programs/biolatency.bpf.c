/* block I/O latency: from a request's issue to the device until its completion, as a log2
 * histogram of microseconds kept in the kernel (BCC's and libbpf-tools' biolatency).
 *
 * Raw tracepoints (block_rq_issue, block_rq_complete: tp_btf needs BPF trampolines, which this
 * kernel refuses), their request pointers read with CO-RE; the prototypes of Linux 5.11 and
 * later, whose first argument is the request. An issue time the full table had no room for is
 * counted in latency_dropped, not lost silently.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "aiobpf.h"
#include "aiobpf_log2.h"

char LICENSE[] SEC("license") = "GPL";

#define SLOTS 64
#define MINORBITS 20

const volatile u32 target_dev = 0; /* the disk's dev_t, the kernel's encoding; 0: every disk */
const volatile u8 filter_dev = 0;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, u64);
    __type(value, u64);
} issued SEC(".maps");

AIOBPF_HISTOGRAM(latency, SLOTS);

static __always_inline u32 disk_of(struct request *rq)
{
    struct gendisk *disk = BPF_CORE_READ(rq, q, disk);
    if (!disk)
        return 0;
    return ((u32)BPF_CORE_READ(disk, major) << MINORBITS) | BPF_CORE_READ(disk, first_minor);
}

SEC("raw_tp/block_rq_issue")
int BPF_PROG(on_issue, struct request *rq)
{
    if (filter_dev && disk_of(rq) != target_dev)
        return 0;
    u64 key = (u64)rq, now = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&issued, &key, &now, BPF_ANY) < 0) {
        u32 zero = 0;
        aiobpf_count(bpf_map_lookup_elem(&latency_dropped, &zero));
    }
    return 0;
}

SEC("raw_tp/block_rq_complete")
int BPF_PROG(on_complete, struct request *rq)
{
    u64 key = (u64)rq;
    u64 *since = bpf_map_lookup_elem(&issued, &key);
    if (!since)
        return 0;
    s64 took = bpf_ktime_get_ns() - *since;
    bpf_map_delete_elem(&issued, &key);
    if (took < 0)
        return 0;
    AIOBPF_HIST_ADD(latency, SLOTS, took);
    return 0;
}
