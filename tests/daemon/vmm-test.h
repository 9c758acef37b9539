/* tests/daemon/vmm-test.h: completion records, their callbacks and the simulator's path shared by the daemon component tests; owns nothing. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "daemon/vmm.h"

/* What a vmm callback reported; count says how often (exactly once is the contract). */
struct started {
        int count;
        int error;
        uint32_t pid;
        char message[256];
};

struct exited {
        int count;
        struct vmm_exit exit;
};

struct saved {
        int count;
        int error;
        uint8_t *blob; /* a copy, the test's to free */
        size_t len;
};

uint64_t now_ns(void);
/* $VSOCKMUX_BUILD_ROOT/sim/vsockmux-sim (meson's test env sets it). */
const char *sim_path(void);

/* vmm_exec / vmm_process_wait / vmm_save callbacks; userdata is a struct started / exited / saved. */
void on_started(struct vmm_process *p, int error, const char *message, void *userdata);
void on_exit_seen(struct vmm_process *p, const struct vmm_exit *exit, void *userdata);
void on_saved(int error, const char *message, const uint8_t *blob, size_t len, unsigned n_processes, void *userdata);
