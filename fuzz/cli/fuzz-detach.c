/* fuzz/cli/fuzz-detach.c: a --detach-keys spec, then terminal input in pieces through the detach filter; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/detach.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input: one byte n, n bytes of spec (without NUL), then the typed bytes, fed 1 + (byte % 7) at a time. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char spec[64];
        struct cli_detach d;
        size_t n, off, total_in = 0, total_out = 0;

        if (size < 1)
                return 0;
        n = data[0] % sizeof(spec);
        if (n > size - 1)
                n = size - 1;
        memcpy(spec, data + 1, n);
        spec[n] = '\0';
        if (memchr(spec, '\0', n))
                return 0;
        if (cli_detach_parse(spec, &d) < 0)
                return 0;
        if (d.n > CLI_DETACH_KEYS_MAX)
                abort();
        for (off = 1 + n; off < size;) {
                size_t chunk = 1 + data[off] % 7, out_len = 0;
                uint8_t out[8 + CLI_DETACH_KEYS_MAX];

                if (chunk > size - off)
                        chunk = size - off;
                if (cli_detach_filter(&d, data + off, chunk, out, &out_len)) {
                        /* Detached: what came before the sequence went out, nothing after it. */
                        if (out_len > chunk + CLI_DETACH_KEYS_MAX)
                                abort();
                        return 0;
                }
                total_in += chunk;
                total_out += out_len;
                /* Nothing is invented, and no more is held back than a partial sequence. */
                if (out_len > chunk + CLI_DETACH_KEYS_MAX || total_out > total_in || total_in - total_out != d.matched)
                        abort();
                off += chunk;
        }
        return 0;
}
