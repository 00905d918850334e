// first_touch: what a page fault costs on this machine, against a memset of memory already
// touched. The stalls the lab's servers show when their work in flight grows (new 500 KiB
// buffers) are priced by the first number. See README.md beside this file.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (mib <= 0 || mib > (1L << 20) || rounds <= 0) {
        fprintf(stderr, "usage: first_touch [MiB, 1..1048576] [rounds, >= 1]\n");
        return 2;
    }
    size_t n = (size_t)mib << 20;
    for (int round = 0; round < rounds; round++) {
        char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        double t0 = now();
        for (size_t i = 0; i < n; i += 4096) p[i] = 1; // one write per 4 KiB page: a fault each
        double t1 = now();
        memset(p, 2, n); // the same pages again, now mapped
        double t2 = now();
        printf("round %d: first touch %.0f MB/s (%.2f us per 4 KiB page), memset of touched "
               "pages %.0f MB/s\n",
               round, (double)n / 1e6 / (t1 - t0), (t1 - t0) / (double)(n / 4096) * 1e6,
               (double)n / 1e6 / (t2 - t1));
        munmap(p, n);
    }
    return 0;
}
