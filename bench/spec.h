/* bench/spec.h: the stream list every relay variant and the load generator read; owns the parsed array. */
#pragma once

#include <stdint.h>
#include <sys/un.h>

#include "util/macro.h"

/* Above the 20,000 open-file limit on purpose: the limit, not the parser, should say no. */
#define BENCH_SPEC_STREAMS_MAX 20000u
#define BENCH_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))

enum bench_dir {
        BENCH_DIR_FROM_GUEST, /* guest writes, host endpoint reads (stdout) */
        BENCH_DIR_TO_GUEST,   /* host endpoint writes, guest reads (stdin) */
};

enum bench_endpoint_kind {
        BENCH_ENDPOINT_UNIX, /* the host listens; the relay connects */
        BENCH_ENDPOINT_FIFO, /* the host created and opened the fifo; the relay opens it */
};

/* One line: "<from_guest|to_guest> <port> <guest path> <unix|fifo> <endpoint path>".
 * The guest path is always "<vm uds>_<port>" so a hybrid-vsock relay can listen on it. */
struct bench_stream_spec {
        enum bench_dir dir;
        uint32_t port;
        enum bench_endpoint_kind kind;
        char guest_path[BENCH_PATH_MAX];
        char endpoint_path[BENCH_PATH_MAX];
};

struct bench_spec {
        unsigned n;
        char vm_uds[BENCH_PATH_MAX]; /* guest_path minus "_<port>", taken from the first line */
        struct bench_stream_spec s[];
};

int bench_spec_load(const char *path, struct bench_spec **ret);
struct bench_spec *bench_spec_free(struct bench_spec *s);
DEFINE_CLEANUP(struct bench_spec *, bench_spec_free);

/* Dials a Unix stream socket, non-blocking after connect; returns fd or -errno. */
int bench_unix_connect(const char *path);
/* Binds and listens (non-blocking), removing a stale file first; returns fd or -errno. */
int bench_unix_listen(const char *path, int backlog);
