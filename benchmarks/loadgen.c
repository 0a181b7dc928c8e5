/* Load generator: calls getppid() N times, unpaced or paced at RATE calls/s, after a byte on stdin.
 *
 *   loadgen N RATE      (RATE 0 = as fast as possible)
 *
 * Prints "<calls> <seconds>" when done: what it actually offered.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s N RATE\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    double rate = atof(argv[2]);
    /* die with the process that started us, however it ends (SIGKILL included) */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    char go;
    if (read(0, &go, 1) != 1)
        return 1;
    double start = now();
    for (long i = 0; i < n; i++) {
        if (rate > 0 && (i & 63) == 0)
            while (now() < start + i / rate)
                ;
        syscall(SYS_getppid); /* not the libc wrapper: glibc may not cache it, but be sure */
    }
    printf("%ld %.6f\n", n, now() - start);
    return 0;
}
