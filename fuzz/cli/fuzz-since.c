/* fuzz/cli/fuzz-since.c: an `events --since` argument through cli_since_parse; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/since.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Input: 8 bytes of "now" (ns), then the argument. Accepted: exactly one of seq and time is
 * meaningful; a relative time is never after now. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint64_t now = 0, seq = 7, ns = 7;
        char s[128];

        if (size < 8 || size - 8 >= sizeof(s) || memchr(data + 8, '\0', size - 8))
                return 0;
        memcpy(&now, data, 8);
        memcpy(s, data + 8, size - 8);
        s[size - 8] = '\0';
        if (cli_since_parse(s, now, &seq, &ns) < 0) {
                if (seq != 7 || ns != 7)
                        abort(); /* out-params are set only on success */
                return 0;
        }
        if (seq && ns)
                abort();
        if (s[0] != '@' && strchr("smhd", s[strlen(s) - 1]) && s[strlen(s) - 1] != 0 && ns > now && now > 0 && ns != 1)
                abort();
        return 0;
}
