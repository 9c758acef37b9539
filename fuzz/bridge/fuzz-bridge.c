/* fuzz/bridge/fuzz-bridge.c: arbitrary bytes through the bridge frame reader and every message decoder; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/codec.h"
#include "bridge/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t fuzz_request_types[] = {
        BRIDGE_RPC_CREATE,           BRIDGE_RPC_SHUTDOWN_GRACEFUL, BRIDGE_RPC_EXECUTE_PROCESS,
        BRIDGE_RPC_WAIT_FOR_PROCESS, BRIDGE_RPC_SIGNAL_PROCESS,    BRIDGE_RPC_RESIZE_CONSOLE,
        BRIDGE_RPC_NEGOTIATE_PROTOCOL, BRIDGE_RPC_DUMP_STACKS,
};

/* Whatever decodes must encode and decode again: the two sides never disagree about a message. */
static void fuzz_request(uint32_t type, const char *p, size_t n)
{
        struct bridge_request req = {}, again = {};
        char *json = NULL;
        size_t len;
        int r;

        if (bridge_request_decode(type, p, n, &req, NULL) < 0)
                return;
        r = bridge_request_encode(&req, &json, &len);
        if (r == 0 && bridge_request_decode(type, json, len, &again, NULL) != 0)
                abort();
        if (r < 0 && r != -EMSGSIZE)
                abort();
        free(json);
        bridge_request_done(&again);
        bridge_request_done(&req);
}

static void fuzz_response(uint32_t req_type, const char *p, size_t n)
{
        struct bridge_response resp = {}, again = {};
        char *json = NULL;
        size_t len;
        int r;

        if (bridge_response_decode(req_type, p, n, &resp, NULL) < 0)
                return;
        r = bridge_response_encode(req_type, &resp, &json, &len);
        if (r == 0 && bridge_response_decode(req_type, json, len, &again, NULL) != 0)
                abort();
        if (r < 0 && r != -EMSGSIZE)
                abort();
        if (r == 0 && (again.result != resp.result || again.exec.pid != resp.exec.pid ||
                       again.wait.exit_code != resp.wait.exit_code ||
                       again.negotiate.stdio_resume != resp.negotiate.stdio_resume))
                abort();
        free(json);
        bridge_response_done(&again);
        bridge_response_done(&resp);
}

static void fuzz_notification(const char *p, size_t n)
{
        struct bridge_notification note = {}, again = {};
        char *json = NULL;
        size_t len;
        int r;

        if (bridge_notification_decode(p, n, &note, NULL) < 0)
                return;
        r = bridge_notification_encode(&note, &json, &len);
        if (r == 0 && bridge_notification_decode(json, len, &again, NULL) != 0)
                abort();
        if (r < 0 && r != -EMSGSIZE)
                abort();
        free(json);
        bridge_notification_done(&again);
        bridge_notification_done(&note);
}

static void fuzz_payload(uint32_t type, const char *p, size_t n)
{
        switch (bridge_type_class(type)) {
        case BRIDGE_CLASS_REQUEST:
                fuzz_request(type, p, n);
                break;
        case BRIDGE_CLASS_RESPONSE:
                fuzz_response(BRIDGE_TYPE_REQUEST | (type & ~BRIDGE_TYPE_CLASS_MASK), p, n);
                break;
        case BRIDGE_CLASS_NOTIFY:
                fuzz_notification(p, n);
                break;
        default:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t off = 0;

        /* As a byte stream: frames one after another, the way the host and the guest read them. */
        while (off < size) {
                struct bridge_frame f;
                size_t need = 0;
                int n = bridge_frame_parse(data + off, size - off, &f, &need, NULL);

                if (n <= 0)
                        break;
                if ((size_t)n > size - off || f.payload_len + BRIDGE_HEADER_SIZE != (size_t)n)
                        abort();
                fuzz_payload(f.header.type, f.payload, f.payload_len);
                off += (size_t)n;
        }

        /* As a bare payload, through every decoder. */
        if (size <= BRIDGE_MAX_PAYLOAD) {
                for (size_t i = 0; i < sizeof(fuzz_request_types) / sizeof(fuzz_request_types[0]); i++) {
                        fuzz_request(fuzz_request_types[i], (const char *)data, size);
                        fuzz_response(fuzz_request_types[i], (const char *)data, size);
                }
                fuzz_notification((const char *)data, size);
        }
        return 0;
}
