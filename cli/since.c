/* cli/since.c: `events --since`: a sequence number, an RFC 3339 time, @seconds or a duration ago. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/since.h"

#define NS 1000000000ull
/* Years past this are not a time anyone means; it also keeps the nanoseconds in 64 bits. */
#define SINCE_MAX_SECONDS (UINT64_MAX / NS - 1)

static int digits(const char *s, size_t n, unsigned *ret)
{
        unsigned v = 0;

        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -EINVAL;
                v = v * 10 + (unsigned)(s[i] - '0');
        }
        *ret = v;
        return 0;
}

static int parse_u64(const char *s, const char **ret_end, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        if (!isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno)
                return -EINVAL;
        *ret_end = end;
        *ret = v;
        return 0;
}

/* 2026-12-03T17:00:00[.fraction](Z|+HH:MM|-HH:MM) */
static int parse_rfc3339(const char *s, uint64_t *ret_ns)
{
        unsigned y, mo, d, h, mi, sec, oh = 0, om = 0;
        uint64_t frac_ns = 0, scale = NS / 10;
        struct tm tm = { 0 };
        const char *p = s + 19;
        int64_t secs, offset = 0;

        if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
            s[16] != ':' || digits(s, 4, &y) < 0 || digits(s + 5, 2, &mo) < 0 || digits(s + 8, 2, &d) < 0 ||
            digits(s + 11, 2, &h) < 0 || digits(s + 14, 2, &mi) < 0 || digits(s + 17, 2, &sec) < 0)
                return -EINVAL;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
                return -EINVAL;
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char)*p))
                        return -EINVAL;
                for (; isdigit((unsigned char)*p); p++) {
                        frac_ns += (uint64_t)(*p - '0') * scale;
                        scale /= 10;
                }
        }
        if ((*p == 'Z' || *p == 'z') && !p[1]) {
                offset = 0;
        } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':' && digits(p + 1, 2, &oh) == 0 &&
                   digits(p + 4, 2, &om) == 0 && oh <= 23 && om <= 59) {
                offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        } else {
                return -EINVAL;
        }
        tm.tm_year = (int)y - 1900;
        tm.tm_mon = (int)mo - 1;
        tm.tm_mday = (int)d;
        tm.tm_hour = (int)h;
        tm.tm_min = (int)mi;
        tm.tm_sec = (int)sec;
        secs = (int64_t)timegm(&tm) - offset;
        if (secs < 0 || (uint64_t)secs > SINCE_MAX_SECONDS)
                return -EINVAL;
        *ret_ns = (uint64_t)secs * NS + frac_ns;
        return 0;
}

int cli_since_parse(const char *s, uint64_t now_ns, uint64_t *ret_seq, uint64_t *ret_ns)
{
        static const struct {
                char unit;
                uint64_t secs;
        } units[] = {
                { 's', 1 },
                { 'm', 60 },
                { 'h', 3600 },
                { 'd', 86400 },
        };
        const char *end;
        uint64_t v, ns;

        if (s[0] == '@') {
                if (parse_u64(s + 1, &end, &v) < 0 || *end || v > SINCE_MAX_SECONDS)
                        return -EINVAL;
                *ret_seq = 0;
                *ret_ns = v * NS;
                return 0;
        }
        if (strlen(s) >= 20 && s[4] == '-') {
                if (parse_rfc3339(s, &ns) < 0)
                        return -EINVAL;
                *ret_seq = 0;
                *ret_ns = ns;
                return 0;
        }
        if (parse_u64(s, &end, &v) < 0)
                return -EINVAL;
        if (!*end) {
                *ret_seq = v;
                *ret_ns = 0;
                return 0;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (end[0] != units[i].unit || end[1])
                        continue;
                if (v > SINCE_MAX_SECONDS / units[i].secs)
                        return -EINVAL;
                ns = v * units[i].secs * NS;
                *ret_seq = 0;
                /* Further back than the epoch: every event. 0 would mean "any time" too. */
                *ret_ns = ns >= now_ns ? 1 : now_ns - ns;
                return 0;
        }
        return -EINVAL;
}
