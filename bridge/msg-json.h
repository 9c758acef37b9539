/* bridge/msg-json.h: json-c helpers shared by the bridge/msg*.c files only; owns nothing. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"

static inline void msg_json_putp(struct json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(msg_json_putp)

/* Parses exactly one JSON value followed by nothing but whitespace. */
int msg_json_parse(const char *text, size_t len, struct json_object **ret, const char **ret_reason);
/* Same, and the value must be an object. */
int msg_json_parse_object(const char *text, size_t len, struct json_object **ret, const char **ret_reason);

/*
 * Field lookup as Go's encoding/json does it: the exact key, else a case-insensitive match.
 * Returns the value, NULL when absent or null. ret_present (may be NULL) tells null from absent.
 */
struct json_object *msg_json_field(struct json_object *o, const char *key, bool *ret_present);

/* Getters return 1 and set *ret when the field is there, 0 when absent or null (ret untouched),
 * -EBADMSG with a reason when it has the wrong type or is out of range, -ENOMEM. */
int msg_json_get_string(struct json_object *o, const char *key, size_t max_len, char **ret, const char **ret_reason);
int msg_json_get_guid(struct json_object *o, const char *key, char **ret, const char **ret_reason);
int msg_json_get_u32(struct json_object *o, const char *key, uint32_t *ret, const char **ret_reason);
int msg_json_get_u16(struct json_object *o, const char *key, uint16_t *ret, const char **ret_reason);
int msg_json_get_i32(struct json_object *o, const char *key, int32_t *ret, const char **ret_reason);
int msg_json_get_bool(struct json_object *o, const char *key, bool *ret, const char **ret_reason);
/* A string of at most max_len bytes with no embedded NUL, copied. */
int msg_json_string_dup(struct json_object *v, size_t max_len, char **ret, const char **ret_reason);

/* Adds `val` under `key`, taking it; a NULL val (failed allocation) gives -ENOMEM. */
int msg_json_add(struct json_object *o, const char *key, struct json_object *val);
int msg_json_add_string(struct json_object *o, const char *key, const char *s);
/* Serializes compactly, checks it fits a frame (with room for the host's newline) and copies it out. */
int msg_json_finish(struct json_object *o, char **ret_json, size_t *ret_len);
/* Returns 0 when text holds one valid JSON value. */
int msg_json_validate(const char *text, size_t len);
