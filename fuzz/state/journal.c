/* fuzz/state/journal.c: feeds arbitrary bytes to a record's journal replay, over a fixed snapshot: as a whole journal, as records behind a valid header, and as one record's payload behind a valid frame; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/journal.h"
#include "ports/ports.h"
#include "util/unaligned.h"

#define FUZZ_GENERATION 7u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A VM with two running processes (pids 100 and 101), decoded anew for each replay. */
static savestate_msg *snapshot(void)
{
        static uint8_t *blob;
        static size_t len;
        savestate_msg *s = NULL;

        if (!blob) {
                Vsockmux__State__Process p[2], *pp[2] = { &p[0], &p[1] };
                Vsockmux__State__SavedState st = VSOCKMUX__STATE__SAVED_STATE__INIT;
                Vsockmux__State__Transport t = VSOCKMUX__STATE__TRANSPORT__INIT;
                Vsockmux__State__Vm vm = VSOCKMUX__STATE__VM__INIT;

                for (int i = 0; i < 2; i++) {
                        vsockmux__state__process__init(&p[i]);
                        p[i].pid = 100 + (uint32_t)i;
                        p[i].state = VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING;
                        p[i].wait_call_id = 1 + (uint64_t)i;
                }
                t.kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_VSOCK;
                t.cid = 3;
                vm.name = "fuzz";
                vm.transport = &t;
                vm.port_floor = PORTS_FIRST;
                vm.bridge_next_id = 1000;
                vm.processes = pp;
                vm.n_processes = 2;
                st.schema_version = SAVESTATE_SCHEMA_VERSION;
                st.journal_generation = FUZZ_GENERATION;
                st.vm = &vm;
                if (savestate_encode(&st, &blob, &len) != 0)
                        abort();
        }
        if (savestate_decode(blob, len, &s, NULL, 0) != 0)
                abort();
        return s;
}

static void replay(const uint8_t *buf, size_t len)
{
        savestate_msg *s = snapshot();
        struct journal_replay res;
        char err[256];

        if (journal_replay(s, buf, len, &res, err, sizeof(err)) == 0) {
                uint8_t *out = NULL;
                size_t out_len = 0;

                if (res.good_len > len || res.good_len < JOURNAL_HEADER_SIZE || (res.torn && res.good_len == len) ||
                    (!res.torn && res.good_len != len))
                        abort();
                /* The checks may refuse what the journal made; they must not crash on it. */
                if (savestate_encode(s, &out, &out_len) == 0)
                        free(out);
        }
        savestate_msg_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *buf;

        replay(data, size);
        if (size > JOURNAL_MAX_RECORD)
                return 0;
        buf = malloc(JOURNAL_HEADER_SIZE + JOURNAL_FRAME_SIZE + size + 1);
        if (!buf)
                return 0;
        /* Records behind a header of the snapshot's generation. */
        journal_header(FUZZ_GENERATION, buf);
        memcpy(buf + JOURNAL_HEADER_SIZE, data, size);
        replay(buf, JOURNAL_HEADER_SIZE + size);
        /* One record's payload behind a good frame: the decoder and the apply. */
        if (size > 0) {
                unaligned_write_le32(buf + JOURNAL_HEADER_SIZE, (uint32_t)size);
                unaligned_write_le32(buf + JOURNAL_HEADER_SIZE + 4, savestate_crc32c(data, size));
                memcpy(buf + JOURNAL_HEADER_SIZE + JOURNAL_FRAME_SIZE, data, size);
                replay(buf, JOURNAL_HEADER_SIZE + JOURNAL_FRAME_SIZE + size);
        }
        free(buf);
        return 0;
}
