/* Exec storm: runs /bin/true N times (vfork + execve + wait), unpaced or paced at RATE execs/s,
 * after a byte on stdin.
 *
 *   execstorm N [RATE]      (RATE 0 or absent = as fast as possible)
 *
 * Prints "<execs> <seconds>" when done: what it actually offered.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s N [RATE]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    double rate = argc == 3 ? atof(argv[2]) : 0;
    /* die with the process that started us, however it ends (SIGKILL included) */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        return 1;
    char go;
    if (read(0, &go, 1) != 1)
        return 1;
    char *args[] = {"/bin/true", NULL};
    char *env[] = {NULL};
    double start = now();
    for (long i = 0; i < n; i++) {
        if (rate > 0) {
            double due = start + i / rate, left;
            while ((left = due - now()) > 0) {
                if (left > 2e-4) {  /* exec rates are low: sleep most of the wait */
                    struct timespec pause = {0, (long)((left - 1e-4) * 1e9)};
                    nanosleep(&pause, NULL);
                }
            }
        }
        pid_t pid = vfork();
        if (pid == 0) {
            execve(args[0], args, env);
            _exit(127);
        }
        waitpid(pid, NULL, 0);
    }
    printf("%ld %.6f\n", n, now() - start);
    return 0;
}
