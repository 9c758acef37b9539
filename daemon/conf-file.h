/* daemon/conf-file.h: the parser of a "key = number" file (vsockmuxd --limits-file); owns nothing. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CONF_FILE_MAX_BYTES 65536u
#define CONF_FILE_MAX_KEYS 64u
#define CONF_FILE_WHY_MAX 256u

struct conf_key {
        const char *name;
        uint64_t min, max;
};

/* text: lines of "key = decimal", blank lines and "# comments"; spaces around '=' are optional.
 * Every key must be one of keys[], at most once, with a value in its range. On success
 * ret_values[i] is key i's value for each bit i set in *ret_given; the others are left alone.
 * -EINVAL (why says which line and what) or -E2BIG (longer than CONF_FILE_MAX_BYTES). */
int conf_parse(const char *text, size_t len, const struct conf_key *keys, size_t n_keys, uint64_t *ret_values,
               uint64_t *ret_given, char *why, size_t why_len);

/* The same, from a regular file path (never a fifo or a device, which could block the loop). */
int conf_read(const char *path, const struct conf_key *keys, size_t n_keys, uint64_t *ret_values, uint64_t *ret_given,
              char *why, size_t why_len);
