/* The floor: a C consumer of a BPF ring buffer, libbpf's ring_buffer__consume on epoll.
 *
 *   ringpoll FD        (FD: the ring map's fd, inherited from the process that loaded it)
 *
 * Says "ready" once it waits on the ring, then counts the records (and samples the end-to-end latency of every 64th from its kernel
 * timestamp, the u64 at offset 8) until its stdin is closed, then takes what is left and prints
 * one JSON line: received, wakeups (epoll returns with the ring ready), cpu_s (its own user +
 * system time), latency p50/p99 in microseconds.
 */
#define _GNU_SOURCE
#include <bpf/libbpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define SAMPLE_EVERY 64
#define MAX_SAMPLES (1 << 20)

static long long received;
static long long samples[MAX_SAMPLES];
static long n_samples;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int on_record(void *ctx, void *data, size_t size)
{
    (void)ctx;
    received++;
    if (received % SAMPLE_EVERY == 0 && size >= 16 && n_samples < MAX_SAMPLES) {
        uint64_t timestamp;
        memcpy(&timestamp, (char *)data + 8, sizeof(timestamp));
        samples[n_samples++] = now_ns() - (long long)timestamp;
    }
    return 0;
}

static double cpu_seconds(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec * 1e-6;
}

static int compare(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s RING_MAP_FD\n", argv[0]);
        return 2;
    }
    struct ring_buffer *ring = ring_buffer__new(atoi(argv[1]), on_record, NULL, NULL);
    if (!ring) {
        perror("ring_buffer__new");
        return 1;
    }
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ring_ready = {.events = EPOLLIN, .data.u32 = 1};
    struct epoll_event stop = {.events = EPOLLIN | EPOLLHUP, .data.u32 = 0};
    epoll_ctl(epoll, EPOLL_CTL_ADD, ring_buffer__epoll_fd(ring), &ring_ready);
    epoll_ctl(epoll, EPOLL_CTL_ADD, 0, &stop);
    printf("ready\n"); /* the generator may start */
    fflush(stdout);
    double start = cpu_seconds();
    long long wakeups = 0;
    int running = 1;
    while (running) {
        struct epoll_event events[2];
        int n = epoll_wait(epoll, events, 2, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == 1) {
                wakeups++;
                ring_buffer__consume(ring);
            } else {
                running = 0;
            }
        }
    }
    ring_buffer__consume(ring);
    double cpu = cpu_seconds() - start;
    qsort(samples, n_samples, sizeof(samples[0]), compare);
    double p50 = n_samples ? samples[n_samples / 2] / 1e3 : 0;
    double p99 = n_samples ? samples[n_samples * 99 / 100] / 1e3 : 0;
    printf("{\"received\": %lld, \"wakeups\": %lld, \"cpu_s\": %.6f, \"latency_p50_us\": %.3f, "
           "\"latency_p99_us\": %.3f}\n",
           received, wakeups, cpu, p50, p99);
    ring_buffer__free(ring);
    return 0;
}
