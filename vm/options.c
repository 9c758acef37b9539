/* vm/options.c: protobuf migration options -> validated params -> libvirt typed parameters. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/macro.h"
#include "vm/options.h"

#define VERSION(maj, min, rel) ((unsigned long)(maj)*1000000ul + (min)*1000ul + (rel))

static const char *const transport_names[_VM_TRANSPORT_MAX] = {
        [VM_TRANSPORT_TCP] = "tcp",
        [VM_TRANSPORT_UNIX] = "unix",
        [VM_TRANSPORT_TLS] = "tls",
};

/* The names libvirt's VIR_MIGRATE_PARAM_COMPRESSION expects. */
static const char *const compression_names[_VM_COMPRESSION_MAX] = {
        [VM_COMPRESSION_NONE] = "none",
        [VM_COMPRESSION_XBZRLE] = "xbzrle",
        [VM_COMPRESSION_MT] = "mt",
};

const char *vm_transport_to_string(enum vm_transport t)
{
        return t >= 0 && t < _VM_TRANSPORT_MAX ? transport_names[t] : NULL;
}

const char *vm_compression_to_string(enum vm_compression c)
{
        return c >= 0 && c < _VM_COMPRESSION_MAX ? compression_names[c] : NULL;
}

_printf_(4, 5) static int fail(int r, char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return r;
}

void vm_migrate_params_init(struct vm_migrate_params *ret)
{
        *ret = (struct vm_migrate_params){
                .transport = VM_TRANSPORT_TCP,
                .compression = VM_COMPRESSION_NONE,
        };
}

/* 0 keeps the default; otherwise [VM_THROTTLE_PERCENT_MIN, VM_THROTTLE_PERCENT_MAX]. */
static int check_percent(const char *field, uint32_t v, char *err, size_t errlen)
{
        if (v != 0 && (v < VM_THROTTLE_PERCENT_MIN || v > VM_THROTTLE_PERCENT_MAX))
                return fail(-ERANGE, err, errlen,
                            "%s: %" PRIu32 " is out of range (allowed: 0 for the default, or %u..%u percent)", field, v,
                            VM_THROTTLE_PERCENT_MIN, VM_THROTTLE_PERCENT_MAX);
        return 0;
}

static int check_threads(const char *field, uint32_t v, char *err, size_t errlen)
{
        if (v > VM_MT_THREADS_MAX)
                return fail(-ERANGE, err, errlen,
                            "%s: %" PRIu32 " is out of range (allowed: 0 for the default, or 1..%u)", field, v,
                            VM_MT_THREADS_MAX);
        return 0;
}

static int compression_from_proto(const Vsockmux__Migration__Options *o, struct vm_migrate_params *p, char *err,
                                  size_t errlen)
{
        int r;

        switch (o->compression_case) {
        case VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION__NOT_SET: p->compression = VM_COMPRESSION_NONE; return 0;

        case VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE: {
                uint64_t c = o->xbzrle ? o->xbzrle->cache_size_bytes : 0;

                if (c != 0 && (c < VM_XBZRLE_CACHE_MIN || c > VM_XBZRLE_CACHE_MAX))
                        return fail(-ERANGE, err, errlen,
                                    "xbzrle.cache_size_bytes: %" PRIu64
                                    " is out of range (allowed: 0 for the default, or %" PRIu64 "..%" PRIu64 ")",
                                    c, VM_XBZRLE_CACHE_MIN, VM_XBZRLE_CACHE_MAX);
                if (c % VM_XBZRLE_CACHE_ALIGN != 0)
                        return fail(-EINVAL, err, errlen,
                                    "xbzrle.cache_size_bytes: %" PRIu64 " is not a multiple of %" PRIu64, c,
                                    VM_XBZRLE_CACHE_ALIGN);
                p->compression = VM_COMPRESSION_XBZRLE;
                p->xbzrle_cache_bytes = c;
                return 0;
        }

        case VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD: {
                const Vsockmux__Migration__Multithread *mt = o->multithread;

                p->compression = VM_COMPRESSION_MT;
                if (!mt)
                        return 0;
                if (mt->level_set && mt->level > VM_MT_LEVEL_MAX)
                        return fail(-ERANGE, err, errlen,
                                    "multithread.level: %" PRIu32 " is out of range (allowed: 0..%u)", mt->level,
                                    VM_MT_LEVEL_MAX);
                if (!mt->level_set && mt->level != 0)
                        return fail(-EINVAL, err, errlen, "multithread.level: %" PRIu32 " given without level_set",
                                    mt->level);
                r = check_threads("multithread.compress_threads", mt->compress_threads, err, errlen);
                if (r < 0)
                        return r;
                r = check_threads("multithread.decompress_threads", mt->decompress_threads, err, errlen);
                if (r < 0)
                        return r;
                p->mt_level_set = mt->level_set;
                p->mt_level = mt->level;
                p->mt_threads = mt->compress_threads;
                p->mt_dthreads = mt->decompress_threads;
                return 0;
        }

        default:
                return fail(-EINVAL, err, errlen, "compression: unknown method %d (allowed: none, xbzrle, multithread)",
                            (int)o->compression_case);
        }
}

int vm_migrate_options_from_proto(const Vsockmux__Migration__Options *o, struct vm_migrate_params *ret, char *err,
                                  size_t errlen)
{
        struct vm_migrate_params p;
        int r;

        vm_migrate_params_init(&p);
        if (!o) {
                *ret = p;
                return 0;
        }

        switch (o->transport) {
        case VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_UNSPECIFIED:
        case VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_TCP: p.transport = VM_TRANSPORT_TCP; break;
        case VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_UNIX: p.transport = VM_TRANSPORT_UNIX; break;
        case VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_TLS: p.transport = VM_TRANSPORT_TLS; break;
        default:
                /* protobuf-c keeps an unknown enum number as is; it is never mapped to TCP. */
                return fail(-EINVAL, err, errlen, "transport: unknown value %d (allowed: tcp, unix, tls)",
                            (int)o->transport);
        }

        if (o->bandwidth_mib_per_s < 0 || (uint64_t)o->bandwidth_mib_per_s > (uint64_t)VM_BANDWIDTH_MIB_MAX)
                return fail(-ERANGE, err, errlen,
                            "bandwidth_mib_per_s: %" PRId64 " is out of range (allowed: 0 for unlimited, or 1..%" PRId64
                            " MiB/s)",
                            o->bandwidth_mib_per_s, (int64_t)VM_BANDWIDTH_MIB_MAX);
        p.bandwidth_mib = (uint64_t)o->bandwidth_mib_per_s;

        if (o->max_downtime_ms < 0 || o->max_downtime_ms > VM_DOWNTIME_MS_MAX)
                return fail(-ERANGE, err, errlen,
                            "max_downtime_ms: %" PRId64 " is out of range (allowed: 0 for the default, or 1..%" PRId64
                            " ms)",
                            o->max_downtime_ms, VM_DOWNTIME_MS_MAX);
        p.max_downtime_ms = (uint64_t)o->max_downtime_ms;

        r = compression_from_proto(o, &p, err, errlen);
        if (r < 0)
                return r;

        if (o->parallel_connections > VM_PARALLEL_MAX)
                return fail(-ERANGE, err, errlen,
                            "parallel_connections: %" PRIu32
                            " is out of range (allowed: 0 for one connection, or 1..%u)",
                            o->parallel_connections, VM_PARALLEL_MAX);
        p.parallel_connections = o->parallel_connections;

        /* QEMU 7.2 refuses multifd together with the "compress" capability. */
        if (p.parallel_connections > 0 && p.compression == VM_COMPRESSION_MT)
                return fail(-EINVAL, err, errlen,
                            "multithread: cannot be combined with parallel_connections (allowed: xbzrle or none with "
                            "parallel)");

        if (o->auto_converge) {
                r = check_percent("auto_converge.initial_percent", o->auto_converge->initial_percent, err, errlen);
                if (r < 0)
                        return r;
                r = check_percent("auto_converge.increment_percent", o->auto_converge->increment_percent, err, errlen);
                if (r < 0)
                        return r;
                p.auto_converge = true;
                p.auto_converge_initial = o->auto_converge->initial_percent;
                p.auto_converge_increment = o->auto_converge->increment_percent;
        }

        p.persist_destination = o->persist_destination;
        p.start_paused = o->start_paused;
        *ret = p;
        return 0;
}

int vm_migrate_params_check_version(const struct vm_migrate_params *p, unsigned long libvirt_version, char *err,
                                    size_t errlen)
{
        static const struct {
                const char *option;
                unsigned long since;
        } needs[] = {
                { "transport unix", VERSION(6, 6, 0) },       { "transport tls", VERSION(3, 2, 0) },
                { "compression", VERSION(1, 3, 4) },          { "auto_converge percentages", VERSION(2, 0, 0) },
                { "parallel_connections", VERSION(5, 2, 0) }, { "bandwidth_mib_per_s", VERSION(1, 1, 0) },
        };
        bool used[ELEMENTSOF(needs)] = {
                p->transport == VM_TRANSPORT_UNIX,     p->transport == VM_TRANSPORT_TLS,
                p->compression != VM_COMPRESSION_NONE, p->auto_converge_initial != 0 || p->auto_converge_increment != 0,
                p->parallel_connections != 0,          p->bandwidth_mib != 0,
        };

        for (size_t i = 0; i < ELEMENTSOF(needs); i++)
                if (used[i] && libvirt_version < needs[i].since)
                        return fail(-EOPNOTSUPP, err, errlen,
                                    "%s: needs libvirt >= %lu.%lu.%lu, the daemon runs %lu.%lu.%lu", needs[i].option,
                                    needs[i].since / 1000000, needs[i].since / 1000 % 1000, needs[i].since % 1000,
                                    libvirt_version / 1000000, libvirt_version / 1000 % 1000, libvirt_version % 1000);
        return 0;
}

int vm_migrate_params_check_uri(const struct vm_migrate_params *p, const char *migrate_uri, char *err, size_t errlen)
{
        const char *rest;
        size_t len;

        if (!migrate_uri || !*migrate_uri)
                return fail(-EINVAL, err, errlen, "migrate_uri: missing (an explicit migration URI is required)");
        len = strnlen(migrate_uri, VM_MIGRATE_URI_MAX + 1);
        if (len > VM_MIGRATE_URI_MAX)
                return fail(-ERANGE, err, errlen, "migrate_uri: longer than %u bytes", VM_MIGRATE_URI_MAX);

        switch (p->transport) {
        case VM_TRANSPORT_TCP:
        case VM_TRANSPORT_TLS:
                if (strncmp(migrate_uri, "tcp://", 6) != 0 || migrate_uri[6] == '\0' || migrate_uri[6] == '/')
                        return fail(-EINVAL, err, errlen,
                                    "migrate_uri: '%s' does not suit transport %s (allowed: tcp://HOST[:PORT])",
                                    migrate_uri, vm_transport_to_string(p->transport));
                return 0;
        case VM_TRANSPORT_UNIX:
                if (strncmp(migrate_uri, "unix://", 7) != 0)
                        return fail(-EINVAL, err, errlen,
                                    "migrate_uri: '%s' does not suit transport unix (allowed: unix:///ABSOLUTE/PATH)",
                                    migrate_uri);
                rest = migrate_uri + 7;
                if (rest[0] != '/' || rest[1] == '\0')
                        return fail(-EINVAL, err, errlen,
                                    "migrate_uri: '%s' needs an absolute socket path (unix:///ABSOLUTE/PATH)",
                                    migrate_uri);
                if (strlen(rest) > VM_UNIX_PATH_MAX)
                        return fail(-ERANGE, err, errlen, "migrate_uri: socket path is %zu bytes (allowed: up to %u)",
                                    strlen(rest), VM_UNIX_PATH_MAX);
                return 0;
        default: return fail(-EINVAL, err, errlen, "transport: unknown value %d", (int)p->transport);
        }
}

void vm_typed_params_clear(struct vm_typed_params *t)
{
        if (!t)
                return;
        if (t->params)
                virTypedParamsFree(t->params, t->nparams);
        *t = (struct vm_typed_params){};
}

static int add_int(struct vm_typed_params *t, const char *name, unsigned v)
{
        return virTypedParamsAddInt(&t->params, &t->nparams, &t->maxparams, name, (int)v) < 0 ? -ENOMEM : 0;
}

int vm_migrate_params_to_typed(const struct vm_migrate_params *p, const char *migrate_uri, struct vm_typed_params *ret)
{
        struct vm_typed_params t = { .flags = VIR_MIGRATE_LIVE };
        int r = -ENOMEM;

        if (p->transport < 0 || p->transport >= _VM_TRANSPORT_MAX || p->compression < 0 ||
            p->compression >= _VM_COMPRESSION_MAX || !migrate_uri)
                return -EINVAL;
        /* virTypedParamsAdd* reset libvirt's per-thread error, which is garbage before this. */
        if (virInitialize() < 0)
                return -EIO;

        if (virTypedParamsAddString(&t.params, &t.nparams, &t.maxparams, VIR_MIGRATE_PARAM_URI, migrate_uri) < 0)
                goto fail;
        if (p->bandwidth_mib != 0 && virTypedParamsAddULLong(&t.params, &t.nparams, &t.maxparams,
                                                             VIR_MIGRATE_PARAM_BANDWIDTH, p->bandwidth_mib) < 0)
                goto fail;
        if (p->transport == VM_TRANSPORT_TLS)
                t.flags |= VIR_MIGRATE_TLS;

        if (p->compression != VM_COMPRESSION_NONE) {
                t.flags |= VIR_MIGRATE_COMPRESSED;
                if (virTypedParamsAddString(&t.params, &t.nparams, &t.maxparams, VIR_MIGRATE_PARAM_COMPRESSION,
                                            compression_names[p->compression]) < 0)
                        goto fail;
        }
        if (p->compression == VM_COMPRESSION_XBZRLE && p->xbzrle_cache_bytes != 0 &&
            virTypedParamsAddULLong(&t.params, &t.nparams, &t.maxparams, VIR_MIGRATE_PARAM_COMPRESSION_XBZRLE_CACHE,
                                    p->xbzrle_cache_bytes) < 0)
                goto fail;
        if (p->compression == VM_COMPRESSION_MT) {
                if (p->mt_level_set && add_int(&t, VIR_MIGRATE_PARAM_COMPRESSION_MT_LEVEL, p->mt_level) < 0)
                        goto fail;
                if (p->mt_threads && add_int(&t, VIR_MIGRATE_PARAM_COMPRESSION_MT_THREADS, p->mt_threads) < 0)
                        goto fail;
                if (p->mt_dthreads && add_int(&t, VIR_MIGRATE_PARAM_COMPRESSION_MT_DTHREADS, p->mt_dthreads) < 0)
                        goto fail;
        }

        if (p->parallel_connections != 0) {
                t.flags |= VIR_MIGRATE_PARALLEL;
                if (add_int(&t, VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS, p->parallel_connections) < 0)
                        goto fail;
        }

        if (p->auto_converge) {
                t.flags |= VIR_MIGRATE_AUTO_CONVERGE;
                if (p->auto_converge_initial &&
                    add_int(&t, VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL, p->auto_converge_initial) < 0)
                        goto fail;
                if (p->auto_converge_increment &&
                    add_int(&t, VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT, p->auto_converge_increment) < 0)
                        goto fail;
        }

        if (p->persist_destination)
                t.flags |= VIR_MIGRATE_PERSIST_DEST;
        if (p->start_paused)
                t.flags |= VIR_MIGRATE_PAUSED;

        *ret = t;
        return 0;
fail:
        vm_typed_params_clear(&t);
        return r;
}
