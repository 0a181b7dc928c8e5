// A program the verifier refuses, at its end, after a long log: a load's error must carry the
// reason, which comes last in the verifier's words.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 total = 0;

SEC("tracepoint/sock/inet_sock_set_state")
int on_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
    __u64 sum = 0;
#pragma unroll
    for (int i = 0; i < 96; i++)
        sum += bpf_get_prandom_u32();
    total = sum;
    __u8 address[16];
    // a copy from the context at a computed offset: refused
    __builtin_memcpy(address, ctx->family == 10 ? ctx->saddr_v6 : ctx->daddr_v6, 16);
    return address[0];
}
