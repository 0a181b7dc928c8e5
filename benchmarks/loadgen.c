/* Load generator: calls getppid() N times, unpaced or paced at RATE calls/s, after a byte on stdin.
 *
 *   loadgen N RATE [PATTERN [SOURCES]]      (RATE 0 = as fast as possible)
 *
 * PATTERN says how the calls are spaced at that rate:
 *   burst    the pace is kept every 64 calls, which then come back to back (the default)
 *   even     every call waits for its own time: one call every 1/RATE seconds
 *   poisson  gaps drawn from an exponential distribution of mean 1/RATE (independent arrivals,
 *            as many unrelated processes make them), from a fixed seed
 *
 * SOURCES (1 by default) splits the load between that many threads, each making N/SOURCES calls
 * at RATE/SOURCES with arrivals of its own (its own seed; even ones out of phase), as several
 * processes would: their calls interleave. One source waits for each call's time spinning
 * (exact); several sleep until it (clock_nanosleep, timer slack 1 ns), as processes do.
 *
 * Prints "<calls> <seconds>" when done: what it actually offered.
 */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct source {
    long calls;
    double rate;
    double phase; /* seconds after the start of its first call (even) */
    unsigned long long state; /* xorshift64*: a fixed seed per source, reproducible */
    int burst, poisson, sleeps;
    double start;
};

static double uniform(unsigned long long *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return ((*state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static void wait_until(double due, int sleeps)
{
    if (!sleeps) {
        while (now() < due)
            ;
        return;
    }
    struct timespec at = {.tv_sec = (time_t)due, .tv_nsec = (long)((due - (time_t)due) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0)
        ;
}

static void *run(void *arg)
{
    struct source *source = arg;
    double due = source->start + source->phase;
    for (long i = 0; i < source->calls; i++) {
        if (source->rate > 0) {
            if (source->poisson)
                due += -log(1.0 - uniform(&source->state)) / source->rate;
            else
                due = source->start + source->phase + i / source->rate;
            if (!source->burst || (i & 63) == 0)
                wait_until(due, source->sleeps);
        }
        syscall(SYS_getppid); /* not the libc wrapper: glibc may not cache it, but be sure */
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s N RATE [burst|even|poisson [SOURCES]]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    double rate = atof(argv[2]);
    const char *pattern = argc >= 4 ? argv[3] : "burst";
    int sources = argc == 5 ? atoi(argv[4]) : 1;
    int burst = strcmp(pattern, "burst") == 0, poisson = strcmp(pattern, "poisson") == 0;
    if (!burst && !poisson && strcmp(pattern, "even") != 0) {
        fprintf(stderr, "unknown pattern %s\n", pattern);
        return 2;
    }
    if (sources < 1 || sources > 64) {
        fprintf(stderr, "SOURCES must be 1 to 64\n");
        return 2;
    }
    /* die with the process that started us, however it ends (SIGKILL included) */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (sources > 1)
        prctl(PR_SET_TIMERSLACK, 1UL); /* sleeping sources wake on time, not 50 us late */
    if (getppid() == 1)
        return 1;
    char go;
    if (read(0, &go, 1) != 1)
        return 1;
    struct source all[64];
    pthread_t threads[64];
    double start = now();
    for (int k = 0; k < sources; k++) {
        double each = rate / sources;
        all[k] = (struct source){
            .calls = n / sources + (k < n % sources),
            .rate = each,
            .phase = each > 0 ? (double)k / rate : 0.0,
            .state = 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull * (unsigned long long)k,
            .burst = burst,
            .poisson = poisson,
            .sleeps = sources > 1,
            .start = start,
        };
        if (sources == 1)
            run(&all[0]);
        else if (pthread_create(&threads[k], NULL, run, &all[k]) != 0)
            return 1;
    }
    for (int k = 0; sources > 1 && k < sources; k++)
        pthread_join(threads[k], NULL);
    printf("%ld %.6f\n", n, now() - start);
    return 0;
}
