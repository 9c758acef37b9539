/* bridge/msg_response.c: encoding and decoding of bridge response bodies. */
#include <ctype.h>
#include <string.h>

#include "bridge/msg-json.h"
#include "bridge/msg.h"

/* --- encoding (guest side) --- */

static struct json_object *capabilities_new(const struct bridge_response *r)
{
        _cleanup_json_ struct json_object *caps = json_object_new_object();
        struct json_object *versions, *version, *guest;

        if (!caps)
                return NULL;
        versions = json_object_new_array();
        if (msg_json_add(caps, "SupportedSchemaVersions", versions) < 0)
                return NULL;
        version = json_object_new_object();
        if (!version || json_object_array_add(versions, version) < 0) {
                json_object_put(version);
                return NULL;
        }
        if (msg_json_add(version, "Major", json_object_new_int(2)) < 0 ||
            msg_json_add(version, "Minor", json_object_new_int(1)) < 0 ||
            msg_json_add_string(caps, "RuntimeOsType",
                                r->negotiate.runtime_os_type ? r->negotiate.runtime_os_type : "Linux") < 0)
                return NULL;
        guest = json_object_new_object();
        if (msg_json_add(caps, "GuestDefinedCapabilities", guest) < 0 ||
            msg_json_add(guest, "NamespaceAddRequestSupported", json_object_new_boolean(1)) < 0 ||
            msg_json_add(guest, "SignalProcessSupported", json_object_new_boolean(1)) < 0 ||
            msg_json_add(guest, "DumpStacksSupported", json_object_new_boolean(1)) < 0 ||
            msg_json_add(guest, "DeleteContainerStateSupported", json_object_new_boolean(1)) < 0)
                return NULL;
        if (r->negotiate.stdio_resume && msg_json_add(guest, BRIDGE_STDIO_RESUME_FIELD, json_object_new_boolean(1)) < 0)
                return NULL;
        if (r->negotiate.stdio_ack && msg_json_add(guest, BRIDGE_STDIO_ACK_FIELD, json_object_new_boolean(1)) < 0)
                return NULL;
        if (r->negotiate.stdin_eof && msg_json_add(guest, BRIDGE_STDIN_EOF_FIELD, json_object_new_boolean(1)) < 0)
                return NULL;
        return TAKE_PTR(caps);
}

int bridge_response_encode(uint32_t req_type, const struct bridge_response *r, char **ret_json, size_t *ret_len)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        int k;

        if (!o)
                return -ENOMEM;
        if (r->activity_id && !bridge_guid_is_valid(r->activity_id))
                return -EINVAL;
        if ((k = msg_json_add(o, "Result", json_object_new_int(r->result))) < 0)
                return k;
        if (r->error_message && r->error_message[0] &&
            (k = msg_json_add_string(o, "ErrorMessage", r->error_message)) < 0)
                return k;
        if (r->activity_id && (k = msg_json_add_string(o, "ActivityId", r->activity_id)) < 0)
                return k;
        /* A failed call answers with the ResponseBase only. */
        if (r->result == BRIDGE_HR_OK) {
                switch (req_type) {
                case BRIDGE_RPC_NEGOTIATE_PROTOCOL:
                        if ((k = msg_json_add(o, "Version", json_object_new_int64(r->negotiate.version))) < 0 ||
                            (k = msg_json_add(o, "Capabilities", capabilities_new(r))) < 0)
                                return k;
                        break;
                case BRIDGE_RPC_EXECUTE_PROCESS:
                        if ((k = msg_json_add(o, "ProcessId", json_object_new_int64(r->exec.pid))) < 0)
                                return k;
                        break;
                case BRIDGE_RPC_WAIT_FOR_PROCESS:
                        if ((k = msg_json_add(o, "ExitCode", json_object_new_int64(r->wait.exit_code))) < 0)
                                return k;
                        break;
                default: break;
                }
        }
        return msg_json_finish(o, ret_json, ret_len);
}

int bridge_response_frame(uint32_t req_type, uint64_t id, const struct bridge_response *r, uint8_t **ret_buf,
                          size_t *ret_len)
{
        _cleanup_free_ char *json = NULL;
        size_t len;
        int k;

        k = bridge_response_encode(req_type, r, &json, &len);
        if (k < 0)
                return k;
        return bridge_frame_encode(bridge_type_response_for(req_type), id, json, len, false, ret_buf, ret_len);
}

/* --- decoding (host side) --- */

void bridge_response_done(struct bridge_response *r)
{
        if (!r)
                return;
        free((char *)r->error_message);
        free((char *)r->activity_id);
        free((char *)r->negotiate.runtime_os_type);
        *r = (struct bridge_response){};
}

static int negotiate_decode(struct json_object *o, struct bridge_response *resp, const char **reason)
{
        struct json_object *caps, *guest;
        bool present = false;
        char *os = NULL;
        int r;

        r = msg_json_get_u32(o, "Version", &resp->negotiate.version, reason);
        if (r < 0)
                return r;
        if (resp->negotiate.version != BRIDGE_PROTOCOL_VERSION) {
                *reason = "negotiated protocol version is not 4";
                return -EPROTONOSUPPORT;
        }
        caps = msg_json_field(o, "Capabilities", NULL);
        if (!caps || !json_object_is_type(caps, json_type_object)) {
                *reason = "negotiate response without a Capabilities object";
                return -EBADMSG;
        }
        r = msg_json_get_string(caps, "RuntimeOsType", BRIDGE_MAX_NAME_LEN, &os, reason);
        if (r < 0)
                return r;
        if (!os || !os[0]) {
                free(os);
                os = strdup("windows");
                if (!os)
                        return -ENOMEM;
        }
        for (char *c = os; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        resp->negotiate.runtime_os_type = os;

        /* The host unmarshals this raw value later; absent fails there, null is fine (W7). */
        guest = msg_json_field(caps, "GuestDefinedCapabilities", &present);
        if (!present) {
                *reason = "Capabilities without GuestDefinedCapabilities";
                return -EBADMSG;
        }
        if (!guest)
                return 0;
        if (!json_object_is_type(guest, json_type_object)) {
                *reason = "GuestDefinedCapabilities is neither an object nor null";
                return -EBADMSG;
        }
        r = msg_json_get_bool(guest, BRIDGE_STDIO_RESUME_FIELD, &resp->negotiate.stdio_resume, reason);
        if (r >= 0)
                r = msg_json_get_bool(guest, BRIDGE_STDIO_ACK_FIELD, &resp->negotiate.stdio_ack, reason);
        if (r >= 0)
                r = msg_json_get_bool(guest, BRIDGE_STDIN_EOF_FIELD, &resp->negotiate.stdin_eof, reason);
        return r < 0 ? r : 0;
}

static int response_body_decode(uint32_t req_type, struct json_object *o, struct bridge_response *resp,
                                const char **reason)
{
        int r;

        switch (req_type) {
        case BRIDGE_RPC_NEGOTIATE_PROTOCOL: return negotiate_decode(o, resp, reason);
        case BRIDGE_RPC_EXECUTE_PROCESS:
                r = msg_json_get_u32(o, "ProcessId", &resp->exec.pid, reason);
                if (r == 0) {
                        *reason = "ExecuteProcess response without ProcessId";
                        return -EBADMSG;
                }
                return r < 0 ? r : 0;
        case BRIDGE_RPC_WAIT_FOR_PROCESS:
                r = msg_json_get_u32(o, "ExitCode", &resp->wait.exit_code, reason);
                if (r == 0) {
                        *reason = "WaitForProcess response without ExitCode";
                        return -EBADMSG;
                }
                return r < 0 ? r : 0;
        default: return 0;
        }
}

int bridge_response_decode(uint32_t req_type, const char *payload, size_t len, struct bridge_response *ret,
                           const char **ret_reason)
{
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_(bridge_response_done) struct bridge_response resp = {};
        const char *reason = NULL;
        char *s = NULL;
        int r;

        if ((r = msg_json_parse_object(payload, len, &o, &reason)) < 0)
                goto fail;
        if ((r = msg_json_get_i32(o, "Result", &resp.result, &reason)) < 0)
                goto fail;
        if ((r = msg_json_get_string(o, "ErrorMessage", BRIDGE_MAX_STRING_LEN, &s, &reason)) < 0)
                goto fail;
        resp.error_message = TAKE_PTR(s);
        if ((r = msg_json_get_guid(o, "ActivityId", &s, &reason)) < 0)
                goto fail;
        resp.activity_id = TAKE_PTR(s);
        /* A failure carries only the base; the caller turns Result into its error. */
        if (resp.result == BRIDGE_HR_OK && (r = response_body_decode(req_type, o, &resp, &reason)) < 0)
                goto fail;
        *ret = resp;
        resp = (struct bridge_response){};
        return 0;
fail:
        if ((r == -EBADMSG || r == -EPROTONOSUPPORT) && ret_reason)
                *ret_reason = reason;
        return r;
}
