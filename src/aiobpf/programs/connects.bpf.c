/* connect events: every TCP connect attempt (an active open), from the sock:inet_sock_set_state
 * tracepoint (this kernel has no kprobes, which BCC's and libbpf-tools' tcpconnect use).
 *
 * A connect moves its socket from TCP_CLOSE to TCP_SYN_SENT in the connecting task's own
 * context, once the source port is chosen: that transition is the attempt, with the caller's
 * ids, both addresses and both ports. A CO-RE object loaded by aiobpf.load(): its filters are
 * parameters (const volatile), set before the load.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "aiobpf.h"

char LICENSE[] SEC("license") = "GPL";

#define FAMILY_INET 2
#define FAMILY_INET6 10

struct connect_event {
    u64 timestamp_ns;
    u32 pid;
    u32 tid;
    u32 uid;
    u16 family;
    u16 sport;
    u16 dport;
    u16 unused;
    u8 saddr[16];
    u8 daddr[16];
    char comm[AIOBPF_COMM_SIZE];
};
struct connect_event *unused_connect_event __attribute__((unused));

/* Parameters: all ones (and port 0) mean no filter. */
const volatile u32 target_uid = (u32)-1;
const volatile u32 target_pid = (u32)-1;
const volatile u16 target_port = 0;

AIOBPF_RING(events, 1 << 18, 2);

static __always_inline void count(u32 slot)
{
    aiobpf_count(bpf_map_lookup_elem(&events_counts, &slot));
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
    if (ctx->protocol != IPPROTO_TCP || ctx->oldstate != TCP_CLOSE ||
        ctx->newstate != TCP_SYN_SENT)
        return 0;
    if (target_port && ctx->dport != target_port)
        return 0;
    u64 id = bpf_get_current_pid_tgid();
    if (target_pid != (u32)-1 && (id >> 32) != target_pid)
        return 0;
    u32 uid = (u32)bpf_get_current_uid_gid();
    if (target_uid != (u32)-1 && uid != target_uid)
        return 0;
    count(AIOBPF_PRODUCED);
    struct connect_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
    if (!ev) {
        count(AIOBPF_DROPPED);
        return 0;
    }
    ev->timestamp_ns = bpf_ktime_get_ns();
    ev->pid = id >> 32;
    ev->tid = (u32)id;
    ev->uid = uid;
    ev->family = ctx->family;
    ev->sport = ctx->sport;
    ev->dport = ctx->dport;
    ev->unused = 0;
    /* the context's arrays are read by the helper: the verifier allows only fixed-offset
     * loads from a tracepoint's context */
    __builtin_memset(ev->saddr, 0, sizeof(ev->saddr));
    __builtin_memset(ev->daddr, 0, sizeof(ev->daddr));
    if (ctx->family == FAMILY_INET6) {
        bpf_probe_read_kernel(ev->saddr, 16, ctx->saddr_v6);
        bpf_probe_read_kernel(ev->daddr, 16, ctx->daddr_v6);
    } else {
        bpf_probe_read_kernel(ev->saddr, 4, ctx->saddr);
        bpf_probe_read_kernel(ev->daddr, 4, ctx->daddr);
    }
    bpf_get_current_comm(ev->comm, sizeof(ev->comm));
    bpf_ringbuf_submit(ev, 0);
    return 0;
}
