/* Load generator: calls getppid() N times, unpaced or paced at RATE calls/s, after a byte on stdin.
 *
 *   loadgen N RATE [PATTERN]      (RATE 0 = as fast as possible)
 *
 * PATTERN says how the calls are spaced at that rate:
 *   burst    the pace is kept every 64 calls, which then come back to back (the default)
 *   even     every call waits for its own time: one call every 1/RATE seconds
 *   poisson  gaps drawn from an exponential distribution of mean 1/RATE (independent arrivals,
 *            as many unrelated processes make them), from a fixed seed
 *
 * Prints "<calls> <seconds>" when done: what it actually offered.
 */
#define _GNU_SOURCE
#include <math.h>
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

static unsigned long long state = 0x9E3779B97F4A7C15ull; /* xorshift64*: fixed seed, reproducible */

static double uniform(void)
{
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return ((state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s N RATE [burst|even|poisson]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    double rate = atof(argv[2]);
    const char *pattern = argc == 4 ? argv[3] : "burst";
    int burst = strcmp(pattern, "burst") == 0, poisson = strcmp(pattern, "poisson") == 0;
    if (!burst && !poisson && strcmp(pattern, "even") != 0) {
        fprintf(stderr, "unknown pattern %s\n", pattern);
        return 2;
    }
    /* die with the process that started us, however it ends (SIGKILL included) */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    char go;
    if (read(0, &go, 1) != 1)
        return 1;
    double start = now(), due = start;
    for (long i = 0; i < n; i++) {
        if (rate > 0) {
            if (poisson)
                due += -log(1.0 - uniform()) / rate;
            else
                due = start + i / rate;
            if (!burst || (i & 63) == 0)
                while (now() < due)
                    ;
        }
        syscall(SYS_getppid); /* not the libc wrapper: glibc may not cache it, but be sure */
    }
    printf("%ld %.6f\n", n, now() - start);
    return 0;
}
