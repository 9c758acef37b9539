/* daemon/log-journald.c: a process's output as journal entries (sd_journal_sendv) with conmon's fields. */
#include "daemon/log-journald.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "util/macro.h"

#define LOG_JOURNALD_FIELDS 9
#define LOG_JOURNALD_ID_SHORT 12

static int send_line(const struct log_journald_ids *ids, enum log_k8s_stream stream, const char *line, size_t len,
                     bool partial)
{
        const char *full = ids->container_id && ids->container_id[0] ? ids->container_id : ids->exec_id;
        char id_full[300], id[64], name[300], vm[128];
        struct iovec iov[LOG_JOURNALD_FIELDS];
        _cleanup_free_ char *msg = NULL;
        int n = 0;

        snprintf(id_full, sizeof(id_full), "CONTAINER_ID_FULL=%s", full);
        snprintf(id, sizeof(id), "CONTAINER_ID=%.*s", LOG_JOURNALD_ID_SHORT, full);
        snprintf(name, sizeof(name), "CONTAINER_NAME=%s", ids->exec_id);
        snprintf(vm, sizeof(vm), "VSOCKMUX_VM=%s", ids->vm);
        msg = malloc(sizeof("MESSAGE=") + len);
        if (!msg)
                return -ENOMEM;
        /* One iovec is one field: the name and the line go together. */
        memcpy(msg, "MESSAGE=", 8);
        memcpy(msg + 8, line, len);
        iov[n++] = (struct iovec){ msg, 8 + len };
        iov[n++] = (struct iovec){ id_full, strlen(id_full) };
        iov[n++] = (struct iovec){ id, strlen(id) };
        iov[n++] = (struct iovec){ name, strlen(name) };
        iov[n++] = (struct iovec){ vm, strlen(vm) };
        iov[n++] = stream == LOG_K8S_STDOUT ? (struct iovec){ (void *)"PRIORITY=6", 10 }
                                            : (struct iovec){ (void *)"PRIORITY=3", 10 };
        iov[n++] = stream == LOG_K8S_STDOUT ? (struct iovec){ (void *)"VSOCKMUX_STREAM=stdout", 22 }
                                            : (struct iovec){ (void *)"VSOCKMUX_STREAM=stderr", 22 };
        if (partial)
                iov[n++] = (struct iovec){ (void *)"CONTAINER_PARTIAL_MESSAGE=true", 30 };
        return sd_journal_sendv(iov, n);
}

int log_journald_write(const struct log_journald_ids *ids, enum log_k8s_stream stream, const void *data, size_t len)
{
        const char *p = data, *end = p + len;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                int r = send_line(ids, stream, p, nl ? (size_t)(nl - p) : (size_t)(end - p), !nl);

                if (r < 0)
                        return r;
                p = nl ? nl + 1 : end;
        }
        return 0;
}
