/* daemon/conf-file.c: the "key = number" file vsockmuxd re-reads on SIGHUP. An operator edits it
 * while the daemon runs, so anything it cannot read whole is refused whole: a half-applied file
 * would leave limits nobody wrote. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/conf-file.h"
#include "util/macro.h"

static int conf_error(char *why, size_t len, unsigned line, const char *fmt, ...)
{
        va_list ap;
        int n = snprintf(why, len, "line %u: ", line);

        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < len)
                vsnprintf(why + n, len - (size_t)n, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static const char *skip_blank(const char *p, const char *end)
{
        while (p < end && (*p == ' ' || *p == '\t'))
                p++;
        return p;
}

static const char *trim_end(const char *p, const char *end)
{
        while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                end--;
        return end;
}

static int conf_key_find(const struct conf_key *keys, size_t n_keys, const char *k, size_t klen)
{
        for (size_t i = 0; i < n_keys; i++)
                if (strlen(keys[i].name) == klen && memcmp(keys[i].name, k, klen) == 0)
                        return (int)i;
        return -1;
}

/* Digits only: no sign, no suffix, no base prefix; the range is the key's. */
static int conf_number(const char *v, size_t vlen, uint64_t *ret)
{
        uint64_t n = 0;

        if (!vlen || vlen > 20)
                return -EINVAL;
        for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, (uint64_t)(v[i] - '0'), &n))
                        return -ERANGE;
        }
        *ret = n;
        return 0;
}

/* One non-blank, non-comment line: "key = value". */
static int conf_line(const char *p, const char *end, unsigned line, const struct conf_key *keys, size_t n_keys,
                     uint64_t *values, uint64_t *given, char *why, size_t why_len)
{
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend, *v;
        uint64_t n;
        int i;

        if (!eq)
                return conf_error(why, why_len, line, "expected 'key = number'");
        kend = trim_end(p, eq);
        v = skip_blank(eq + 1, end);
        i = conf_key_find(keys, n_keys, p, (size_t)(kend - p));
        if (i < 0)
                return conf_error(why, why_len, line, "unknown key '%.*s'", (int)MIN(kend - p, 64), p);
        if (*given & (UINT64_C(1) << i))
                return conf_error(why, why_len, line, "%s given twice", keys[i].name);
        if (conf_number(v, (size_t)(end - v), &n) < 0 || n < keys[i].min || n > keys[i].max)
                return conf_error(why, why_len, line, "%s must be a number from %llu to %llu, got '%.*s'", keys[i].name,
                                  (unsigned long long)keys[i].min, (unsigned long long)keys[i].max,
                                  (int)MIN(end - v, 64), v);
        values[i] = n;
        *given |= UINT64_C(1) << i;
        return 0;
}

int conf_parse(const char *text, size_t len, const struct conf_key *keys, size_t n_keys, uint64_t *ret_values,
               uint64_t *ret_given, char *why, size_t why_len)
{
        uint64_t values[CONF_FILE_MAX_KEYS] = { 0 }, given = 0;
        const char *p = text, *end = text + len;
        unsigned line = 0;
        int r;

        if (n_keys > CONF_FILE_MAX_KEYS)
                return -EINVAL;
        if (len > CONF_FILE_MAX_BYTES) {
                snprintf(why, why_len, "longer than %u bytes", CONF_FILE_MAX_BYTES);
                return -E2BIG;
        }
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
                const char *s = skip_blank(p, eol), *e = trim_end(s, eol);

                line++;
                if (memchr(p, '\0', (size_t)(eol - p)))
                        return conf_error(why, why_len, line, "a NUL byte");
                if (s < e && *s != '#') {
                        r = conf_line(s, e, line, keys, n_keys, values, &given, why, why_len);
                        if (r < 0)
                                return r;
                }
                p = nl ? nl + 1 : end;
        }
        for (size_t i = 0; i < n_keys; i++)
                if (given & (UINT64_C(1) << i))
                        ret_values[i] = values[i];
        *ret_given = given;
        return 0;
}

int conf_read(const char *path, const struct conf_key *keys, size_t n_keys, uint64_t *ret_values, uint64_t *ret_given,
              char *why, size_t why_len)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        char buf[CONF_FILE_MAX_BYTES + 1];
        struct stat st;
        size_t got = 0;
        ssize_t n;
        int e;

        if (fd < 0 || fstat(fd, &st) < 0) {
                e = errno;
                snprintf(why, why_len, "%s", strerror(e));
                return -e;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(why, why_len, "not a regular file");
                return -EINVAL;
        }
        while (got < sizeof(buf) && (n = read(fd, buf + got, sizeof(buf) - got)) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        e = errno;
                        snprintf(why, why_len, "%s", strerror(e));
                        return -e;
                }
                got += (size_t)n;
        }
        return conf_parse(buf, got, keys, n_keys, ret_values, ret_given, why, why_len);
}
