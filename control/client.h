/* control/client.h: a blocking ttrpc client for the CLI and tests; owns its socket and receive buffer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "control/codec.h"
#include "util/macro.h"


/* "vsockmux.v1.Control/VmAdd" from "VmAdd". */
#define CONTROL_METHOD_NAME(m) CONTROL_SERVICE "/" m

struct control_status {
        int code;                                       /* enum control_code */
        char message[CONTROL_STATUS_MESSAGE_MAX];
};

struct control_client;

int control_client_connect(const char *path, struct control_client **ret);
struct control_client *control_client_free(struct control_client *c);
DEFINE_CLEANUP(struct control_client *, control_client_free);

/* For poll(): readable means a frame is on its way. */
int control_client_fd(const struct control_client *c);

/* Bounds every later read; 0 = wait forever (the default). A read that times out is -ETIMEDOUT. */
int control_client_set_timeout(struct control_client *c, uint64_t timeout_ns);

/* Sends a request for "service/method". flags: 0 for unary, CONTROL_FLAG_REMOTE_CLOSED to open a
 * server stream. timeout_ns goes to the server as timeout_nano (0 = none). */
int control_client_send(struct control_client *c, const char *method, const ProtobufCMessage *req,
                        uint8_t flags, int64_t timeout_ns, uint32_t *ret_stream_id);

enum control_client_event {
        CONTROL_CLIENT_RESPONSE,        /* the final OK response; *ret_msg holds its payload */
        CONTROL_CLIENT_DATA,            /* one stream message in *ret_msg */
        CONTROL_CLIENT_END,             /* the stream ended without error */
};

/* Reads until a frame for stream_id arrives (frames of other streams are skipped) and decodes it
 * as desc. Returns an enum control_client_event; -EREMOTEIO when the server answered with an error
 * status (then *ret_status is filled when non-NULL); -ECONNRESET when the server closed the
 * connection; -EBADMSG for a frame or payload that does not decode; -EMSGSIZE over 4 MiB. */
int control_client_recv(struct control_client *c, uint32_t stream_id,
                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret_msg,
                        struct control_status *ret_status);

/* A unary call: send, then wait for the response. 0 with *ret_resp, or as control_client_recv. */
int control_client_call(struct control_client *c, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **ret_resp,
                        struct control_status *ret_status);
