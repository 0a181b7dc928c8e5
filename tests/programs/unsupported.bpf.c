// Sections this kernel cannot run beside one it can: a kprobe, an fentry and a tp_btf.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_uid = 0;
__u64 tracepoint_hits = 0;

SEC("kprobe/do_sys_openat2")
int on_open_kprobe(void *ctx)
{
    return 0;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(on_unlink_fentry)
{
    return 0;
}

SEC("tp_btf/sched_process_exec")
int on_exec_btf(void *ctx)
{
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(void *ctx)
{
    if ((__u32)bpf_get_current_uid_gid() == target_uid)
        __sync_fetch_and_add(&tracepoint_hits, 1);
    return 0;
}
