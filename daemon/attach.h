/* daemon/attach.h: struct attach owns one process's attach socket (conmon format), its clients, its output backlog and the stdin they feed; borrows the relay. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/relay.h"
#include "util/macro.h"

/* conmon's stream bytes at the head of each output packet. */
#define ATTACH_STREAM_STDOUT 2
#define ATTACH_STREAM_STDERR 3
/* One packet carries at most this much output, so a client's buffer never needs more. */
#define ATTACH_PACKET_MAX 8192u
#define ATTACH_DEFAULT_BACKLOG (256u << 10)
#define ATTACH_DEFAULT_CLIENT_TX (1u << 20)
#define ATTACH_DEFAULT_MAX_CLIENTS 16u

struct attach_config {
        size_t backlog;       /* output kept for clients that attach later (0 = none) */
        size_t client_max_tx; /* a client further behind than this is disconnected */
        unsigned max_clients;
};

struct attach;

/* The attach state of one process (backlog, clients); its socket at `path` is opened only by
 * attach_listen(), so thousands of processes nobody attaches to cost no socket, fd or inode each.
 * name prefixes log lines. */
int attach_new(struct relay *r, const char *path, const struct attach_config *cfg, const char *name,
               struct attach **ret);
/* Opens the SOCK_SEQPACKET socket at the path, mode 0600; a no-op when it is open. */
int attach_listen(struct attach *a);
bool attach_is_listening(const struct attach *a);
/* Disconnects every client and removes the socket file. */
struct attach *attach_free(struct attach *a);
DEFINE_CLEANUP(struct attach *, attach_free);

/* Copies output to every client, and to the backlog when `keep` (output with no host endpoint,
 * whose only reader may attach later; an endpoint already holds the history). A client that
 * cannot keep up is dropped; nothing here ever slows the process's primary endpoint. */
void attach_output(struct attach *a, uint8_t stream, const void *data, size_t len, bool keep);
/* Whether attach_output() would do anything with output now: a client is attached, or `keep` and
 * a backlog is configured. While false the relay may move the bytes without showing them to us. */
bool attach_wants_output(const struct attach *a, bool keep);

/* The process's output ended: clients get what is queued, then EOF; later ones the backlog, then EOF. */
void attach_end(struct attach *a);

/* The process's stdin is fed by the clients: fd is the write end of the pipe its stdin stream
 * reads (taken on success only). stdin_once: it ends when the last client leaves (conmon without
 * --leave-stdin-open); otherwise it stays open for the next client until attach_close_input(). */
int attach_set_input(struct attach *a, int fd, bool stdin_once);
/* Whether the clients' bytes still go to a stdin. */
bool attach_has_input(const struct attach *a);
/* CloseStdin: the process sees EOF once what the clients wrote reached it. false: no such input. */
bool attach_close_input(struct attach *a);

const char *attach_path(const struct attach *a);
unsigned attach_clients(const struct attach *a);
size_t attach_backlog_bytes(const struct attach *a);
