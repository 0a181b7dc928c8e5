/* Loss accounting shared by every ring buffer program aiobpf ships.
 *
 * The kernel keeps no drop counter for BPF ring buffers: a full ring only makes
 * bpf_ringbuf_reserve() return NULL to the program. So each program counts, per CPU, every
 * record it tries to submit (slot 0, "produced") and every reservation that failed (slot 1,
 * "dropped"), in a per-CPU array named <ring>_counts. User space sums the CPUs; once the ring is
 * drained, received + dropped == produced.
 *
 * BCC rewrites map method calls (counts.lookup) only outside macros, so programs write the two
 * calls themselves; this header holds what they share.
 */
#ifndef AIOBPF_H
#define AIOBPF_H

/* The numbers C and Python share come from aiobpf/programs/_constants.py as -D flags
 * (include_flags()): the C keeps no copy of them. */
#if !defined(AIOBPF_PRODUCED) || !defined(AIOBPF_COMM_SIZE) || !defined(AIOBPF_FILTER_CAPACITY)
#error "compile with aiobpf.programs._text.include_flags(): the shared constants are missing"
#endif

/* A task's comm as a hash key (filters, scopes, counts by comm). */
struct comm_key {
    char comm[AIOBPF_COMM_SIZE];
};

/* A ring buffer map ``name`` of ``bytes`` (user space may resize it before loading) and its
 * per-CPU counters ``name##_counts`` of ``slots`` slots: [produced, dropped, ...]. Written for
 * libbpf's map definitions (CO-RE objects); BCC programs declare theirs with BCC's macros. */
#define AIOBPF_RING(name, bytes, slots)                                                         \
    struct {                                                                                    \
        __uint(type, BPF_MAP_TYPE_RINGBUF);                                                     \
        __uint(max_entries, bytes);                                                             \
    } name SEC(".maps");                                                                        \
    struct {                                                                                    \
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                                \
        __uint(max_entries, slots);                                                             \
        __type(key, u32);                                                                       \
        __type(value, u64);                                                                     \
    } name##_counts SEC(".maps")

static __always_inline void aiobpf_count(u64 *slot)
{
    if (slot)
        *slot += 1; /* per-CPU slot, and tracing programs do not nest on one CPU */
}

#endif
