/* fuzz/bridge/fuzz-bridge.c: arbitrary bytes through the bridge frame reader and every message decoder; owns nothing. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/codec.h"
#include "bridge/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t fuzz_request_types[] = {
        BRIDGE_RPC_CREATE,
        BRIDGE_RPC_SHUTDOWN_GRACEFUL,
        BRIDGE_RPC_EXECUTE_PROCESS,
        BRIDGE_RPC_WAIT_FOR_PROCESS,
        BRIDGE_RPC_SIGNAL_PROCESS,
        BRIDGE_RPC_RESIZE_CONSOLE,
        BRIDGE_RPC_NEGOTIATE_PROTOCOL,
        BRIDGE_RPC_DUMP_STACKS,
};

static bool str_eq(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(const char **a, size_t na, const char **b, size_t nb)
{
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!str_eq(a[i], b[i]))
                        return false;
        return true;
}

static bool request_eq(const struct bridge_request *a, const struct bridge_request *b)
{
        const struct bridge_process_params *pa = &a->exec.params, *pb = &b->exec.params;

        return a->type == b->type && str_eq(a->container_id, b->container_id) &&
               (!a->activity_id || str_eq(a->activity_id, b->activity_id)) &&
               a->negotiate.min_version == b->negotiate.min_version &&
               a->negotiate.max_version == b->negotiate.max_version &&
               a->negotiate.stdio_resume == b->negotiate.stdio_resume && str_eq(a->create.config, b->create.config) &&
               a->exec.has_params == b->exec.has_params && strv_eq(pa->args, pa->n_args, pb->args, pb->n_args) &&
               strv_eq(pa->env, pa->n_env, pb->env, pb->n_env) && str_eq(pa->command_line, pb->command_line) &&
               str_eq(pa->working_dir, pb->working_dir) && pa->emulate_console == pb->emulate_console &&
               pa->create_stdin == pb->create_stdin && pa->create_stdout == pb->create_stdout &&
               pa->create_stderr == pb->create_stderr && pa->console_height == pb->console_height &&
               pa->console_width == pb->console_width && a->exec.stdin_port == b->exec.stdin_port &&
               a->exec.stdout_port == b->exec.stdout_port && a->exec.stderr_port == b->exec.stderr_port &&
               a->wait.pid == b->wait.pid && a->wait.timeout_ms == b->wait.timeout_ms &&
               a->signal.pid == b->signal.pid && a->signal.has_options == b->signal.has_options &&
               a->signal.signal == b->signal.signal && a->resize.pid == b->resize.pid &&
               a->resize.height == b->resize.height && a->resize.width == b->resize.width &&
               a->negotiate.stdio_ack == b->negotiate.stdio_ack && a->negotiate.stdin_eof == b->negotiate.stdin_eof;
}

/* Whatever decodes must encode and decode again to the same message: the two sides never disagree. */
static void fuzz_request(uint32_t type, const char *p, size_t n)
{
        struct bridge_request req = {}, again = {};
        char *json = NULL;
        size_t len;
        int r;

        if (bridge_request_decode(type, p, n, &req, NULL) < 0)
                return;
        r = bridge_request_encode(&req, &json, &len);
        if (r == 0 && (bridge_request_decode(type, json, len, &again, NULL) != 0 || !request_eq(&req, &again)))
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
                       !str_eq(again.activity_id, resp.activity_id) ||
                       !str_eq(again.negotiate.runtime_os_type, resp.negotiate.runtime_os_type) ||
                       again.wait.exit_code != resp.wait.exit_code ||
                       again.negotiate.stdio_resume != resp.negotiate.stdio_resume ||
                       again.negotiate.stdio_ack != resp.negotiate.stdio_ack ||
                       again.negotiate.stdin_eof != resp.negotiate.stdin_eof))
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
        if (r == 0 && (bridge_notification_decode(json, len, &again, NULL) != 0 ||
                       !str_eq(note.container_id, again.container_id) || !str_eq(note.type, again.type) ||
                       !str_eq(note.operation, again.operation) || !str_eq(note.result_info, again.result_info) ||
                       note.result != again.result))
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
        case BRIDGE_CLASS_REQUEST: fuzz_request(type, p, n); break;
        case BRIDGE_CLASS_RESPONSE: fuzz_response(BRIDGE_TYPE_REQUEST | (type & ~BRIDGE_TYPE_CLASS_MASK), p, n); break;
        case BRIDGE_CLASS_NOTIFY: fuzz_notification(p, n); break;
        default: break;
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
