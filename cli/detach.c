/* cli/detach.c: parsing detach keys (podman's --detach-keys syntax) and finding them in a terminal's input. */
#include "cli/detach.h"

#include <errno.h>
#include <string.h>

static int detach_key(const char *s, size_t len, uint8_t *ret)
{
        if (len == 1) {
                *ret = (uint8_t)s[0];
                return 0;
        }
        if (len == 6 && strncmp(s, "ctrl-", 5) == 0) {
                char c = s[5];

                if (c >= 'a' && c <= 'z') {
                        *ret = (uint8_t)(c - 'a' + 1);
                        return 0;
                }
                if (c == '@' || c == '[' || c == '\\' || c == ']' || c == '^' || c == '_') {
                        *ret = (uint8_t)(c - '@');
                        return 0;
                }
        }
        return -EINVAL;
}

int cli_detach_parse(const char *spec, struct cli_detach *ret)
{
        struct cli_detach d = {};
        const char *p = spec;

        while (*spec) {
                const char *comma = strchr(p, ',');
                size_t len = comma ? (size_t)(comma - p) : strlen(p);

                if (d.n == CLI_DETACH_KEYS_MAX || detach_key(p, len, &d.keys[d.n]) < 0)
                        return -EINVAL;
                d.n++;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret = d;
        return 0;
}

bool cli_detach_filter(struct cli_detach *d, const uint8_t *in, size_t len, uint8_t *out, size_t *ret_out_len)
{
        size_t o = 0;

        for (size_t i = 0; i < len; i++) {
                if (d->n > 0 && in[i] == d->keys[d->matched]) {
                        if (++d->matched == d->n) {
                                d->matched = 0;
                                *ret_out_len = o;
                                return true;
                        }
                        continue;
                }
                /* Not the sequence after all: what was held goes out, and this byte may start it anew. */
                memcpy(out + o, d->keys, d->matched);
                o += d->matched;
                d->matched = 0;
                if (d->n > 0 && in[i] == d->keys[0])
                        d->matched = 1;
                else
                        out[o++] = in[i];
        }
        *ret_out_len = o;
        return false;
}
