/* bench/procstat.c: /proc/PID/stat, status and task parsing. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench/procstat.h"

static int read_small(const char *path, char *buf, size_t len)
{
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return -1;
        n = fread(buf, 1, len - 1, f);
        fclose(f);
        buf[n] = '\0';
        return 0;
}

/* Reaped children's time: a forking relay (socat ...,fork) moves a finished connection's CPU into
 * its parent's cutime/cstime, which only comes in clock ticks. */
static uint64_t reaped_children_ns(pid_t pid)
{
        char path[64], buf[1024], *p;
        unsigned long long cut = 0, cst = 0;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        if (read_small(path, buf, sizeof(buf)) < 0)
                return 0;
        /* comm may hold spaces or ')': fields restart after the last ')'. */
        p = strrchr(buf, ')');
        if (!p)
                return 0;
        /* After ") ": state(3) ... cutime is field 16, cstime 17; skip 13 fields. */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %llu %llu", &cut, &cst) != 2)
                return 0;
        return (uint64_t)((double)(cut + cst) * 1e9 / (double)sysconf(_SC_CLK_TCK));
}

/* A task's time on a CPU in nanoseconds (schedstat's first field): utime + stime come in 10 ms
 * ticks, too coarse to tell 0.28 from 0.30 CPU-s/GB in a run of a few seconds. */
static uint64_t task_ns(pid_t pid, const char *tid)
{
        char path[320], buf[128];
        unsigned long long ns = 0;

        snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", (int)pid, tid);
        if (read_small(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%llu", &ns) != 1)
                return 0;
        return ns;
}

static uint64_t rss_kb(pid_t pid)
{
        char path[64], buf[4096], *p;
        unsigned long long kb = 0;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        if (read_small(path, buf, sizeof(buf)) < 0)
                return 0;
        p = strstr(buf, "VmRSS:");
        if (p)
                sscanf(p + 6, "%llu", &kb);
        return kb;
}

static void count_tasks(pid_t pid, struct bench_proc_sample *s)
{
        char path[64];
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
        d = opendir(path);
        if (!d)
                return;
        while ((de = readdir(d))) {
                char cpath[320], comm[64];

                if (de->d_name[0] == '.')
                        continue;
                s->tasks++;
                s->cpu_ns += task_ns(pid, de->d_name);
                snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
                if (read_small(cpath, comm, sizeof(comm)) < 0)
                        continue;
                if (strncmp(comm, "iou-wrk", 7) == 0)
                        s->iou_wrk++;
                else if (strncmp(comm, "iou-sqp", 7) == 0)
                        s->iou_sqp++;
        }
        closedir(d);
}

static void sample_one(pid_t pid, struct bench_proc_sample *s)
{
        s->cpu_ns += reaped_children_ns(pid);
        s->rss_kb += rss_kb(pid);
        count_tasks(pid, s);
}

/* Live children count too: that is where a forking relay's connections run. One level is enough. */
static void sample_children(pid_t pid, struct bench_proc_sample *s)
{
        char path[64];
        FILE *f;
        int child;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
        f = fopen(path, "re");
        if (!f)
                return;
        while (fscanf(f, "%d", &child) == 1)
                sample_one((pid_t)child, s);
        fclose(f);
}

void bench_proc_sample(const pid_t *pids, unsigned n, struct bench_proc_sample *ret)
{
        struct bench_proc_sample s = {};

        for (unsigned i = 0; i < n; i++) {
                sample_one(pids[i], &s);
                sample_children(pids[i], &s);
        }
        *ret = s;
}

unsigned bench_proc_fds(pid_t pid)
{
        char path[64];
        struct dirent *e;
        unsigned n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

uint64_t bench_kernel_kb(void)
{
        char buf[8192];
        unsigned long long slab = 0, stack = 0;
        char *p;

        if (read_small("/proc/meminfo", buf, sizeof(buf)) < 0)
                return 0;
        p = strstr(buf, "\nSlab:");
        if (p)
                sscanf(p + 6, "%llu", &slab);
        p = strstr(buf, "\nKernelStack:");
        if (p)
                sscanf(p + 13, "%llu", &stack);
        return slab + stack;
}

double bench_ns_to_seconds(uint64_t ns)
{
        return (double)ns / 1e9;
}
