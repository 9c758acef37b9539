/* control/server.h: the ttrpc control server on the relay loop; owns its socket, connections and calls; borrows the relay and the method table. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "control/codec.h"
#include "relay/relay.h"
#include "util/macro.h"

#define CONTROL_SERVER_MAX_CONNECTIONS 128u /* default cap on open connections */
#define CONTROL_SERVER_MAX_CONNECTIONS_LIMIT 16384u
#define CONTROL_CONN_MAX_CALLS 64u /* default cap on unanswered calls per connection */
#define CONTROL_CONN_MAX_CALLS_LIMIT 65536u
#define CONTROL_CONN_MAX_TX (8u << 20) /* default queued output per connection */
#define CONTROL_SERVER_MAX_METHODS 256u
#define CONTROL_FRAME_MIN_DATA 1024u /* the smallest configurable request limit */
#define CONTROL_NO_GROUP ((gid_t)-1)
/* A request's timeout_nano above this (30 days) is treated as none. */
#define CONTROL_CALL_TIMEOUT_MAX_NS (INT64_C(30) * 24 * 3600 * 1000000000)

struct control_server_config {
        const char *path; /* the Unix socket; its parent directory is created 0755 */
        uid_t owner_uid;  /* who may connect besides root; usually geteuid() */
        gid_t group;      /* CONTROL_NO_GROUP: mode 0600; else 0660, group members may connect */
        /* CONTROL_NO_GROUP: none. Else members may connect (mode 0660, the socket's group is
         * `group` when set, else this one) and call only the methods marked read_only; any
         * other method answers PERMISSION_DENIED naming it. 0 counts as none too: the root group
         * is no read-only group, and a zeroed config must not grant anything. */
        gid_t read_group;
        /* The full names of the methods the read group may call; each must be in the table. */
        const char *const *read_methods;
        size_t n_read_methods;
        /* 0 = CONTROL_SERVER_MAX_CONNECTIONS. At the cap a new peer closes the connection idle
         * longest (no call in flight); only when every one has a call in flight is it refused. */
        unsigned max_connections;
        unsigned max_calls; /* per connection; 0 = CONTROL_CONN_MAX_CALLS */
        size_t max_tx;      /* per connection; 0 = CONTROL_CONN_MAX_TX (>= one max frame) */
        size_t max_frame;   /* a request's data bytes, CONTROL_FRAME_MIN_DATA..CONTROL_FRAME_MAX_DATA;
                                         * 0 = CONTROL_FRAME_MAX_DATA */
        /* Socket activation: serve adopted_fd, a listening socket someone else (systemd) bound and
         * owns the file of: path then only names it in logs and is neither replaced nor removed,
         * and mode and group are the binder's business. */
        bool adopt_fd;
        int adopted_fd;
};

struct control_server;
struct control_call;

/* Runs on the loop with the decoded request, owned by the call (valid until it completes: read
 * what you need from it before replying). Return 0 when the call was completed or will be
 * completed later; return -errno without completing it to have the server answer with
 * control_code_from_errno(-errno). Once the handler completed the call its return value is
 * ignored, so `return control_call_reply(call, &resp.base);` is fine. */
typedef int (*control_handler_fn)(struct control_call *call, const ProtobufCMessage *request, void *userdata);

struct control_method {
        const char *name;                          /* "vsockmux.v1.Control/VmAdd" */
        const ProtobufCMessageDescriptor *request; /* decoded before the handler runs */
        control_handler_fn handler;
        bool streaming; /* server-streaming (Events) */
};

/* Over a limit the client is told why before the connection closes: a connection past
 * max_connections gets a RESOURCE_EXHAUSTED response on stream 1 (a ttrpc client's first), a
 * request over max_frame one on its own stream; both are logged. */
/* Creates the socket (a stale socket file is replaced, a live one is -EADDRINUSE) with mode 0600,
 * or 0660 and group cfg->group, and starts accepting on r's loop. Peers are checked with
 * SO_PEERCRED: root, cfg->owner_uid, or (with a group) a member of it; others are refused and
 * logged. The table is borrowed and must outlive the server. umask is changed around bind():
 * create the server before starting any thread that creates files. */
/* With adopt_fd the server takes adopted_fd on success only. */
int control_server_new(struct relay *r, const struct control_server_config *cfg, const struct control_method *methods,
                       size_t n_methods, void *userdata, struct control_server **ret);

/* Closes every connection (cancel callbacks of their pending calls run), stops accepting and
 * removes the socket file. Pending calls stay valid until their handler completes them. */
struct control_server *control_server_free(struct control_server *s);
DEFINE_CLEANUP(struct control_server *, control_server_free);

unsigned control_server_connections(const struct control_server *s);

/* How often each of the server's caps was hit since it started; for the metrics. */
struct control_server_stats {
        uint64_t connections_evicted; /* at max_connections: the idlest connection closed for a new one */
        uint64_t connections_refused; /* at max_connections with every connection busy: the new one refused */
        uint64_t calls_refused;       /* at max_calls on a connection: the request answered RESOURCE_EXHAUSTED */
        uint64_t frames_refused;      /* a request over max_frame: answered, then the connection closed */
        uint64_t partial_shed;        /* connections closed to keep unfinished requests under the shared bound */
};

void control_server_get_stats(const struct control_server *s, struct control_server_stats *ret);

/* A new cap on connections (0 = the default), for a reload: connections already open stay, and
 * past the cap new ones are handled as at max_connections. -EINVAL above the limit. */
int control_server_set_max_connections(struct control_server *s, unsigned max_connections);

/* Live upgrade: stops accepting and returns the listening socket (close-on-exec),
 * with whether this server bound its file (not socket activation). Peers that connect meanwhile
 * wait in the socket's backlog for whoever accepts next; the file is no longer removed at free.
 * control_server_listen_again() takes the fd back and accepts again (a rollback). */
int control_server_release_listener(struct control_server *s, int *ret_fd, bool *ret_owned);
int control_server_listen_again(struct control_server *s, int fd);
/* Bytes queued to clients and not yet written (an upgraded daemon flushes them before it goes). */
size_t control_server_tx_pending(const struct control_server *s);

/* ---- Calls: each is completed exactly once by control_call_reply() or control_call_fail(),
 * which also frees it. Completing a call whose client is gone just frees it. ---------------- */

/* Unary: sends response (NULL = empty message). Streaming: ends the stream successfully
 * (response must be NULL). Returns 0, or -ENOTCONN when nobody could receive it. */
int control_call_reply(struct control_call *call, const ProtobufCMessage *response);

/* Ends the call (also a stream) with a gRPC error status and a one-line message. */
int control_call_fail(struct control_call *call, enum control_code code, const char *fmt, ...) _printf_(3, 4);

/* Completes with the code for -errno and a message "<what>: <strerror>". */
int control_call_fail_errno(struct control_call *call, int err, const char *what);

/* Streaming only: sends one message as a ttrpc data frame. -ENOTCONN when the client is gone,
 * -ENOBUFS when the connection's output queue is full (the message is dropped, the stream stays
 * usable), -EINVAL on a unary call. */
int control_call_send(struct control_call *call, const ProtobufCMessage *msg);

/* Called at most once when the answer can no longer reach the client: the connection closed,
 * the request's deadline passed (the client got DEADLINE_EXCEEDED) or the server was freed.
 * The handler still completes the call afterwards (it may do so inside fn). */
typedef void (*control_cancel_fn)(struct control_call *call, void *userdata);
void control_call_set_cancel(struct control_call *call, control_cancel_fn fn, void *userdata);

/* True once cancelled: replies would go nowhere. */
bool control_call_is_cancelled(const struct control_call *call);
const struct ucred *control_call_peer(const struct control_call *call);
/* The peer's SO_PEERGROUPS; valid while its handler runs (NULL, 0 once the client is gone). */
const gid_t *control_call_peer_groups(const struct control_call *call, size_t *ret_n);
const struct control_method *control_call_method(const struct control_call *call);
/* The request's timeout_nano (0 = none); the server enforces it with DEADLINE_EXCEEDED. */
int64_t control_call_timeout_ns(const struct control_call *call);
