/* vm/params.c: MigrateRequest.params, checked key by key, into migration.proto's Options. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/params.h"

#define VM_PARAMS_HOST_MAX 256u

enum param_key {
        KEY_TRANSPORT,
        KEY_BANDWIDTH,
        KEY_DOWNTIME,
        KEY_COMPRESSION,
        KEY_XBZRLE_CACHE,
        KEY_MT_LEVEL,
        KEY_MT_THREADS,
        KEY_MT_DTHREADS,
        KEY_PARALLEL,
        KEY_AUTO_CONVERGE,
        KEY_AC_INITIAL,
        KEY_AC_INCREMENT,
        KEY_PERSIST,
        KEY_MIGRATE_URI,
        KEY_MODE,
        _KEY_MAX,
};

static const char *const key_names[_KEY_MAX] = {
        [KEY_TRANSPORT] = "transport",
        [KEY_BANDWIDTH] = "bandwidth_mib_per_s",
        [KEY_DOWNTIME] = "max_downtime_ms",
        [KEY_COMPRESSION] = "compression",
        [KEY_XBZRLE_CACHE] = "xbzrle.cache_size_bytes",
        [KEY_MT_LEVEL] = "multithread.level",
        [KEY_MT_THREADS] = "multithread.compress_threads",
        [KEY_MT_DTHREADS] = "multithread.decompress_threads",
        [KEY_PARALLEL] = "parallel_connections",
        [KEY_AUTO_CONVERGE] = "auto_converge",
        [KEY_AC_INITIAL] = "auto_converge.initial_percent",
        [KEY_AC_INCREMENT] = "auto_converge.increment_percent",
        [KEY_PERSIST] = "persist_destination",
        [KEY_MIGRATE_URI] = "migrate_uri",
        [KEY_MODE] = "mode",
};

_printf_(3, 4) static int fail(char *err, size_t errlen, const char *fmt, ...)
{
        va_list ap;

        if (err && errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(err, errlen, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

static int parse_i64(const char *s, int64_t *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (!*s || *end || errno || s[0] == ' ' || s[0] == '+')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_u64(const char *s, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        if (s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (*end || errno)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_u32(const char *s, uint32_t *ret)
{
        uint64_t v;

        if (parse_u64(s, &v) < 0 || v > UINT32_MAX)
                return -EINVAL;
        *ret = (uint32_t)v;
        return 0;
}

static int parse_bool(const char *s, bool *ret)
{
        if (strcmp(s, "true") == 0)
                *ret = true;
        else if (strcmp(s, "false") == 0)
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

static int set_transport(struct vm_params *p, const char *v)
{
        if (strcmp(v, "tcp") == 0)
                p->o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_TCP;
        else if (strcmp(v, "unix") == 0)
                p->o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_UNIX;
        else if (strcmp(v, "tls") == 0)
                p->o.transport = VSOCKMUX__MIGRATION__TRANSPORT__TRANSPORT_TLS;
        else
                return -EINVAL;
        return 0;
}

static int set_compression(struct vm_params *p, const char *v)
{
        if (strcmp(v, "none") == 0)
                p->o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION__NOT_SET;
        else if (strcmp(v, "xbzrle") == 0) {
                p->o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE;
                p->o.xbzrle = &p->xbzrle;
        } else if (strcmp(v, "mt") == 0) {
                p->o.compression_case = VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD;
                p->o.multithread = &p->mt;
        } else
                return -EINVAL;
        return 0;
}

static int set_mode(struct vm_params *p, const char *v)
{
        if (strcmp(v, "p2p") == 0)
                p->mode = VM_MIGRATION_P2P;
        else if (strcmp(v, "direct") == 0)
                p->mode = VM_MIGRATION_DIRECT;
        else
                return -EINVAL;
        return 0;
}

/* One pair; -EINVAL when its value is not of the key's kind. */
static int set_one(struct vm_params *p, enum param_key k, const char *v)
{
        bool b;

        switch (k) {
        case KEY_TRANSPORT: return set_transport(p, v);
        case KEY_BANDWIDTH: return parse_i64(v, &p->o.bandwidth_mib_per_s);
        case KEY_DOWNTIME: return parse_i64(v, &p->o.max_downtime_ms);
        case KEY_COMPRESSION: return set_compression(p, v);
        case KEY_XBZRLE_CACHE: return parse_u64(v, &p->xbzrle.cache_size_bytes);
        case KEY_MT_LEVEL: p->mt.level_set = true; return parse_u32(v, &p->mt.level);
        case KEY_MT_THREADS: return parse_u32(v, &p->mt.compress_threads);
        case KEY_MT_DTHREADS: return parse_u32(v, &p->mt.decompress_threads);
        case KEY_PARALLEL: return parse_u32(v, &p->o.parallel_connections);
        case KEY_AUTO_CONVERGE:
                if (parse_bool(v, &b) < 0)
                        return -EINVAL;
                p->o.auto_converge = b ? &p->ac : NULL;
                return 0;
        case KEY_AC_INITIAL: p->o.auto_converge = &p->ac; return parse_u32(v, &p->ac.initial_percent);
        case KEY_AC_INCREMENT: p->o.auto_converge = &p->ac; return parse_u32(v, &p->ac.increment_percent);
        case KEY_PERSIST:
                if (parse_bool(v, &b) < 0)
                        return -EINVAL;
                p->o.persist_destination = b;
                return 0;
        case KEY_MIGRATE_URI: p->migrate_uri = v; return 0;
        case KEY_MODE: return set_mode(p, v);
        default: return -EINVAL;
        }
}

static const char *const key_kinds[_KEY_MAX] = {
        [KEY_TRANSPORT] = "tcp, unix or tls",
        [KEY_BANDWIDTH] = "a number (MiB/s)",
        [KEY_DOWNTIME] = "a number (ms)",
        [KEY_COMPRESSION] = "none, xbzrle or mt",
        [KEY_XBZRLE_CACHE] = "a number of bytes",
        [KEY_MT_LEVEL] = "a number",
        [KEY_MT_THREADS] = "a number",
        [KEY_MT_DTHREADS] = "a number",
        [KEY_PARALLEL] = "a number of connections",
        [KEY_AUTO_CONVERGE] = "true or false",
        [KEY_AC_INITIAL] = "a percentage",
        [KEY_AC_INCREMENT] = "a percentage",
        [KEY_PERSIST] = "true or false",
        [KEY_MIGRATE_URI] = "a URI",
        [KEY_MODE] = "p2p or direct",
};

static int find_key(const char *name)
{
        for (int k = 0; k < _KEY_MAX; k++)
                if (strcmp(key_names[k], name) == 0)
                        return k;
        return -ENOENT;
}

int vm_params_parse(Vsockmux__V1__KeyValue *const *kv, size_t n, struct vm_params *ret, char *err, size_t errlen)
{
        bool seen[_KEY_MAX] = {};

        *ret = (struct vm_params){
                .o = VSOCKMUX__MIGRATION__OPTIONS__INIT,
                .xbzrle = VSOCKMUX__MIGRATION__XBZRLE__INIT,
                .mt = VSOCKMUX__MIGRATION__MULTITHREAD__INIT,
                .ac = VSOCKMUX__MIGRATION__AUTO_CONVERGE__INIT,
                .mode = VM_MIGRATION_P2P,
        };
        for (size_t i = 0; i < n; i++) {
                int k = find_key(kv[i]->key);

                if (k < 0)
                        return fail(err, errlen, "params: unknown key '%.64s'", kv[i]->key);
                if (seen[k])
                        return fail(err, errlen, "params: %s given twice", key_names[k]);
                seen[k] = true;
                if (set_one(ret, (enum param_key)k, kv[i]->value) < 0)
                        return fail(err, errlen, "params: %s wants %s, got '%.64s'", key_names[k], key_kinds[k],
                                    kv[i]->value);
        }
        if (((seen[KEY_XBZRLE_CACHE]) && ret->o.compression_case != VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_XBZRLE) ||
            ((seen[KEY_MT_LEVEL] || seen[KEY_MT_THREADS] || seen[KEY_MT_DTHREADS]) &&
             ret->o.compression_case != VSOCKMUX__MIGRATION__OPTIONS__COMPRESSION_MULTITHREAD))
                return fail(err, errlen, "params: xbzrle.* needs compression xbzrle, multithread.* compression mt");
        if ((seen[KEY_AC_INITIAL] || seen[KEY_AC_INCREMENT]) && !ret->o.auto_converge)
                return fail(err, errlen, "params: auto_converge.* with auto_converge false");
        return 0;
}

int vm_params_default_migrate_uri(const char *to, char *buf, size_t len)
{
        const char *h = strstr(to, "://"), *end, *at;
        char host[VM_PARAMS_HOST_MAX];
        size_t n;

        if (!h)
                return -EINVAL;
        h += 3;
        end = h + strcspn(h, "/?");
        at = memchr(h, '@', (size_t)(end - h));
        if (at)
                h = at + 1;
        if (*h == '[') {
                const char *close = memchr(h, ']', (size_t)(end - h));

                n = close ? (size_t)(close + 1 - h) : (size_t)(end - h);
        } else
                n = strcspn(h, ":/?");
        if (n >= sizeof(host))
                return -ERANGE;
        memcpy(host, h, n);
        host[n] = '\0';
        snprintf(buf, len, "tcp://%s", n ? host : "127.0.0.1");
        return 0;
}
