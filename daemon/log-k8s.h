/* daemon/log-k8s.h: the CRI log format (kubelet's k8s-file): "<RFC3339Nano> stdout|stderr F|P <line>\n" records into one file fd. */
#pragma once

#include <stddef.h>
#include <stdint.h>

enum log_k8s_stream {
        LOG_K8S_STDOUT,
        LOG_K8S_STDERR,
};

/* Writes data as records: each line ending in '\n' is one F (full) record without its newline;
 * bytes after the last newline are one P (partial) record, which the next F of the same stream
 * completes. realtime_ns stamps every record. 0 or -errno from write(2). */
int log_k8s_write(int fd, enum log_k8s_stream stream, const void *data, size_t len, uint64_t realtime_ns);
