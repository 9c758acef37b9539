/* control/codec.c: ttrpc frame header, frame building and envelope decoding. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control/codec.h"

static const char *const control_code_names[_CONTROL_CODE_MAX] = {
        [CONTROL_CODE_OK] = "OK",
        [CONTROL_CODE_CANCELLED] = "CANCELLED",
        [CONTROL_CODE_UNKNOWN] = "UNKNOWN",
        [CONTROL_CODE_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [CONTROL_CODE_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [CONTROL_CODE_NOT_FOUND] = "NOT_FOUND",
        [CONTROL_CODE_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [CONTROL_CODE_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [CONTROL_CODE_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [CONTROL_CODE_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [CONTROL_CODE_ABORTED] = "ABORTED",
        [CONTROL_CODE_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [CONTROL_CODE_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [CONTROL_CODE_INTERNAL] = "INTERNAL",
        [CONTROL_CODE_UNAVAILABLE] = "UNAVAILABLE",
        [CONTROL_CODE_DATA_LOSS] = "DATA_LOSS",
        [CONTROL_CODE_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *control_code_to_string(int code)
{
        if (code < 0 || code >= _CONTROL_CODE_MAX)
                return "UNKNOWN_CODE";
        return control_code_names[code];
}

enum control_code control_code_from_errno(int err)
{
        switch (err < 0 ? -err : err) {
        case 0: return CONTROL_CODE_OK;
        case EINVAL:
        case EBADMSG:
        case E2BIG:
        case ENAMETOOLONG: return CONTROL_CODE_INVALID_ARGUMENT;
        case ENOENT:
        case ESRCH:
        case ENODEV: return CONTROL_CODE_NOT_FOUND;
        case EEXIST: return CONTROL_CODE_ALREADY_EXISTS;
        case EPERM:
        case EACCES: return CONTROL_CODE_PERMISSION_DENIED;
        case ENOSPC:
        case ENOMEM:
        case ENOBUFS:
        case EMFILE:
        case ENFILE:
        case EMSGSIZE:
        case EUSERS: return CONTROL_CODE_RESOURCE_EXHAUSTED;
        case EBUSY:
        case ENOTCONN:
        case EALREADY: return CONTROL_CODE_FAILED_PRECONDITION;
        case ETIMEDOUT:
        case ETIME: return CONTROL_CODE_DEADLINE_EXCEEDED;
        case ECANCELED: return CONTROL_CODE_CANCELLED;
        case EOPNOTSUPP:
        case ENOSYS: return CONTROL_CODE_UNIMPLEMENTED;
        case ECONNRESET:
        case ECONNREFUSED:
        case EPIPE:
        case EAGAIN: return CONTROL_CODE_UNAVAILABLE;
        case ERANGE: return CONTROL_CODE_OUT_OF_RANGE;
        default: return CONTROL_CODE_INTERNAL;
        }
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void control_frame_header_encode(const struct control_frame_header *h, uint8_t out[CONTROL_FRAME_HEADER_SIZE])
{
        put_be32(out, h->length);
        put_be32(out + 4, h->stream_id);
        out[8] = h->type;
        out[9] = h->flags;
}

int control_frame_parse(const uint8_t *buf, size_t len, struct control_frame *ret_frame, size_t *ret_size)
{
        struct control_frame_header h;

        /* The length alone decides an oversized frame, so refuse it before the rest arrives. */
        if (len >= 4 && get_be32(buf) > CONTROL_FRAME_MAX_DATA)
                return -EMSGSIZE;
        if (len < CONTROL_FRAME_HEADER_SIZE)
                return 0;

        h.length = get_be32(buf);
        h.stream_id = get_be32(buf + 4);
        h.type = buf[8];
        h.flags = buf[9];
        if (len - CONTROL_FRAME_HEADER_SIZE < h.length)
                return 0;

        *ret_frame = (struct control_frame){
                .header = h,
                .data = buf + CONTROL_FRAME_HEADER_SIZE,
        };
        *ret_size = CONTROL_FRAME_HEADER_SIZE + (size_t)h.length;
        return 1;
}

int control_frame_build(uint32_t stream_id, uint8_t type, uint8_t flags, const ProtobufCMessage *msg, uint8_t **ret_buf,
                        size_t *ret_size)
{
        size_t data_len = msg ? protobuf_c_message_get_packed_size(msg) : 0;
        uint8_t *buf;

        if (data_len > CONTROL_FRAME_MAX_DATA)
                return -EMSGSIZE;

        buf = malloc(CONTROL_FRAME_HEADER_SIZE + data_len);
        if (!buf)
                return -ENOMEM;
        control_frame_header_encode(
                &(struct control_frame_header){
                        .length = (uint32_t)data_len,
                        .stream_id = stream_id,
                        .type = type,
                        .flags = flags,
                },
                buf);
        if (msg && protobuf_c_message_pack(msg, buf + CONTROL_FRAME_HEADER_SIZE) != data_len) {
                free(buf);
                return -EIO;
        }

        *ret_buf = buf;
        *ret_size = CONTROL_FRAME_HEADER_SIZE + data_len;
        return 0;
}

/* Packs msg into a fresh buffer; an empty message packs to zero bytes and a NULL buffer. */
static int pack_message(const ProtobufCMessage *msg, ProtobufCBinaryData *ret)
{
        size_t len;
        uint8_t *data;

        if (!msg) {
                *ret = (ProtobufCBinaryData){ 0, NULL };
                return 0;
        }
        len = protobuf_c_message_get_packed_size(msg);
        if (len > CONTROL_FRAME_MAX_DATA)
                return -EMSGSIZE;
        data = malloc(len ? len : 1);
        if (!data)
                return -ENOMEM;
        if (protobuf_c_message_pack(msg, data) != len) {
                free(data);
                return -EIO;
        }
        *ret = (ProtobufCBinaryData){ len, data };
        return 0;
}

int control_response_build(uint32_t stream_id, int code, const char *message, const ProtobufCMessage *msg,
                           uint8_t **ret_buf, size_t *ret_size)
{
        Vsockmux__V1__TtrpcResponse resp = VSOCKMUX__V1__TTRPC_RESPONSE__INIT;
        Vsockmux__V1__RpcStatus status = VSOCKMUX__V1__RPC_STATUS__INIT;
        ProtobufCBinaryData payload = { 0, NULL };
        int r;

        if (code == CONTROL_CODE_OK) {
                r = pack_message(msg, &payload);
                if (r < 0)
                        return r;
        }
        status.code = code;
        status.message = (char *)(message ?: "");
        resp.status = &status;
        resp.payload = payload;

        r = control_frame_build(stream_id, CONTROL_MSG_RESPONSE, 0, &resp.base, ret_buf, ret_size);
        free(payload.data);
        return r;
}

int control_request_build(uint32_t stream_id, uint8_t flags, const char *service, const char *method,
                          const ProtobufCMessage *msg, int64_t timeout_nano, uint8_t **ret_buf, size_t *ret_size)
{
        Vsockmux__V1__TtrpcRequest req = VSOCKMUX__V1__TTRPC_REQUEST__INIT;
        ProtobufCBinaryData payload;
        int r;

        r = pack_message(msg, &payload);
        if (r < 0)
                return r;
        req.service = (char *)service;
        req.method = (char *)method;
        req.payload = payload;
        req.timeout_nano = timeout_nano;

        r = control_frame_build(stream_id, CONTROL_MSG_REQUEST, flags, &req.base, ret_buf, ret_size);
        free(payload.data);
        return r;
}

int control_message_decode(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                           ProtobufCMessage **ret)
{
        ProtobufCMessage *m;

        if (len > CONTROL_FRAME_MAX_DATA)
                return -EMSGSIZE;
        m = protobuf_c_message_unpack(desc, NULL, len, data);
        if (!m)
                return -EBADMSG;
        *ret = m;
        return 0;
}

ProtobufCMessage *control_message_free(ProtobufCMessage *m)
{
        if (m)
                protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
}

int control_request_decode(const uint8_t *data, size_t len, Vsockmux__V1__TtrpcRequest **ret)
{
        ProtobufCMessage *m;
        Vsockmux__V1__TtrpcRequest *req;
        int r;

        r = control_message_decode(&vsockmux__v1__ttrpc_request__descriptor, data, len, &m);
        if (r < 0)
                return r;
        req = (Vsockmux__V1__TtrpcRequest *)m;
        if (!req->service[0] || !req->method[0] ||
            strlen(req->service) + 1 + strlen(req->method) > CONTROL_METHOD_NAME_MAX) {
                control_request_free(req);
                return -EINVAL;
        }
        *ret = req;
        return 0;
}

int control_response_decode(const uint8_t *data, size_t len, Vsockmux__V1__TtrpcResponse **ret)
{
        ProtobufCMessage *m;
        int r;

        r = control_message_decode(&vsockmux__v1__ttrpc_response__descriptor, data, len, &m);
        if (r < 0)
                return r;
        *ret = (Vsockmux__V1__TtrpcResponse *)m;
        return 0;
}
