/* vsockmux/vsockmux.h: libvsockmux, the C client of vsockmuxd's control API (the ttrpc service
 * vsockmux.v1.Control on a Unix socket); owns one connection, its socket and receive buffer.
 *
 * Requests and responses are the protobuf-c messages of control.pb-c.h (installed beside this
 * header, generated from vsockmuxd's proto/control.proto). Every function returning int returns 0
 * (or a non-negative value where said) on success and a negative errno on failure. A client is
 * blocking and is used by one thread at a time. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "control.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ttrpc service every method belongs to, and "vsockmux.v1.Control/Exec" from "Exec". */
#define VSOCKMUX_SERVICE "vsockmux.v1.Control"
#define VSOCKMUX_METHOD(m) VSOCKMUX_SERVICE "/" m

/* Where vsockmuxd listens unless told otherwise. */
#define VSOCKMUX_DEFAULT_SOCKET "/run/vsockmux/vsockmux.sock"

/* ttrpc's request flag that opens a server stream (Events). */
#define VSOCKMUX_FLAG_REMOTE_CLOSED 0x1u

/* Longest status message kept, with its NUL. */
#define VSOCKMUX_STATUS_MESSAGE_MAX 512u

/* Why the daemon refused a call. code is a google.rpc.Code (5 NOT_FOUND, 3 INVALID_ARGUMENT, ...). */
struct vsockmux_status {
        int code;
        char message[VSOCKMUX_STATUS_MESSAGE_MAX];
};

struct vsockmux_client;

/* Connects to the daemon's socket. -ENOENT or -ECONNREFUSED when no daemon listens there,
 * -ENAMETOOLONG for a path a Unix socket cannot hold. */
int vsockmux_client_connect(const char *path, struct vsockmux_client **ret);
/* A client on fd, a connected SOCK_STREAM socket to the daemon (an inherited or socket-activated
 * one, a socketpair end): on success the client owns it and vsockmux_client_free closes it; on
 * failure it stays the caller's. -EBADF for a negative fd. */
int vsockmux_client_new_fd(int fd, struct vsockmux_client **ret);
/* Closes the connection; accepts NULL; returns NULL. */
struct vsockmux_client *vsockmux_client_free(struct vsockmux_client *c);

/* For poll(): readable means a frame is on its way. */
int vsockmux_client_fd(const struct vsockmux_client *c);

/* 1 when a whole frame is already buffered, so recv will not block though poll() on the fd may
 * not say readable (one read can bring several frames); 0 otherwise. */
int vsockmux_client_pending(const struct vsockmux_client *c);

/* Bounds every later read; 0 = wait forever (the default). A read that times out is -ETIMEDOUT. */
int vsockmux_client_set_timeout(struct vsockmux_client *c, uint64_t timeout_ns);

/* Sends a request for method ("vsockmux.v1.Control/Exec", see VSOCKMUX_METHOD). flags: 0 for a
 * unary call, VSOCKMUX_FLAG_REMOTE_CLOSED to open a server stream. timeout_ns goes to the server
 * as ttrpc's timeout_nano (0 = none). */
int vsockmux_client_send(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req, uint8_t flags,
                         int64_t timeout_ns, uint32_t *ret_stream_id);

enum vsockmux_client_event {
        VSOCKMUX_CLIENT_RESPONSE, /* the final OK response; *ret_msg holds its payload */
        VSOCKMUX_CLIENT_DATA,     /* one stream message in *ret_msg */
        VSOCKMUX_CLIENT_END,      /* the stream ended without error */
};

/* Reads until a frame for stream_id arrives (frames of other streams are skipped) and decodes it
 * as desc. Returns an enum vsockmux_client_event; -EREMOTEIO when the daemon answered with an
 * error status (then *ret_status is filled when non-NULL); -ECONNRESET when it closed the
 * connection; -EBADMSG for a frame or payload that does not decode; -EMSGSIZE over 4 MiB.
 * Free *ret_msg with vsockmux_message_free(). */
int vsockmux_client_recv(struct vsockmux_client *c, uint32_t stream_id, const ProtobufCMessageDescriptor *desc,
                         ProtobufCMessage **ret_msg, struct vsockmux_status *ret_status);

/* A unary call: send, then wait for the response. 0 with *ret_resp, or as vsockmux_client_recv. */
int vsockmux_client_call(struct vsockmux_client *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
                         struct vsockmux_status *ret_status);

/* Frees a message recv or call returned; accepts NULL; returns NULL. */
ProtobufCMessage *vsockmux_message_free(ProtobufCMessage *m);

/* "NOT_FOUND" for 5; "UNKNOWN_CODE" for a code it does not know. */
const char *vsockmux_code_to_string(int code);

#ifdef __cplusplus
}
#endif
