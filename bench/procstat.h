/* bench/procstat.h: what /proc says about the relay processes under test; owns nothing. */
#pragma once

#include <stdint.h>
#include <sys/types.h>

struct bench_proc_sample {
        uint64_t cpu_ns;  /* every live task's time on a CPU (+ reaped children's), summed over the pids */
        uint64_t rss_kb;  /* VmRSS, summed */
        unsigned tasks;   /* threads, summed */
        unsigned iou_wrk; /* io_uring async workers ("iou-wrk-*" tasks) */
        unsigned iou_sqp; /* io_uring SQPOLL threads */
};

/* Each pid and its live children. A pid that has gone away counts as zero. */
void bench_proc_sample(const pid_t *pids, unsigned n, struct bench_proc_sample *ret);
/* Entries in /proc/PID/fd (0 if it has gone away). */
unsigned bench_proc_fds(pid_t pid);
/* Slab + kernel stack, system wide: where socket buffers and io_uring state live. */
uint64_t bench_kernel_kb(void);
double bench_ns_to_seconds(uint64_t ns);
