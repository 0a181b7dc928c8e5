/* A known load: one record per getppid() call of one process.
 *
 * The test suite and the benchmarks make a process call getppid() exactly N times and expect
 * exactly N produced records, so loss accounting can be checked exactly and throughput measured
 * against a producer that runs as fast as the kernel lets it.
 *
 * Compiled with -DAIOBPF_RING_PAGES, -DAIOBPF_TARGET_TGID, -DAIOBPF_PAD_BYTES (record size is
 * 32 + AIOBPF_PAD_BYTES) and -DAIOBPF_SUBMIT_FLAGS (0, BPF_RB_NO_WAKEUP or BPF_RB_FORCE_WAKEUP).
 * With -DAIOBPF_PERF_OUTPUT=1 the records go to a perf buffer instead (BPF_PERF_OUTPUT, sized by
 * user space when it opens it), so that the benchmarks can compare BCC's perf buffer consumer;
 * a failed perf_submit (that CPU's buffer full) counts as dropped, as a failed reserve does.
 */
#include "aiobpf.h"

struct load_record {
    u64 seq;
    u64 timestamp_ns;
    u32 tgid;
    u32 cpu;
    u64 reserved;
#if AIOBPF_PAD_BYTES > 0
    char pad[AIOBPF_PAD_BYTES];
#endif
};

#if AIOBPF_PERF_OUTPUT
BPF_PERF_OUTPUT(events);
BPF_PERCPU_ARRAY(scratch, struct load_record, 1); /* records can outgrow the 512-byte stack */
#else
BPF_RINGBUF_OUTPUT(events, AIOBPF_RING_PAGES);
#endif
BPF_PERCPU_ARRAY(events_counts, u64, 2);
BPF_ARRAY(load_sequence, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if ((bpf_get_current_pid_tgid() >> 32) != AIOBPF_TARGET_TGID)
        return 0;
    u32 zero = 0;
    u64 *next = load_sequence.lookup(&zero);
    if (!next)
        return 0;
    u64 seq = __sync_fetch_and_add(next, 1);
    u32 slot = AIOBPF_PRODUCED;
    aiobpf_count(events_counts.lookup(&slot));
#if AIOBPF_PERF_OUTPUT
    struct load_record *rec = scratch.lookup(&zero);
#else
    struct load_record *rec = events.ringbuf_reserve(sizeof(struct load_record));
#endif
    if (!rec) {
        slot = AIOBPF_DROPPED;
        aiobpf_count(events_counts.lookup(&slot));
        return 0;
    }
    rec->seq = seq;
    rec->timestamp_ns = bpf_ktime_get_ns();
    rec->tgid = AIOBPF_TARGET_TGID;
    rec->cpu = bpf_get_smp_processor_id();
    rec->reserved = 0;
#if AIOBPF_PERF_OUTPUT
    if (events.perf_submit(args, rec, sizeof(*rec)) < 0) {
        slot = AIOBPF_DROPPED;
        aiobpf_count(events_counts.lookup(&slot));
    }
#else
    events.ringbuf_submit(rec, AIOBPF_SUBMIT_FLAGS);
#endif
    return 0;
}
