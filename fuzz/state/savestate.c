/* fuzz/state/savestate.c: feeds arbitrary bytes to the saved-state reader; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/savestate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        savestate_msg *s = NULL;
        char err[256];
        uint8_t *copy;

        if (savestate_decode(data, size, &s, err, sizeof(err)) == 0) {
                uint8_t *buf = NULL;
                size_t len = 0;

                /* What the reader accepts, the writer must write back. */
                if (savestate_encode(s, &buf, &len) != 0)
                        abort();
                free(buf);
                savestate_msg_free(s);
        }
        /* Reach the protobuf decoder and checks behind a valid header and checksum too. */
        if (size > 0 && size < SAVESTATE_MAX_BLOB - SAVESTATE_HEADER_SIZE) {
                copy = malloc(SAVESTATE_HEADER_SIZE + size);
                if (!copy)
                        return 0;
                memcpy(copy, "vsockmux", 8);
                uint32_t v = SAVESTATE_SCHEMA_VERSION, n = (uint32_t)size, c = savestate_crc32c(data, size), z = 0;
                for (int i = 0; i < 4; i++) {
                        copy[8 + i] = (uint8_t)(v >> (8 * i));
                        copy[12 + i] = (uint8_t)(n >> (8 * i));
                        copy[16 + i] = (uint8_t)(c >> (8 * i));
                        copy[20 + i] = (uint8_t)(z >> (8 * i));
                }
                memcpy(copy + SAVESTATE_HEADER_SIZE, data, size);
                if (savestate_decode(copy, SAVESTATE_HEADER_SIZE + size, &s, err, sizeof(err)) == 0)
                        savestate_msg_free(s);
                free(copy);
        }
        return 0;
}
