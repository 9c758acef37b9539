/* bridge/codec.c: encoding and parsing of GCS frames (16-byte header, JSON payload). */
#include "bridge/codec.h"

#include <stdlib.h>
#include <string.h>

#include "util/unaligned.h"

static const struct {
        uint32_t type;
        const char *name;
} bridge_type_names[] = {
        { BRIDGE_RPC_CREATE, "Create" },
        { BRIDGE_RPC_START, "Start" },
        { BRIDGE_RPC_SHUTDOWN_GRACEFUL, "ShutdownGraceful" },
        { BRIDGE_RPC_SHUTDOWN_FORCED, "ShutdownForced" },
        { BRIDGE_RPC_EXECUTE_PROCESS, "ExecuteProcess" },
        { BRIDGE_RPC_WAIT_FOR_PROCESS, "WaitForProcess" },
        { BRIDGE_RPC_SIGNAL_PROCESS, "SignalProcess" },
        { BRIDGE_RPC_RESIZE_CONSOLE, "ResizeConsole" },
        { BRIDGE_RPC_GET_PROPERTIES, "GetProperties" },
        { BRIDGE_RPC_MODIFY_SETTINGS, "ModifySettings" },
        { BRIDGE_RPC_NEGOTIATE_PROTOCOL, "NegotiateProtocol" },
        { BRIDGE_RPC_DUMP_STACKS, "DumpStacks" },
        { BRIDGE_RPC_DELETE_CONTAINER_STATE, "DeleteContainerState" },
        { BRIDGE_RPC_UPDATE_CONTAINER, "UpdateContainer" },
        { BRIDGE_RPC_LIFECYCLE_NOTIFICATION, "LifecycleNotification" },
        { BRIDGE_RPC_MODIFY_SERVICE_SETTINGS, "ModifyServiceSettings" },
        { BRIDGE_NOTIFY_CONTAINER, "ContainerNotification" },
};

enum bridge_type_class bridge_type_class(uint32_t type)
{
        switch (type & BRIDGE_TYPE_CLASS_MASK) {
        case BRIDGE_TYPE_REQUEST: return BRIDGE_CLASS_REQUEST;
        case BRIDGE_TYPE_RESPONSE: return BRIDGE_CLASS_RESPONSE;
        case BRIDGE_TYPE_NOTIFY: return BRIDGE_CLASS_NOTIFY;
        default: return _BRIDGE_CLASS_INVALID;
        }
}

uint32_t bridge_type_response_for(uint32_t req)
{
        return BRIDGE_TYPE_RESPONSE | (req & ~BRIDGE_TYPE_CLASS_MASK);
}

const char *bridge_type_name(uint32_t type)
{
        uint32_t req = type;

        if (bridge_type_class(type) == BRIDGE_CLASS_RESPONSE)
                req = BRIDGE_TYPE_REQUEST | (type & ~BRIDGE_TYPE_CLASS_MASK);
        for (size_t i = 0; i < sizeof(bridge_type_names) / sizeof(bridge_type_names[0]); i++)
                if (bridge_type_names[i].type == req)
                        return bridge_type_names[i].name;
        return NULL;
}

bool bridge_type_is_known_request(uint32_t type)
{
        return bridge_type_class(type) == BRIDGE_CLASS_REQUEST && bridge_type_name(type);
}

void bridge_header_encode(const struct bridge_header *h, uint8_t out[BRIDGE_HEADER_SIZE])
{
        unaligned_write_le32(out, h->type);
        unaligned_write_le32(out + 4, h->size);
        unaligned_write_le64(out + 8, h->id);
}

void bridge_header_decode(const uint8_t in[BRIDGE_HEADER_SIZE], struct bridge_header *ret)
{
        ret->type = unaligned_read_le32(in);
        ret->size = unaligned_read_le32(in + 4);
        ret->id = unaligned_read_le64(in + 8);
}

int bridge_header_check(const struct bridge_header *h, const char **ret_reason)
{
        const char *reason = NULL;

        if (h->size < BRIDGE_HEADER_SIZE)
                reason = "frame size smaller than the 16-byte header";
        else if (h->size > BRIDGE_MAX_FRAME)
                reason = "frame size larger than the 64 KiB limit";
        if (!reason)
                return 0;
        if (ret_reason)
                *ret_reason = reason;
        return -EBADMSG;
}

int bridge_frame_parse(const void *data, size_t len, struct bridge_frame *ret_frame, size_t *ret_need,
                       const char **ret_reason)
{
        struct bridge_header h;
        int r;

        if (len < BRIDGE_HEADER_SIZE) {
                if (ret_need)
                        *ret_need = BRIDGE_HEADER_SIZE;
                return 0;
        }
        bridge_header_decode(data, &h);
        r = bridge_header_check(&h, ret_reason);
        if (r < 0)
                return r;
        if (len < h.size) {
                if (ret_need)
                        *ret_need = h.size;
                return 0;
        }
        *ret_frame = (struct bridge_frame){
                .header = h,
                .payload = (const char *)data + BRIDGE_HEADER_SIZE,
                .payload_len = h.size - BRIDGE_HEADER_SIZE,
        };
        return (int)h.size;
}

int bridge_frame_encode(uint32_t type, uint64_t id, const char *payload, size_t payload_len, bool newline,
                        uint8_t **ret_buf, size_t *ret_len)
{
        size_t extra = newline ? 1 : 0;
        size_t size;
        uint8_t *buf;

        if (payload_len > BRIDGE_MAX_PAYLOAD - extra)
                return -EMSGSIZE;
        size = BRIDGE_HEADER_SIZE + payload_len + extra;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        bridge_header_encode(&(struct bridge_header){ .type = type, .size = (uint32_t)size, .id = id }, buf);
        if (payload_len)
                memcpy(buf + BRIDGE_HEADER_SIZE, payload, payload_len);
        if (newline)
                buf[size - 1] = '\n';
        *ret_buf = buf;
        *ret_len = size;
        return 0;
}
