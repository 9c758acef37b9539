/* daemon/process-log.c: a process's k8s-file log file: its size, its rotation at --log-size-max with the rights of the client that started it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/log-journald.h"
#include "daemon/log-k8s.h"
#include "daemon/process-private.h"
#include "util/log.h"

static bool path_given(const char *p)
{
        return p && p[0];
}

bool process_log_default(const struct vmm_process *p, const struct vmm_exec_params *params, struct vmm_exec_params *ret,
                         char *buf, size_t len)
{
        const struct vmm_config *cfg = process_ctx(p)->cfg;

        if (params->log_passthrough || params->log_journald || path_given(params->log_k8s_path) ||
            path_given(params->stdout_path) || path_given(params->stderr_path))
                return false;
        if (cfg->default_log_journald) {
                *ret = *params;
                ret->log_journald = true;
                return true;
        }
        /* The exec id's form (exec-id.h) has no '/' and never starts with '.'. */
        if (!cfg->default_log_dir || (size_t)snprintf(buf, len, "%s/%s.log", cfg->default_log_dir, p->exec_id) >= len)
                return false;
        *ret = *params;
        ret->log_k8s_path = buf;
        ret->creds = NULL;
        return true;
}

void process_log_measure(struct vmm_process *p)
{
        struct stat st;

        /* Appended to: what the file holds already counts toward the cap. */
        p->log_size = fstat(p->log_fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int process_log_setup(struct vmm_process *p, const struct vmm_exec_params *params)
{
        process_log_measure(p);
        p->log_size_max = params->log_size_max;
        p->log_max_files = params->log_max_files ? params->log_max_files : 1;
        if (!params->creds)
                return 0;
        p->log_creds = *params->creds;
        p->log_creds.groups = NULL;
        if (params->creds->n_groups > 0) {
                p->log_groups = calloc(params->creds->n_groups, sizeof(gid_t));
                if (!p->log_groups)
                        return -ENOMEM;
                memcpy(p->log_groups, params->creds->groups, params->creds->n_groups * sizeof(gid_t));
                p->log_creds.groups = p->log_groups;
        }
        p->log_has_creds = true;
        return 0;
}

static int process_log_rotate(void *userdata, int *fd)
{
        struct vmm_process *p = userdata;
        int nfd, r;

        r = opener_open_rotated(process_ctx(p)->opener, p->log_has_creds ? &p->log_creds : NULL, p->log_path,
                                p->log_max_files, &nfd);
        if (r < 0) {
                log_warn("vm %s: process %u: cannot rotate its k8s-file log %s: %s", process_guest(p)->vm_name, p->pid,
                         p->log_path, strerror(-r));
                return r;
        }
        safe_close(*fd);
        *fd = nfd;
        return 0;
}

void process_journal_write(struct vmm_process *p, enum log_k8s_stream stream, const void *data, size_t len)
{
        struct log_journald_ids ids = { .vm = process_guest(p)->vm_name,
                                        .container_id = p->container_id,
                                        .exec_id = p->exec_id };
        int r = log_journald_write(&ids, stream, data, len);

        /* Once per process: a journal that is not there would otherwise fill our own log. */
        if (r < 0 && !p->log_journald_failed) {
                p->log_journald_failed = true;
                log_warn("vm %s: process %u: journald refused its output: %s (said once)", process_guest(p)->vm_name,
                         p->pid, strerror(-r));
        }
}

int process_log_write(struct vmm_process *p, enum log_k8s_stream stream, const void *data, size_t len,
                      uint64_t realtime_ns)
{
        struct log_k8s_file f = {
                .fd = p->log_fd,
                .size = p->log_size,
                .max = p->log_size_max,
                .rotate = process_log_rotate,
                .userdata = p,
        };
        int r = log_k8s_file_write(&f, stream, data, len, realtime_ns);

        p->log_fd = f.fd;
        p->log_size = f.size;
        return r;
}
