/* daemon/runtime-limits.c: the caps an operator may change without a restart. Only caps whose change is
 * safe while things run are here: the sizes of buffers and frames are fixed at start, because
 * what is in flight was sized by them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "control/server.h"
#include "daemon/runtime-limits.h"
#include "daemon/service.h"
#include "daemon/vmm.h"
#include "util/log.h"
#include "util/macro.h"

enum {
        LIMIT_MAX_VMS,
        LIMIT_MAX_PROCESSES,
        LIMIT_MAX_STREAMS,
        LIMIT_MAX_ATTACH_CLIENTS,
        LIMIT_MAX_CONNECTIONS,
        _LIMIT_MAX,
};

/* The same names and ranges as the command line's --max-* options. */
static const struct conf_key limit_keys[_LIMIT_MAX] = {
        [LIMIT_MAX_VMS] = { "max-vms", 1, VMM_MAX_VMS_LIMIT },
        [LIMIT_MAX_PROCESSES] = { "max-processes", 1, VMM_MAX_PROCESSES_LIMIT },
        [LIMIT_MAX_STREAMS] = { "max-streams", 1, VMM_MAX_STREAMS_LIMIT },
        [LIMIT_MAX_ATTACH_CLIENTS] = { "max-attach-clients", 1, VMM_ATTACH_MAX_CLIENTS_LIMIT },
        [LIMIT_MAX_CONNECTIONS] = { "max-connections", 1, CONTROL_SERVER_MAX_CONNECTIONS_LIMIT },
};

static unsigned *limit_field(struct daemon_limits *l, unsigned i)
{
        unsigned *f[_LIMIT_MAX] = {
                [LIMIT_MAX_VMS] = &l->max_vms,
                [LIMIT_MAX_PROCESSES] = &l->max_processes,
                [LIMIT_MAX_STREAMS] = &l->max_streams,
                [LIMIT_MAX_ATTACH_CLIENTS] = &l->max_attach_clients,
                [LIMIT_MAX_CONNECTIONS] = &l->max_connections,
        };

        return f[i];
}

int daemon_limits_read(const char *path, const struct daemon_limits *base, struct daemon_limits *ret, char *why,
                       size_t why_len)
{
        uint64_t values[_LIMIT_MAX] = { 0 }, given = 0;
        struct daemon_limits l = *base;
        int r;

        r = conf_read(path, limit_keys, _LIMIT_MAX, values, &given, why, why_len);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < _LIMIT_MAX; i++)
                if (given & (UINT64_C(1) << i))
                        *limit_field(&l, i) = (unsigned)values[i];
        *ret = l;
        return 0;
}

int daemon_limits_apply(struct vmm *m, struct service *s, const struct daemon_limits *l)
{
        struct vmm_limits v = {
                .max_vms = l->max_vms,
                .max_processes = l->max_processes,
                .max_streams = l->max_streams,
                .attach_max_clients = l->max_attach_clients,
        };
        int r = vmm_set_limits(m, &v);

        if (r < 0)
                return r;
        return service_set_max_connections(s, l->max_connections);
}

static void limits_describe(const struct daemon_limits *before, const struct daemon_limits *after, char *buf,
                            size_t len)
{
        struct daemon_limits b = *before, a = *after;
        size_t n = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < _LIMIT_MAX && n < len; i++) {
                unsigned was = *limit_field(&b, i), now = *limit_field(&a, i);
                int k;

                if (was == now)
                        continue;
                k = snprintf(buf + n, len - n, "%s%s %u -> %u", n ? ", " : "", limit_keys[i].name, was, now);
                if (k < 0)
                        break;
                n += (size_t)k;
        }
        if (!buf[0])
                snprintf(buf, len, "unchanged");
}

void daemon_limits_reload(struct daemon_limits_file *lf)
{
        char why[CONF_FILE_WHY_MAX], changes[256];
        struct daemon_limits next;
        int r;

        if (!lf || !lf->path || !lf->vmm)
                return;
        r = daemon_limits_read(lf->path, &lf->base, &next, why, sizeof(why));
        if (r < 0) {
                log_error("vsockmuxd: SIGHUP: --limits-file %s: %s; the limits stay as they were", lf->path, why);
                return;
        }
        r = daemon_limits_apply(lf->vmm, lf->service, &next);
        if (r < 0) {
                log_errno(LOG_LEVEL_ERROR, r, "vsockmuxd: SIGHUP: --limits-file %s cannot be applied", lf->path);
                return;
        }
        limits_describe(&lf->now, &next, changes, sizeof(changes));
        lf->now = next;
        log_info("vsockmuxd: SIGHUP: limits from %s: %s", lf->path, changes);
}
