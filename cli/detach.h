/* cli/detach.h: detach keys (podman's --detach-keys syntax) and the filter that finds them in a terminal's input. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_DETACH_KEYS_DEFAULT "ctrl-p,ctrl-q"
#define CLI_DETACH_KEYS_MAX 16u

struct cli_detach {
        uint8_t keys[CLI_DETACH_KEYS_MAX];
        size_t n;       /* 0: detaching is off */
        size_t matched; /* how many of keys the input ended with: held back, not sent */
};

/* "ctrl-p,ctrl-q": a comma-separated list of a single character or ctrl-X (X one of a-z, @, [,
 * \, ], ^, _), as podman takes it; "" turns detaching off. -EINVAL for anything else. */
int cli_detach_parse(const char *spec, struct cli_detach *ret);

/* Copies in to out (room for len + CLI_DETACH_KEYS_MAX), holding back a partial sequence until
 * the next byte shows whether it completes. Returns true once the whole sequence was typed (out
 * then holds what came before it); *ret_out_len is what to send on. */
bool cli_detach_filter(struct cli_detach *d, const uint8_t *in, size_t len, uint8_t *out, size_t *ret_out_len);
