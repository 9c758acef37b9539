/* bridge/codec.h: the GCS frame format (16-byte little-endian header + JSON payload); pure functions, owns nothing. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BRIDGE_HEADER_SIZE 16u
/* The host refuses anything bigger (W2); we refuse it on both sides and never encode it. */
#define BRIDGE_MAX_FRAME 0x10000u
#define BRIDGE_MAX_PAYLOAD (BRIDGE_MAX_FRAME - BRIDGE_HEADER_SIZE)

/* Type = T(4) | category(8) | message id(12) | version(8) (W3). */
#define BRIDGE_TYPE_CLASS_MASK UINT32_C(0xF0000000)
#define BRIDGE_TYPE_REQUEST UINT32_C(0x10000000)
#define BRIDGE_TYPE_RESPONSE UINT32_C(0x20000000)
#define BRIDGE_TYPE_NOTIFY UINT32_C(0x30000000)

#define BRIDGE_RPC_CREATE UINT32_C(0x10100101)
#define BRIDGE_RPC_START UINT32_C(0x10100201)
#define BRIDGE_RPC_SHUTDOWN_GRACEFUL UINT32_C(0x10100301)
#define BRIDGE_RPC_SHUTDOWN_FORCED UINT32_C(0x10100401)
#define BRIDGE_RPC_EXECUTE_PROCESS UINT32_C(0x10100501)
#define BRIDGE_RPC_WAIT_FOR_PROCESS UINT32_C(0x10100601)
#define BRIDGE_RPC_SIGNAL_PROCESS UINT32_C(0x10100701)
#define BRIDGE_RPC_RESIZE_CONSOLE UINT32_C(0x10100801)
#define BRIDGE_RPC_GET_PROPERTIES UINT32_C(0x10100901)
#define BRIDGE_RPC_MODIFY_SETTINGS UINT32_C(0x10100a01)
#define BRIDGE_RPC_NEGOTIATE_PROTOCOL UINT32_C(0x10100b01)
#define BRIDGE_RPC_DUMP_STACKS UINT32_C(0x10100c01)
#define BRIDGE_RPC_DELETE_CONTAINER_STATE UINT32_C(0x10100d01)
#define BRIDGE_RPC_UPDATE_CONTAINER UINT32_C(0x10100e01)
#define BRIDGE_RPC_LIFECYCLE_NOTIFICATION UINT32_C(0x10100f01)
#define BRIDGE_RPC_MODIFY_SERVICE_SETTINGS UINT32_C(0x10200101)

#define BRIDGE_NOTIFY_CONTAINER UINT32_C(0x30100101) /* always sent with id 0 */

enum bridge_type_class {
        BRIDGE_CLASS_REQUEST,
        BRIDGE_CLASS_RESPONSE,
        BRIDGE_CLASS_NOTIFY,
        _BRIDGE_CLASS_MAX,
        _BRIDGE_CLASS_INVALID = -EINVAL,
};

struct bridge_header {
        uint32_t type;
        uint32_t size; /* whole message, header included */
        uint64_t id;
};

/* A view into the caller's buffer; valid as long as that buffer is. */
struct bridge_frame {
        struct bridge_header header;
        const char *payload;
        size_t payload_len;
};

/* Request, response or notify from the top 4 bits; _BRIDGE_CLASS_INVALID for anything else. */
enum bridge_type_class bridge_type_class(uint32_t type);
/* The response type answering request type `req` (same id on the wire). */
uint32_t bridge_type_response_for(uint32_t req);
/* "NegotiateProtocol", "ExecuteProcess", ...; NULL for a type not listed in W3. Responses are named after their request. */
const char *bridge_type_name(uint32_t type);
/* Whether `type` is one of the request types listed in W3. */
bool bridge_type_is_known_request(uint32_t type);

void bridge_header_encode(const struct bridge_header *h, uint8_t out[BRIDGE_HEADER_SIZE]);
void bridge_header_decode(const uint8_t in[BRIDGE_HEADER_SIZE], struct bridge_header *ret);
/* 0, or -EBADMSG with a static reason when size < 16 or > BRIDGE_MAX_FRAME. ret_reason may be NULL. */
int bridge_header_check(const struct bridge_header *h, const char **ret_reason);

/*
 * Incremental reader over a byte stream: looks at the bytes buffered so far.
 * Returns > 0: one complete frame is in *ret_frame and the return value is how many bytes it used;
 *         0: more bytes are needed, *ret_need (if not NULL) says how many in total for this frame;
 *   -EBADMSG: the stream is broken (bad size), *ret_reason (if not NULL) says why.
 * ret_frame is set only when a frame is returned.
 */
int bridge_frame_parse(const void *data, size_t len, struct bridge_frame *ret_frame, size_t *ret_need,
                       const char **ret_reason);

/*
 * Builds header + payload (+ '\n' when `newline`, as the host's json.Encoder does, W4) into a new
 * buffer. Returns 0, -EMSGSIZE when the frame would exceed BRIDGE_MAX_FRAME, or -ENOMEM.
 */
int bridge_frame_encode(uint32_t type, uint64_t id, const char *payload, size_t payload_len, bool newline,
                        uint8_t **ret_buf, size_t *ret_len);
