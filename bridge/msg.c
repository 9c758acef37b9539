/* bridge/msg.c: the JSON helpers every bridge message uses, and container notifications. */
#include "bridge/msg.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "bridge/msg-json.h"

static bool msg_is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int msg_json_parse(const char *text, size_t len, struct json_object **ret, const char **ret_reason)
{
        struct json_tokener *tok;
        struct json_object *o;
        enum json_tokener_error err;
        size_t end;

        if (len > BRIDGE_MAX_PAYLOAD) {
                *ret_reason = "JSON text larger than a frame";
                return -EBADMSG;
        }
        /* json-c stops at a NUL byte; raw NUL is never valid JSON anyway. */
        if (memchr(text, 0, len)) {
                *ret_reason = "NUL byte in JSON text";
                return -EBADMSG;
        }
        tok = json_tokener_new_ex(BRIDGE_MAX_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
        o = json_tokener_parse_ex(tok, text, (int)len);
        err = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (err == json_tokener_continue) {
                /* A number at the very end is complete only once json-c sees a delimiter; trailing
                 * whitespace is allowed anyway, so one more blank finishes it or proves truncation. */
                o = json_tokener_parse_ex(tok, " ", 1);
                err = json_tokener_get_error(tok);
                end = len;
        }
        json_tokener_free(tok);
        if (err == json_tokener_continue) {
                json_object_put(o);
                *ret_reason = "truncated JSON";
                return -EBADMSG;
        }
        if (err != json_tokener_success) {
                json_object_put(o);
                *ret_reason = "malformed JSON";
                return -EBADMSG;
        }
        for (size_t i = end; i < len; i++)
                if (!msg_is_space(text[i])) {
                        json_object_put(o);
                        *ret_reason = "trailing bytes after JSON";
                        return -EBADMSG;
                }
        *ret = o;
        return 0;
}

int msg_json_parse_object(const char *text, size_t len, struct json_object **ret, const char **ret_reason)
{
        struct json_object *o = NULL;
        int r;

        r = msg_json_parse(text, len, &o, ret_reason);
        if (r < 0)
                return r;
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                *ret_reason = "JSON body is not an object";
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

int msg_json_validate(const char *text, size_t len)
{
        struct json_object *o = NULL;
        const char *reason;
        int r;

        r = msg_json_parse(text, len, &o, &reason);
        if (r < 0)
                return r;
        json_object_put(o);
        return 0;
}

struct json_object *msg_json_field(struct json_object *o, const char *key, bool *ret_present)
{
        struct json_object *v = NULL;
        bool present = json_object_object_get_ex(o, key, &v);

        if (!present) {
                json_object_object_foreach(o, k, val)
                {
                        if (strcasecmp(k, key) == 0) {
                                v = val;
                                present = true;
                                break;
                        }
                }
        }
        if (ret_present)
                *ret_present = present;
        return present ? v : NULL;
}

int msg_json_string_dup(struct json_object *v, size_t max_len, char **ret, const char **ret_reason)
{
        const char *s;
        size_t n;
        char *copy;

        if (!json_object_is_type(v, json_type_string)) {
                *ret_reason = "expected a JSON string";
                return -EBADMSG;
        }
        s = json_object_get_string(v);
        n = (size_t)json_object_get_string_len(v);
        if (n > max_len) {
                *ret_reason = "string too long";
                return -EBADMSG;
        }
        if (strlen(s) != n) {
                *ret_reason = "string holds a NUL character";
                return -EBADMSG;
        }
        copy = strndup(s, n);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int msg_json_get_string(struct json_object *o, const char *key, size_t max_len, char **ret, const char **ret_reason)
{
        struct json_object *v = msg_json_field(o, key, NULL);
        int r;

        if (!v)
                return 0;
        r = msg_json_string_dup(v, max_len, ret, ret_reason);
        return r < 0 ? r : 1;
}

int msg_json_get_guid(struct json_object *o, const char *key, char **ret, const char **ret_reason)
{
        char *s = NULL;
        int r;

        r = msg_json_get_string(o, key, BRIDGE_GUID_LEN, &s, ret_reason);
        if (r == -EBADMSG || (r > 0 && !bridge_guid_is_valid(s))) {
                free(s);
                *ret_reason = "ActivityId is not a GUID";
                return -EBADMSG;
        }
        if (r > 0)
                *ret = s;
        return r;
}

static int msg_json_get_int_range(struct json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret,
                                  const char **ret_reason)
{
        struct json_object *v = msg_json_field(o, key, NULL);
        int64_t n;

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_int)) {
                *ret_reason = "expected a JSON integer";
                return -EBADMSG;
        }
        /* json-c saturates values beyond int64, which then fail the range check like Go's overflow error. */
        n = json_object_get_int64(v);
        if (n < min || n > max) {
                *ret_reason = "integer out of range";
                return -EBADMSG;
        }
        *ret = n;
        return 1;
}

int msg_json_get_u32(struct json_object *o, const char *key, uint32_t *ret, const char **ret_reason)
{
        int64_t n;
        int r = msg_json_get_int_range(o, key, 0, UINT32_MAX, &n, ret_reason);

        if (r > 0)
                *ret = (uint32_t)n;
        return r;
}

int msg_json_get_u16(struct json_object *o, const char *key, uint16_t *ret, const char **ret_reason)
{
        int64_t n;
        int r = msg_json_get_int_range(o, key, 0, UINT16_MAX, &n, ret_reason);

        if (r > 0)
                *ret = (uint16_t)n;
        return r;
}

int msg_json_get_i32(struct json_object *o, const char *key, int32_t *ret, const char **ret_reason)
{
        int64_t n;
        int r = msg_json_get_int_range(o, key, INT32_MIN, INT32_MAX, &n, ret_reason);

        if (r > 0)
                *ret = (int32_t)n;
        return r;
}

int msg_json_get_bool(struct json_object *o, const char *key, bool *ret, const char **ret_reason)
{
        struct json_object *v = msg_json_field(o, key, NULL);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean)) {
                *ret_reason = "expected a JSON boolean";
                return -EBADMSG;
        }
        *ret = json_object_get_boolean(v);
        return 1;
}

int msg_json_add(struct json_object *o, const char *key, struct json_object *val)
{
        if (!val)
                return -ENOMEM;
        if (json_object_object_add(o, key, val) < 0) {
                json_object_put(val);
                return -ENOMEM;
        }
        return 0;
}

int msg_json_add_string(struct json_object *o, const char *key, const char *s)
{
        return msg_json_add(o, key, json_object_new_string(s ? s : ""));
}

int msg_json_finish(struct json_object *o, char **ret_json, size_t *ret_len)
{
        const char *s;
        size_t n;
        char *copy;

        s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        if (!s)
                return -ENOMEM;
        if (n > BRIDGE_MAX_PAYLOAD - 1)
                return -EMSGSIZE;
        copy = strndup(s, n);
        if (!copy)
                return -ENOMEM;
        *ret_json = copy;
        if (ret_len)
                *ret_len = n;
        return 0;
}

bool bridge_guid_is_valid(const char *s)
{
        if (!s || strlen(s) != BRIDGE_GUID_LEN)
                return false;
        for (size_t i = 0; i < BRIDGE_GUID_LEN; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;

                if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
                        return false;
        }
        return true;
}

const char *bridge_hresult_name(int32_t hr)
{
        switch (hr) {
        case BRIDGE_HR_OK: return "ok";
        case BRIDGE_HR_NOT_FOUND: return "not found";
        case BRIDGE_HR_TIMEOUT: return "timeout";
        case BRIDGE_HR_NOT_IMPL: return "not implemented";
        case BRIDGE_HR_UNSUPPORTED_VERSION: return "unsupported protocol version";
        case BRIDGE_HR_SYSTEM_NOT_FOUND: return "compute system not found";
        case BRIDGE_HR_INVALID_ARG: return "invalid argument";
        case BRIDGE_HR_FAIL: return "unspecified failure";
        default: return NULL;
        }
}

/* --- container notification --- */

int bridge_notification_encode(const struct bridge_notification *n, char **ret_json, size_t *ret_len)
{
        _cleanup_json_ struct json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        if (n->result_info && msg_json_validate(n->result_info, strlen(n->result_info)) < 0)
                return -EINVAL;
        if ((r = msg_json_add_string(o, "ContainerId", n->container_id)) < 0 ||
            (r = msg_json_add_string(o, "ActivityId", n->activity_id ? n->activity_id : BRIDGE_NULL_GUID)) < 0 ||
            (r = msg_json_add_string(o, "Type", n->type)) < 0 ||
            (r = msg_json_add_string(o, "Operation", n->operation ? n->operation : "None")) < 0 ||
            (r = msg_json_add(o, "Result", json_object_new_int(n->result))) < 0)
                return r;
        if (n->result_info && (r = msg_json_add_string(o, "ResultInfo", n->result_info)) < 0)
                return r;
        return msg_json_finish(o, ret_json, ret_len);
}

void bridge_notification_done(struct bridge_notification *n)
{
        if (!n)
                return;
        free((char *)n->container_id);
        free((char *)n->activity_id);
        free((char *)n->type);
        free((char *)n->operation);
        free((char *)n->result_info);
        *n = (struct bridge_notification){};
}

int bridge_notification_decode(const char *payload, size_t len, struct bridge_notification *ret,
                               const char **ret_reason)
{
        _cleanup_json_ struct json_object *o = NULL;
        _cleanup_(bridge_notification_done) struct bridge_notification n = {};
        char *cid = NULL, *aid = NULL, *type = NULL, *op = NULL, *info = NULL;
        const char *reason = NULL;
        int r;

        r = msg_json_parse_object(payload, len, &o, &reason);
        if (r < 0)
                goto fail;
        /* Each string lands in n at once so the cleanup frees it on any later failure. */
        if ((r = msg_json_get_string(o, "ContainerId", BRIDGE_MAX_ID_LEN, &cid, &reason)) < 0)
                goto fail;
        n.container_id = cid;
        if ((r = msg_json_get_guid(o, "ActivityId", &aid, &reason)) < 0)
                goto fail;
        n.activity_id = aid;
        if ((r = msg_json_get_string(o, "Type", BRIDGE_MAX_NAME_LEN, &type, &reason)) < 0)
                goto fail;
        n.type = type;
        if ((r = msg_json_get_string(o, "Operation", BRIDGE_MAX_NAME_LEN, &op, &reason)) < 0)
                goto fail;
        n.operation = op;
        if ((r = msg_json_get_i32(o, "Result", &n.result, &reason)) < 0)
                goto fail;
        if ((r = msg_json_get_string(o, "ResultInfo", BRIDGE_MAX_STRING_LEN, &info, &reason)) < 0)
                goto fail;
        n.result_info = info;
        if (info && msg_json_validate(info, strlen(info)) < 0) {
                reason = "ResultInfo is not a string holding valid JSON";
                r = -EBADMSG;
                goto fail;
        }
        if ((!n.container_id && !(n.container_id = strdup(""))) || (!n.type && !(n.type = strdup(""))) ||
            (!n.operation && !(n.operation = strdup(""))))
                return -ENOMEM;
        *ret = n;
        n = (struct bridge_notification){};
        return 0;
fail:
        if (r == -EBADMSG && ret_reason)
                *ret_reason = reason;
        return r;
}

int bridge_notification_frame(const struct bridge_notification *n, uint8_t **ret_buf, size_t *ret_len)
{
        _cleanup_free_ char *json = NULL;
        size_t len;
        int r;

        r = bridge_notification_encode(n, &json, &len);
        if (r < 0)
                return r;
        return bridge_frame_encode(BRIDGE_NOTIFY_CONTAINER, 0, json, len, false, ret_buf, ret_len);
}
