/* daemon/log-journald.h: a process's output as journal entries (libsystemd's sd_journal_sendv) with the fields conmon writes; owns nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "daemon/log-k8s.h"

/* Who wrote it: CONTAINER_ID_FULL is the container's id (the exec id for a process outside any
 * container), CONTAINER_ID its first 12 characters, CONTAINER_NAME the exec id. */
struct log_journald_ids {
        const char *vm;
        const char *container_id;
        const char *exec_id;
};

/* One entry per line (MESSAGE without its newline; PRIORITY 6 for stdout, 3 for stderr, as
 * conmon); bytes after the last newline are one entry with CONTAINER_PARTIAL_MESSAGE=true, as
 * conmon marks a partial line. 0 or sd_journal_sendv()'s -errno (-ENOENT: no journald). */
int log_journald_write(const struct log_journald_ids *ids, enum log_k8s_stream stream, const void *data, size_t len);
