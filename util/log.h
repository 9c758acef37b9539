/* util/log.h: one line per event on stderr; owns only the process-wide threshold set once at start. */
#pragma once

#include "util/macro.h"

enum log_level {
        LOG_LEVEL_ERROR,
        LOG_LEVEL_WARN,
        LOG_LEVEL_INFO,
        LOG_LEVEL_DEBUG,
        _LOG_LEVEL_MAX,
        _LOG_LEVEL_INVALID = -EINVAL,
};

/* The threshold is configuration, written once by main() before any loop runs. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
enum log_level log_level_from_string(const char *s);

/* Points stderr (fd 2) at path, appending (created 0640): the log file of --log-file. Called again
 * (SIGHUP) it reopens path, so a rotated file is let go. Returns 0 or -errno; on an error stderr
 * stays as it was. */
int log_open_file(const char *path);

void log_msg(enum log_level level, const char *fmt, ...) _printf_(2, 3);

/* Logs and returns the (negative) error so call sites can `return log_err(r, ...)`. */
int log_errno(enum log_level level, int err, const char *fmt, ...) _printf_(3, 4);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                         \
        do {                                                   \
                if (log_get_level() >= LOG_LEVEL_DEBUG)        \
                        log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); \
        } while (0)
