/* Loss accounting shared by every ring buffer program aiobpf ships.
 *
 * The kernel keeps no drop counter for BPF ring buffers: a full ring only makes
 * bpf_ringbuf_reserve() return NULL to the program. So each program counts, per CPU, every
 * record it tries to submit (slot 0, "produced") and every reservation that failed (slot 1,
 * "dropped"), in a per-CPU array named <ring>_counts. User space sums the CPUs; once the ring is
 * drained, received + dropped == produced.
 *
 * BCC rewrites map method calls (counts.lookup) only outside macros, so programs write the two
 * calls themselves; this header holds the slot numbers and the one helper they share.
 */
#ifndef AIOBPF_H
#define AIOBPF_H

#define AIOBPF_PRODUCED 0
#define AIOBPF_DROPPED 1

static __always_inline void aiobpf_count(u64 *slot)
{
    if (slot)
        *slot += 1; /* per-CPU slot, and tracing programs do not nest on one CPU */
}

#endif
