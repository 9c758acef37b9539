/* bridge/msg_request.c: encoding and decoding of bridge request bodies (negotiate, create, exec, wait, signal, ...). */
#include <stdio.h>
#include <string.h>

#include "bridge/msg-json.h"
#include "bridge/msg.h"

/* --- encoding (host side) --- */

static struct json_object *params_env_new(const struct bridge_process_params *p)
{
        struct json_object *env = json_object_new_object();

        if (!env)
                return NULL;
        for (size_t i = 0; i < p->n_env; i++) {
                const char *eq = strchr(p->env[i], '=');
                _cleanup_free_ char *name = NULL;

                name = strndup(p->env[i], (size_t)(eq - p->env[i]));
                if (!name || msg_json_add_string(env, name, eq + 1) < 0) {
                        json_object_put(env);
                        return NULL;
                }
        }
        return env;
}

static int params_encode(const struct bridge_process_params *p, char **ret_json)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        if (p->n_args > BRIDGE_MAX_ARGS || p->n_env > BRIDGE_MAX_ENV)
                return -EINVAL;
        for (size_t i = 0; i < p->n_env; i++)
                if (!p->env[i] || !strchr(p->env[i], '=') || p->env[i][0] == '=')
                        return -EINVAL;
        if (p->command_line && (r = msg_json_add_string(o, "CommandLine", p->command_line)) < 0)
                return r;
        if (p->n_args > 0) {
                struct json_object *args = json_object_new_array();

                if ((r = msg_json_add(o, "CommandArgs", args)) < 0)
                        return r;
                for (size_t i = 0; i < p->n_args; i++) {
                        if (!p->args[i])
                                return -EINVAL;
                        if (json_object_array_add(args, json_object_new_string(p->args[i])) < 0)
                                return -ENOMEM;
                }
        }
        if (p->working_dir && (r = msg_json_add_string(o, "WorkingDirectory", p->working_dir)) < 0)
                return r;
        if (p->n_env > 0 && (r = msg_json_add(o, "Environment", params_env_new(p))) < 0)
                return r;
        /* Go's omitempty: false booleans are left out. */
        if ((p->emulate_console && (r = msg_json_add(o, "EmulateConsole", json_object_new_boolean(1))) < 0) ||
            (p->create_stdin && (r = msg_json_add(o, "CreateStdInPipe", json_object_new_boolean(1))) < 0) ||
            (p->create_stdout && (r = msg_json_add(o, "CreateStdOutPipe", json_object_new_boolean(1))) < 0) ||
            (p->create_stderr && (r = msg_json_add(o, "CreateStdErrPipe", json_object_new_boolean(1))) < 0))
                return r;
        if (p->console_height || p->console_width) {
                struct json_object *size = json_object_new_array();

                if ((r = msg_json_add(o, "ConsoleSize", size)) < 0)
                        return r;
                if (json_object_array_add(size, json_object_new_int(p->console_height)) < 0 ||
                    json_object_array_add(size, json_object_new_int(p->console_width)) < 0)
                        return -ENOMEM;
        }
        return msg_json_finish(o, ret_json, NULL);
}

static int exec_settings_add(struct json_object *o, const struct bridge_request *r)
{
        struct json_object *settings = json_object_new_object(), *relay;
        _cleanup_free_ char *params = NULL;
        int k;

        if ((k = msg_json_add(o, "Settings", settings)) < 0)
                return k;
        if (r->exec.has_params) {
                k = params_encode(&r->exec.params, &params);
                if (k < 0)
                        return k;
        }
        /* Double-encoded: the parameters travel as a JSON string, "null" when there are none (W8). */
        if ((k = msg_json_add_string(settings, "ProcessParameters", params ? params : "null")) < 0)
                return k;
        relay = json_object_new_object();
        if ((k = msg_json_add(settings, "VsockStdioRelaySettings", relay)) < 0)
                return k;
        if ((r->exec.stdin_port && (k = msg_json_add(relay, "StdIn", json_object_new_int64(r->exec.stdin_port))) < 0) ||
            (r->exec.stdout_port &&
             (k = msg_json_add(relay, "StdOut", json_object_new_int64(r->exec.stdout_port))) < 0) ||
            (r->exec.stderr_port &&
             (k = msg_json_add(relay, "StdErr", json_object_new_int64(r->exec.stderr_port))) < 0))
                return k;
        return 0;
}

int bridge_request_encode(const struct bridge_request *r, char **ret_json, size_t *ret_len)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        int k;

        if (!o)
                return -ENOMEM;
        if (bridge_type_class(r->type) != BRIDGE_CLASS_REQUEST)
                return -EINVAL;
        if ((k = msg_json_add_string(o, "ContainerId", r->container_id)) < 0 ||
            (k = msg_json_add_string(o, "ActivityId", r->activity_id ? r->activity_id : BRIDGE_NULL_GUID)) < 0)
                return k;

        switch (r->type) {
        case BRIDGE_RPC_NEGOTIATE_PROTOCOL:
                if ((k = msg_json_add(o, "MinimumVersion", json_object_new_int64(r->negotiate.min_version))) < 0 ||
                    (k = msg_json_add(o, "MaximumVersion", json_object_new_int64(r->negotiate.max_version))) < 0)
                        return k;
                if (r->negotiate.stdio_resume &&
                    (k = msg_json_add(o, BRIDGE_STDIO_RESUME_FIELD, json_object_new_boolean(1))) < 0)
                        return k;
                if (r->negotiate.stdio_ack &&
                    (k = msg_json_add(o, BRIDGE_STDIO_ACK_FIELD, json_object_new_boolean(1))) < 0)
                        return k;
                if (r->negotiate.stdin_eof &&
                    (k = msg_json_add(o, BRIDGE_STDIN_EOF_FIELD, json_object_new_boolean(1))) < 0)
                        return k;
                break;
        case BRIDGE_RPC_CREATE:
                if ((k = msg_json_add_string(o, "ContainerConfig", r->create.config)) < 0)
                        return k;
                break;
        case BRIDGE_RPC_EXECUTE_PROCESS:
                if ((k = exec_settings_add(o, r)) < 0)
                        return k;
                break;
        case BRIDGE_RPC_WAIT_FOR_PROCESS:
                if ((k = msg_json_add(o, "ProcessId", json_object_new_int64(r->wait.pid))) < 0 ||
                    (k = msg_json_add(o, "TimeoutInMs", json_object_new_int64(r->wait.timeout_ms))) < 0)
                        return k;
                break;
        case BRIDGE_RPC_SIGNAL_PROCESS:
                if ((k = msg_json_add(o, "ProcessId", json_object_new_int64(r->signal.pid))) < 0)
                        return k;
                if (r->signal.has_options) {
                        struct json_object *opts = json_object_new_object();

                        if (r->signal.signal < 0 || r->signal.signal > BRIDGE_MAX_SIGNAL)
                                return -EINVAL;
                        if ((k = msg_json_add(o, "Options", opts)) < 0 ||
                            (k = msg_json_add(opts, "Signal", json_object_new_int(r->signal.signal))) < 0)
                                return k;
                }
                break;
        case BRIDGE_RPC_RESIZE_CONSOLE:
                if ((k = msg_json_add(o, "ProcessId", json_object_new_int64(r->resize.pid))) < 0 ||
                    (k = msg_json_add(o, "Height", json_object_new_int(r->resize.height))) < 0 ||
                    (k = msg_json_add(o, "Width", json_object_new_int(r->resize.width))) < 0)
                        return k;
                break;
        default:
                /* Shutdown and the rest carry only the RequestBase. */
                break;
        }
        return msg_json_finish(o, ret_json, ret_len);
}

int bridge_request_frame(const struct bridge_request *r, uint64_t id, uint8_t **ret_buf, size_t *ret_len)
{
        _cleanup_free_ char *json = NULL;
        size_t len;
        int k;

        k = bridge_request_encode(r, &json, &len);
        if (k < 0)
                return k;
        return bridge_frame_encode(r->type, id, json, len, true, ret_buf, ret_len);
}

/* --- decoding (guest side) --- */

static void strv_free(const char **v)
{
        if (!v)
                return;
        for (size_t i = 0; v[i]; i++)
                free((char *)v[i]);
        free(v);
}

void bridge_request_done(struct bridge_request *r)
{
        if (!r)
                return;
        free((char *)r->container_id);
        free((char *)r->activity_id);
        free((char *)r->create.config);
        free((char *)r->exec.params.command_line);
        free((char *)r->exec.params.working_dir);
        strv_free(r->exec.params.args);
        strv_free(r->exec.params.env);
        *r = (struct bridge_request){};
}

static int params_args_decode(struct json_object *o, struct bridge_process_params *p, const char **reason)
{
        struct json_object *a = msg_json_field(o, "CommandArgs", NULL);
        size_t n;

        if (!a)
                return 0;
        if (!json_object_is_type(a, json_type_array)) {
                *reason = "CommandArgs is not an array";
                return -EBADMSG;
        }
        n = json_object_array_length(a);
        if (n > BRIDGE_MAX_ARGS) {
                *reason = "too many CommandArgs";
                return -EBADMSG;
        }
        /* NULL-terminated so it can go straight to posix_spawn. */
        p->args = calloc(n + 1, sizeof(char *));
        if (!p->args)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char *s = NULL;
                int r = msg_json_string_dup(json_object_array_get_idx(a, i), BRIDGE_MAX_STRING_LEN, &s, reason);

                if (r < 0)
                        return r;
                p->args[i] = s;
                p->n_args = i + 1;
        }
        return 0;
}

static int params_env_decode(struct json_object *o, struct bridge_process_params *p, const char **reason)
{
        struct json_object *e = msg_json_field(o, "Environment", NULL);
        size_t n, i = 0;

        if (!e)
                return 0;
        if (!json_object_is_type(e, json_type_object)) {
                *reason = "Environment is not an object";
                return -EBADMSG;
        }
        n = (size_t)json_object_object_length(e);
        if (n > BRIDGE_MAX_ENV) {
                *reason = "too many Environment entries";
                return -EBADMSG;
        }
        p->env = calloc(n + 1, sizeof(char *));
        if (!p->env)
                return -ENOMEM;
        json_object_object_foreach(e, name, val)
        {
                _cleanup_free_ char *value = NULL;
                char *entry;
                int r;

                if (name[0] == '\0' || strchr(name, '=')) {
                        *reason = "Environment name is empty or holds '='";
                        return -EBADMSG;
                }
                if (strlen(name) > BRIDGE_MAX_STRING_LEN) {
                        *reason = "Environment name too long";
                        return -EBADMSG;
                }
                r = msg_json_string_dup(val, BRIDGE_MAX_STRING_LEN, &value, reason);
                if (r < 0)
                        return r;
                if (asprintf(&entry, "%s=%s", name, value) < 0)
                        return -ENOMEM;
                p->env[i++] = entry;
                p->n_env = i;
        }
        return 0;
}

static int params_console_decode(struct json_object *o, struct bridge_process_params *p, const char **reason)
{
        struct json_object *c = msg_json_field(o, "ConsoleSize", NULL);
        uint16_t hw[2];

        if (!c)
                return 0;
        if (!json_object_is_type(c, json_type_array) || json_object_array_length(c) != 2) {
                *reason = "ConsoleSize is not a pair";
                return -EBADMSG;
        }
        for (size_t i = 0; i < 2; i++) {
                struct json_object *v = json_object_array_get_idx(c, i);
                int64_t n;

                if (!json_object_is_type(v, json_type_int) || (n = json_object_get_int64(v)) < 0 || n > UINT16_MAX) {
                        *reason = "ConsoleSize value out of range";
                        return -EBADMSG;
                }
                hw[i] = (uint16_t)n;
        }
        p->console_height = hw[0];
        p->console_width = hw[1];
        return 0;
}

static int params_decode(const char *text, struct bridge_request *req, const char **reason)
{
        _cleanup_json_ struct json_object *o = NULL;
        struct bridge_process_params *p = &req->exec.params;
        char *s = NULL;
        int r;

        r = msg_json_parse(text, strlen(text), &o, reason);
        if (r < 0)
                return r;
        if (!o)
                return 0; /* "null": no parameters */
        if (!json_object_is_type(o, json_type_object)) {
                *reason = "ProcessParameters is not an object";
                return -EBADMSG;
        }
        req->exec.has_params = true;
        if ((r = msg_json_get_string(o, "CommandLine", BRIDGE_MAX_STRING_LEN, &s, reason)) < 0)
                return r;
        p->command_line = TAKE_PTR(s);
        if ((r = msg_json_get_string(o, "WorkingDirectory", BRIDGE_MAX_STRING_LEN, &s, reason)) < 0)
                return r;
        p->working_dir = TAKE_PTR(s);
        if ((r = params_args_decode(o, p, reason)) < 0 || (r = params_env_decode(o, p, reason)) < 0 ||
            (r = params_console_decode(o, p, reason)) < 0)
                return r;
        if ((r = msg_json_get_bool(o, "EmulateConsole", &p->emulate_console, reason)) < 0 ||
            (r = msg_json_get_bool(o, "CreateStdInPipe", &p->create_stdin, reason)) < 0 ||
            (r = msg_json_get_bool(o, "CreateStdOutPipe", &p->create_stdout, reason)) < 0 ||
            (r = msg_json_get_bool(o, "CreateStdErrPipe", &p->create_stderr, reason)) < 0)
                return r;
        return 0;
}

static int exec_decode(struct json_object *o, struct bridge_request *req, const char **reason)
{
        struct json_object *settings = msg_json_field(o, "Settings", NULL), *relay;
        _cleanup_free_ char *params = NULL;
        int r;

        if (!settings || !json_object_is_type(settings, json_type_object)) {
                *reason = "ExecuteProcess without a Settings object";
                return -EBADMSG;
        }
        r = msg_json_get_string(settings, "ProcessParameters", BRIDGE_MAX_STRING_LEN, &params, reason);
        if (r < 0)
                return r;
        if (r == 0) {
                *reason = "ExecuteProcess without ProcessParameters";
                return -EBADMSG;
        }
        r = params_decode(params, req, reason);
        if (r < 0)
                return r;
        relay = msg_json_field(settings, "VsockStdioRelaySettings", NULL);
        if (!relay)
                return 0;
        if (!json_object_is_type(relay, json_type_object)) {
                *reason = "VsockStdioRelaySettings is not an object";
                return -EBADMSG;
        }
        if ((r = msg_json_get_u32(relay, "StdIn", &req->exec.stdin_port, reason)) < 0 ||
            (r = msg_json_get_u32(relay, "StdOut", &req->exec.stdout_port, reason)) < 0 ||
            (r = msg_json_get_u32(relay, "StdErr", &req->exec.stderr_port, reason)) < 0)
                return r;
        return 0;
}

static int signal_decode(struct json_object *o, struct bridge_request *req, const char **reason)
{
        struct json_object *opts = msg_json_field(o, "Options", NULL);
        int r;

        if ((r = msg_json_get_u32(o, "ProcessId", &req->signal.pid, reason)) < 0)
                return r;
        if (!opts)
                return 0;
        if (!json_object_is_type(opts, json_type_object)) {
                *reason = "Options is not an object";
                return -EBADMSG;
        }
        req->signal.has_options = true;
        if ((r = msg_json_get_i32(opts, "Signal", &req->signal.signal, reason)) < 0)
                return r;
        if (req->signal.signal < 0 || req->signal.signal > BRIDGE_MAX_SIGNAL) {
                *reason = "Signal out of range";
                return -EBADMSG;
        }
        return 0;
}

static int request_body_decode(struct json_object *o, struct bridge_request *req, const char **reason)
{
        char *s = NULL;
        int r;

        switch (req->type) {
        case BRIDGE_RPC_NEGOTIATE_PROTOCOL:
                if ((r = msg_json_get_u32(o, "MinimumVersion", &req->negotiate.min_version, reason)) < 0 ||
                    (r = msg_json_get_u32(o, "MaximumVersion", &req->negotiate.max_version, reason)) < 0 ||
                    (r = msg_json_get_bool(o, BRIDGE_STDIO_RESUME_FIELD, &req->negotiate.stdio_resume, reason)) < 0 ||
                    (r = msg_json_get_bool(o, BRIDGE_STDIO_ACK_FIELD, &req->negotiate.stdio_ack, reason)) < 0 ||
                    (r = msg_json_get_bool(o, BRIDGE_STDIN_EOF_FIELD, &req->negotiate.stdin_eof, reason)) < 0)
                        return r;
                return 0;
        case BRIDGE_RPC_CREATE:
                if ((r = msg_json_get_string(o, "ContainerConfig", BRIDGE_MAX_STRING_LEN, &s, reason)) < 0)
                        return r;
                /* Absent reads as "", as Go leaves a missing string field empty. */
                req->create.config = s ? s : strdup("");
                return req->create.config ? 0 : -ENOMEM;
        case BRIDGE_RPC_EXECUTE_PROCESS: return exec_decode(o, req, reason);
        case BRIDGE_RPC_WAIT_FOR_PROCESS:
                req->wait.timeout_ms = 0;
                if ((r = msg_json_get_u32(o, "ProcessId", &req->wait.pid, reason)) < 0 ||
                    (r = msg_json_get_u32(o, "TimeoutInMs", &req->wait.timeout_ms, reason)) < 0)
                        return r;
                return 0;
        case BRIDGE_RPC_SIGNAL_PROCESS: return signal_decode(o, req, reason);
        case BRIDGE_RPC_RESIZE_CONSOLE:
                if ((r = msg_json_get_u32(o, "ProcessId", &req->resize.pid, reason)) < 0 ||
                    (r = msg_json_get_u16(o, "Height", &req->resize.height, reason)) < 0 ||
                    (r = msg_json_get_u16(o, "Width", &req->resize.width, reason)) < 0)
                        return r;
                return 0;
        default: return 0;
        }
}

int bridge_request_decode(uint32_t type, const char *payload, size_t len, struct bridge_request *ret,
                          const char **ret_reason)
{
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_(bridge_request_done) struct bridge_request req = { .type = type };
        const char *reason = NULL;
        char *s = NULL;
        int r;

        if (bridge_type_class(type) != BRIDGE_CLASS_REQUEST) {
                reason = "not a request type";
                r = -EBADMSG;
                goto fail;
        }
        if ((r = msg_json_parse_object(payload, len, &o, &reason)) < 0)
                goto fail;
        if ((r = msg_json_get_string(o, "ContainerId", BRIDGE_MAX_ID_LEN, &s, &reason)) < 0)
                goto fail;
        req.container_id = s ? s : strdup("");
        if (!req.container_id)
                return -ENOMEM;
        s = NULL;
        if ((r = msg_json_get_guid(o, "ActivityId", &s, &reason)) < 0)
                goto fail;
        req.activity_id = s;
        if ((r = request_body_decode(o, &req, &reason)) < 0)
                goto fail;
        *ret = req;
        req = (struct bridge_request){};
        return 0;
fail:
        if (r == -EBADMSG && ret_reason)
                *ret_reason = reason;
        return r;
}
