/* control/codec.h: ttrpc framing and envelopes as pure functions over caller buffers; owns no state. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "control.pb-c.h"
#include "util/macro.h"

/* Wire compatibility with containerd/ttrpc (PROTOCOL.md), so a Go ttrpc client can call vsockmuxd:
 * - frames: 10-byte header (BE32 length, BE32 stream id, type, flags), data up to 4 MiB; a longer
 *   length closes the connection as soon as its 4 bytes arrive;
 * - client streams are odd and increasing; an even, zero or reused id gets INVALID_ARGUMENT;
 * - unary: Request (flags 0) -> Response{status, payload};
 * - server streaming (Events): the client's Request may carry remote-closed (0x01); each message is
 *   a Data frame (flags 0) holding the bare message; success ends with an empty Data frame flagged
 *   remote-closed|no-data (0x05), an error ends with a Response carrying the status;
 * - client data frames are not used by any method: ignored on a live stream, else INVALID_ARGUMENT;
 * - an unknown service or method gets UNIMPLEMENTED (Go's server says NOT_FOUND; both are errors);
 * - a Response (or an unknown type) from a client is a protocol error: the connection closes. */

/* containerd/ttrpc PROTOCOL.md: 10-byte header, data length capped at 4 MiB. */
#define CONTROL_FRAME_HEADER_SIZE 10u
#define CONTROL_FRAME_MAX_DATA (4u * 1024u * 1024u)
#define CONTROL_FRAME_MAX (CONTROL_FRAME_HEADER_SIZE + CONTROL_FRAME_MAX_DATA)

/* Longest "service/method" name accepted from a peer. */
#define CONTROL_METHOD_NAME_MAX 256u

/* Longest status message a server sends or a client keeps. */
#define CONTROL_STATUS_MESSAGE_MAX 512u

/* The service name as ttrpc routes it: the proto package plus the service. */
#define CONTROL_SERVICE "vsockmux.v1.Control"
/* "vsockmux.v1.Control/VmAdd" from "VmAdd". */
#define CONTROL_METHOD_NAME(m) CONTROL_SERVICE "/" m

enum control_msg_type {
        CONTROL_MSG_REQUEST = 1,
        CONTROL_MSG_RESPONSE = 2,
        CONTROL_MSG_DATA = 3,
};

/* Request and data flags; a response carries none. */
#define CONTROL_FLAG_REMOTE_CLOSED 0x01u
#define CONTROL_FLAG_REMOTE_OPEN 0x02u
#define CONTROL_FLAG_NO_DATA 0x04u

/* gRPC status codes (google.rpc.Code). */
enum control_code {
        CONTROL_CODE_OK = 0,
        CONTROL_CODE_CANCELLED = 1,
        CONTROL_CODE_UNKNOWN = 2,
        CONTROL_CODE_INVALID_ARGUMENT = 3,
        CONTROL_CODE_DEADLINE_EXCEEDED = 4,
        CONTROL_CODE_NOT_FOUND = 5,
        CONTROL_CODE_ALREADY_EXISTS = 6,
        CONTROL_CODE_PERMISSION_DENIED = 7,
        CONTROL_CODE_RESOURCE_EXHAUSTED = 8,
        CONTROL_CODE_FAILED_PRECONDITION = 9,
        CONTROL_CODE_ABORTED = 10,
        CONTROL_CODE_OUT_OF_RANGE = 11,
        CONTROL_CODE_UNIMPLEMENTED = 12,
        CONTROL_CODE_INTERNAL = 13,
        CONTROL_CODE_UNAVAILABLE = 14,
        CONTROL_CODE_DATA_LOSS = 15,
        CONTROL_CODE_UNAUTHENTICATED = 16,
        _CONTROL_CODE_MAX,
        _CONTROL_CODE_INVALID = -EINVAL,
};

/* "OK", "NOT_FOUND", ...; "UNKNOWN_CODE" for values outside the table. */
const char *control_code_to_string(int code);

/* Maps a -errno from a handler to the nearest gRPC code. */
enum control_code control_code_from_errno(int err);

struct control_frame_header {
        uint32_t length; /* bytes of data after the header */
        uint32_t stream_id;
        uint8_t type; /* enum control_msg_type; unknown types are the reader's call */
        uint8_t flags;
};

/* A frame parsed in place: data points into the caller's buffer. */
struct control_frame {
        struct control_frame_header header;
        const uint8_t *data;
};

void control_frame_header_encode(const struct control_frame_header *h, uint8_t out[CONTROL_FRAME_HEADER_SIZE]);

/* Parses the first frame of buf[0..len). Returns 1 and fills *ret_frame and *ret_size (header plus
 * data) when a whole frame is there, 0 when more bytes are needed, -EMSGSIZE when the length
 * exceeds CONTROL_FRAME_MAX_DATA. Any byte sequence is safe to feed. */
int control_frame_parse(const uint8_t *buf, size_t len, struct control_frame *ret_frame, size_t *ret_size);

/* Builds one frame whose data is msg packed (msg NULL: empty data) into a fresh malloc()ed
 * buffer. -EMSGSIZE when the packed message exceeds CONTROL_FRAME_MAX_DATA. */
int control_frame_build(uint32_t stream_id, uint8_t type, uint8_t flags, const ProtobufCMessage *msg, uint8_t **ret_buf,
                        size_t *ret_size);

/* Builds a response frame: status code and message, and payload packed from msg when the code is
 * OK (msg may be NULL for an empty payload). */
int control_response_build(uint32_t stream_id, int code, const char *message, const ProtobufCMessage *msg,
                           uint8_t **ret_buf, size_t *ret_size);

/* Builds a request frame for "service/method"-less callers: service and method given apart. */
int control_request_build(uint32_t stream_id, uint8_t flags, const char *service, const char *method,
                          const ProtobufCMessage *msg, int64_t timeout_nano, uint8_t **ret_buf, size_t *ret_size);

/* Decodes protobuf bytes as desc's message. -EBADMSG when they are not a valid encoding. */
int control_message_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                           ProtobufCMessage **ret);

/* Frees a message from control_message_decode(); accepts NULL, returns NULL. */
ProtobufCMessage *control_message_free(ProtobufCMessage *m);
DEFINE_CLEANUP(ProtobufCMessage *, control_message_free);

static inline Vsockmux__V1__TtrpcRequest *control_request_free(Vsockmux__V1__TtrpcRequest *r)
{
        if (r)
                vsockmux__v1__ttrpc_request__free_unpacked(r, NULL);
        return NULL;
}
DEFINE_CLEANUP(Vsockmux__V1__TtrpcRequest *, control_request_free);

static inline Vsockmux__V1__TtrpcResponse *control_response_free(Vsockmux__V1__TtrpcResponse *r)
{
        if (r)
                vsockmux__v1__ttrpc_response__free_unpacked(r, NULL);
        return NULL;
}
DEFINE_CLEANUP(Vsockmux__V1__TtrpcResponse *, control_response_free);

/* Decodes a request envelope; -EBADMSG for bad protobuf, -EINVAL when service or method is empty
 * or the joined name would exceed CONTROL_METHOD_NAME_MAX. */
int control_request_decode(const uint8_t *data, size_t len, Vsockmux__V1__TtrpcRequest **ret);

/* Decodes a response envelope; -EBADMSG for bad protobuf. A missing status means OK. */
int control_response_decode(const uint8_t *data, size_t len, Vsockmux__V1__TtrpcResponse **ret);
