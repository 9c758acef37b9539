/* daemon/log-k8s.h: the CRI log format (kubelet's k8s-file): "<RFC3339Nano> stdout|stderr F|P <line>\n" records into one file fd. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Bounds on a k8s-file log's cap and file count, for an exec and for a saved state alike (a save
 * must pass the checks its restore makes): the CLI's, a terabyte and a thousand files. */
#define LOG_K8S_MAX_SIZE (UINT64_C(1) << 40)
#define LOG_K8S_MAX_FILES 1000u

enum log_k8s_stream {
        LOG_K8S_STDOUT,
        LOG_K8S_STDERR,
};

/* Writes data as records: each line ending in '\n' is one F (full) record without its newline;
 * bytes after the last newline are one P (partial) record, which the next F of the same stream
 * completes. realtime_ns stamps every record. 0 or -errno from write(2). */
int log_k8s_write(int fd, enum log_k8s_stream stream, const void *data, size_t len, uint64_t realtime_ns);

/* A log file with a size cap (conmon's --log-size-max): before a record that would take it past
 * max, rotate() hands over a fresh file. Rotation falls only between records, so a reader loses
 * nothing at the boundary: a line cut there is a P record in the old file completed in the new. */
struct log_k8s_file {
        int fd;
        uint64_t size; /* bytes in the current file */
        uint64_t max;  /* 0: never rotate */
        /* 0 with *fd replaced (the old one closed by it), or -errno: the record goes to the old file. */
        int (*rotate)(void *userdata, int *fd);
        void *userdata;
};
int log_k8s_file_write(struct log_k8s_file *f, enum log_k8s_stream stream, const void *data, size_t len,
                       uint64_t realtime_ns);
