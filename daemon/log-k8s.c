/* daemon/log-k8s.c: see log-k8s.h. Long lines need no rule of their own: every piece the relay
 * delivers without a newline is a P record, as CRI-O's conmon writes them. */
#include "daemon/log-k8s.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "util/macro.h"

/* "2026-12-03T14:30:00.123456789Z": RFC 3339 in UTC with nine fraction digits. */
static void format_time(uint64_t ns, char buf[static 64])
{
        time_t sec = (time_t)(ns / 1000000000u);
        struct tm tm;

        gmtime_r(&sec, &tm);
        snprintf(buf, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000u));
}

static int write_record(int fd, const char *prefix, const char *line, size_t len, bool full)
{
        struct iovec iov[4] = {
                { (void *)prefix, strlen(prefix) },
                { (void *)(full ? "F " : "P "), 2 },
                { (void *)line, len },
                { (void *)"\n", 1 },
        };
        size_t total = iov[0].iov_len + 2 + len + 1, done = 0;

        /* One writev per record: O_APPEND keeps records whole against another writer. */
        while (done < total) {
                ssize_t n = writev(fd, iov, 4);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                done += (size_t)n;
                for (int i = 0; i < 4 && n > 0; i++) {
                        size_t m = MIN((size_t)n, iov[i].iov_len);

                        iov[i].iov_base = (char *)iov[i].iov_base + m;
                        iov[i].iov_len -= m;
                        n -= (ssize_t)m;
                }
        }
        return 0;
}

int log_k8s_file_write(struct log_k8s_file *f, enum log_k8s_stream stream, const void *data, size_t len,
                       uint64_t realtime_ns)
{
        const char *p = data, *end = p + len;
        char ts[64], prefix[96];

        format_time(realtime_ns, ts);
        snprintf(prefix, sizeof(prefix), "%s %s ", ts, stream == LOG_K8S_STDOUT ? "stdout" : "stderr");
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p), rec = strlen(prefix) + 2 + n + 1;
                int r;

                /* A record larger than the cap goes whole into a fresh file: never cut. */
                if (f->max && f->size > 0 && f->size + rec > f->max && f->rotate && f->rotate(f->userdata, &f->fd) == 0)
                        f->size = 0;
                r = write_record(f->fd, prefix, p, n, nl != NULL);
                if (r < 0)
                        return r;
                f->size += rec;
                p = nl ? nl + 1 : end;
        }
        return 0;
}

int log_k8s_write(int fd, enum log_k8s_stream stream, const void *data, size_t len, uint64_t realtime_ns)
{
        struct log_k8s_file f = { .fd = fd };

        return log_k8s_file_write(&f, stream, data, len, realtime_ns);
}
