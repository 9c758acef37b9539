/* daemon/runtime-limits.h: vsockmuxd's --limits-file, the caps SIGHUP may change while it runs; owns the
 * command line's values that a key left out of the file falls back to. */
#pragma once

#include <stddef.h>

#include "daemon/conf-file.h"

struct vmm;
struct service;

/* The caps a reload may change. */
struct daemon_limits {
        unsigned max_vms, max_processes, max_streams, max_attach_clients, max_connections;
};

/* base: what the command line (or the default) gave; the file's keys override it. Nothing is
 * applied on error (why says where the file is wrong). */
int daemon_limits_read(const char *path, const struct daemon_limits *base, struct daemon_limits *ret, char *why,
                       size_t why_len);

/* Applies l to the running daemon. */
int daemon_limits_apply(struct vmm *m, struct service *s, const struct daemon_limits *l);

/* --limits-file as the running daemon holds it. */
struct daemon_limits_file {
        const char *path; /* NULL: no --limits-file */
        struct daemon_limits base, now;
        struct vmm *vmm;
        struct service *service;
};

/* SIGHUP: reads the file again and applies all of it, or (said in the log) none of it. A key
 * taken out of the file goes back to the command line's value. */
void daemon_limits_reload(struct daemon_limits_file *lf);
