/* log2 slots as BCC's bpf_log2l() makes them, and as aiobpf.operators.Histogram reads them:
 * slot 0 holds 0, slot i holds 2**(i-1) to 2**i - 1 (the value's bit length). */
#ifndef AIOBPF_LOG2_H
#define AIOBPF_LOG2_H

static __always_inline u32 aiobpf_bit_length32(u32 v)
{
    u32 r = 0, shift;
    shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
    shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
    shift = (v > 0xF) << 2; v >>= shift; r |= shift;
    shift = (v > 0x3) << 1; v >>= shift; r |= shift;
    r |= (v >> 1);
    return v ? r + 1 : 0;
}

static __always_inline u32 aiobpf_bit_length(u64 v)
{
    u32 high = v >> 32;
    return high ? aiobpf_bit_length32(high) + 32 : aiobpf_bit_length32((u32)v);
}

/* A log2 histogram ``name`` of ``slots`` u64 counters, and ``name##_dropped``, a per-CPU
 * count of values that could not be timed (a full table of start times): the map pair the
 * histogram tools read (aiobpf.sources.LoadedMap; ``<map>_dropped`` into each reading). */
#define AIOBPF_HISTOGRAM(name, slots)                                                           \
    struct {                                                                                    \
        __uint(type, BPF_MAP_TYPE_ARRAY);                                                       \
        __uint(max_entries, slots);                                                             \
        __type(key, u32);                                                                       \
        __type(value, u64);                                                                     \
    } name SEC(".maps");                                                                        \
    struct {                                                                                    \
        __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                                \
        __uint(max_entries, 1);                                                                 \
        __type(key, u32);                                                                       \
        __type(value, u64);                                                                     \
    } name##_dropped SEC(".maps")

/* Counts one value (nanoseconds) in slot bit_length(value / 1000) of a log2 histogram of
 * microseconds kept in ``hist``, an array of ``slots`` u64 counters; the last slot takes what
 * is larger. */
#define AIOBPF_HIST_ADD(hist, slots, ns)                                                        \
    do {                                                                                        \
        u32 slot_ = aiobpf_bit_length((u64)(ns) / 1000);                                        \
        if (slot_ >= (slots))                                                                   \
            slot_ = (slots) - 1;                                                                \
        u64 *count_ = bpf_map_lookup_elem(&(hist), &slot_);                                     \
        if (count_)                                                                             \
            __sync_fetch_and_add(count_, 1);                                                    \
    } while (0)

#endif
