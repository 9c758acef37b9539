/* util/log.c: one line per event on stderr, at or above the process-wide threshold. */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The one piece of process-wide state: the log threshold, set once from the command line. */
static enum log_level log_threshold = LOG_LEVEL_INFO;

static const char *const log_level_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERROR] = "error",
        [LOG_LEVEL_WARN] = "warn",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

void log_set_level(enum log_level level)
{
        if (level >= 0 && level < _LOG_LEVEL_MAX)
                log_threshold = level;
}

enum log_level log_get_level(void)
{
        return log_threshold;
}

enum log_level log_level_from_string(const char *s)
{
        for (int i = 0; i < _LOG_LEVEL_MAX; i++)
                if (s && strcmp(s, log_level_names[i]) == 0)
                        return i;
        return _LOG_LEVEL_INVALID;
}

int log_open_file(const char *path)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);

        if (fd < 0)
                return -errno;
        fflush(stderr);
        if (dup2(fd, STDERR_FILENO) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        close(fd);
        return 0;
}

_printf_(2, 0) static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
        char line[1024];
        struct timespec ts;
        int n;

        if (level > log_threshold)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        n = snprintf(line, sizeof(line), "%lld.%03ld %s ", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
                     log_level_names[level]);
        if (n < 0)
                return;
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        /* One write per line keeps lines whole when several processes share stderr. */
        fprintf(stderr, "%s\n", line);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_vmsg(level, fmt, ap);
        va_end(ap);
}

int log_errno(enum log_level level, int err, const char *fmt, ...)
{
        char line[768];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_msg(level, "%s: %s", line, strerror(err < 0 ? -err : err));
        return err < 0 ? err : -err;
}
