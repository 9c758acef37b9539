/* tests/daemon/vmm-test.c: see vmm-test.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "tests/daemon/vmm-test.h"

uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *sim_path(void)
{
        static char path[512];
        const char *root = getenv("VSOCKMUX_BUILD_ROOT");

        snprintf(path, sizeof(path), "%s/sim/vsockmux-sim", root ? root : ".");
        return path;
}

void on_started(struct vmm_process *p, int error, const char *message, void *userdata)
{
        struct started *s = userdata;
        struct vmm_process_info info;

        s->count++;
        s->error = error;
        snprintf(s->message, sizeof(s->message), "%s", message);
        if (error == 0) {
                vmm_process_get_info(p, &info);
                s->pid = info.pid;
        }
}

void on_exit_seen(struct vmm_process *p, const struct vmm_exit *exit, void *userdata)
{
        struct exited *e = userdata;

        e->count++;
        e->exit = *exit;
}

void on_saved(int error, const char *message, const uint8_t *blob, size_t len, unsigned n_processes, void *userdata)
{
        struct saved *s = userdata;

        s->count++;
        s->error = error;
        if (error == 0) {
                s->blob = malloc(len);
                assert_non_null(s->blob);
                memcpy(s->blob, blob, len);
                s->len = len;
        }
}
